"""Second-order helpers: exact Hessian-vector products of a network's loss, and conjugate gradient.

- `make_hvp(net, loss_fn, names)` returns v -> H v for the Hessian of `loss_fn(net)` with respect to
  the named parameters, at their current values, on flat vectors. Two exact modes, no finite
  differences and no explicit Hessian:
    "double"  reverse-over-reverse: the gradient graph is built once (create_graph=True) and each
              product is one more backward through it (retain_graph), about 2 backward passes;
    "jvp"     forward-over-reverse with torch.func: jvp(grad(f)) over `functional_call`, a forward
              plus a backward with dual numbers per product, and no graph kept between products.
  BatchNorm runs in eval mode while the loss is evaluated, so the running statistics are read, never
  updated, however many products CG asks for (the released SIBL code, OpenUnlearning PR #159, ran them in
  train mode and so updated the statistics at every CG iteration); train/eval flags are restored.
- `conjugate_gradient(matvec, b, max_iter, tol)` solves A x = b for a symmetric positive-definite A
  given as a function, stops when ||r|| <= tol·||b|| or after `max_iter` products, stops early on
  non-positive curvature (A not SPD along a search direction), and reports iterations, the final
  relative residual ||b - A x|| / ||b|| (the recursively updated residual) and why it stopped.

Imports only torch; no work at import time.
"""

import torch
from torch.func import functional_call, grad, jvp

from methods._common import eval_mode


def flatten(tensors) -> torch.Tensor:
    """Concatenate tensors into one flat vector, (sum of numel,)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vec: torch.Tensor, like) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like the tensors of `like`."""
    out, i = [], 0
    for t in like:
        out.append(vec[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


def gradient_and_hvp(loss: torch.Tensor, variables) -> tuple[torch.Tensor, callable]:
    """Flat gradient of `loss` in `variables` and v -> H v on flat vectors, by double backprop.

    The gradient graph is built once (create_graph=True); each product is one backward through it.
    `loss` must already have been evaluated the way the Hessian is wanted (eval-mode BN).
    """
    variables = list(variables)
    grads = torch.autograd.grad(loss, variables, create_graph=True, allow_unused=True)
    used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        vs = unflatten(v, variables)
        hv = torch.autograd.grad(
            [grads[i] for i in used],
            variables,
            grad_outputs=[vs[i] for i in used],
            retain_graph=True,
            allow_unused=True,
        )
        return flatten([torch.zeros_like(p) if h is None else h for h, p in zip(hv, variables)]).detach()

    flat = flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, variables)]).detach()
    return flat, hvp


def make_hvp(net: torch.nn.Module, loss_fn, names=None, mode: str = "double"):
    """v -> H v on flat vectors, H the Hessian of `loss_fn(net)` in the parameters `names`.

    `loss_fn(model)` returns a scalar and only calls `model(inputs)` (e.g.
    `lambda m: F.cross_entropy(m(x), y)`); it is evaluated with the network in eval mode. `names`
    defaults to every parameter that requires grad, in `named_parameters()` order.
    """
    params = dict(net.named_parameters())
    names = [n for n in (names or params) if params[n].requires_grad]
    if mode == "double":
        with eval_mode(net):
            loss = loss_fn(net)
        return gradient_and_hvp(loss, [params[n] for n in names])[1]
    if mode == "jvp":
        primals = {n: params[n].detach() for n in names}
        fixed = {n: p.detach() for n, p in params.items() if n not in primals}
        fixed.update(dict(net.named_buffers()))

        def f(p):  # loss_fn only calls its argument on inputs, so a function stands in for the module
            return loss_fn(lambda x: functional_call(net, {**fixed, **p}, (x,)))

        def hvp(v: torch.Tensor) -> torch.Tensor:
            tangents = dict(zip(names, unflatten(v, list(primals.values()))))
            with eval_mode(net):
                _, hv = jvp(grad(f), (primals,), (tangents,))
            return flatten([hv[n] for n in names]).detach()

        return hvp
    raise ValueError(f"unknown HVP mode {mode!r}; supported: double, jvp")


def conjugate_gradient(
    matvec, b: torch.Tensor, max_iter: int = 10, tol: float = 1e-3, x0: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict]:
    """Solve A x = b by CG for SPD A given as `matvec`; returns (x, info).

    info: iters (products of A taken), rel_residual (||r|| / ||b||), converged (rel_residual <= tol),
    negative_curvature (stopped because p^T A p <= 0; x is the last iterate before that direction).
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    b_norm = torch.linalg.vector_norm(b).clamp_min(torch.finfo(b.dtype).tiny)
    iters, negative = 0, False
    while iters < max_iter and rs.sqrt() > tol * b_norm:
        ap = matvec(p)
        iters += 1
        curvature = torch.dot(p, ap)
        if curvature <= 0:
            negative = True
            break
        alpha = rs / curvature
        x += alpha * p
        r -= alpha * ap
        rs_new = torch.dot(r, r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    rel = float(rs.sqrt() / b_norm)
    return x, {"iters": iters, "rel_residual": rel, "converged": rel <= tol, "negative_curvature": negative}
