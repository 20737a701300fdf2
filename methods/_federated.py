"""Simulated federated clients, the server's bounded gradient buffer and a retain-preserving forget direction.

`client_split(n_batches, clients)`: batch i of a retain pass goes to client i mod `clients` (every batch
to exactly one client, deterministic given the batch order). `ServerBuffer(clients, size)`: per client
the `size` most recent gradients it sent (older ones evicted, a bounded memory), `client_means()` the
(clients, P) matrix of their means. `flat_gradient(net, loss)`: ∇loss over the parameters that require
grad, flattened in `named_parameters` order, by torch.autograd.grad (.grad untouched).
`orthogonal_direction(g, G)`: g minus its least-squares projection onto the span of G's rows,
d = g − Gᵀ(GGᵀ + εI)⁻¹Gg, so G·d ≈ 0: to first order a step along d leaves every row's loss unchanged
while it changes g's loss at rate gᵀd = ‖d‖² (ε = `ridge`·trace(GGᵀ)/k, a scale-free ridge that keeps
the small k×k solve well posed when client gradients are nearly collinear). Imports only torch.
"""

from collections import deque

import torch


def client_split(n_batches: int, clients: int) -> list[list[int]]:
    """[[batch indices of client c]]: index i goes to client i % clients."""
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    return [list(range(c, n_batches, clients)) for c in range(clients)]


class ServerBuffer:
    """Per client a deque of at most `size` flat gradients (the most recent ones)."""

    def __init__(self, clients: int, size: int):
        if clients < 1 or size < 1:
            raise ValueError(f"clients and size must be >= 1, got {clients}, {size}")
        self.grads = [deque(maxlen=size) for _ in range(clients)]
        self.pushed = 0  # gradients received (kept or since evicted)

    def push(self, client: int, grad: torch.Tensor) -> None:
        self.grads[client].append(grad.detach())
        self.pushed += 1

    def counts(self) -> list[int]:
        return [len(d) for d in self.grads]

    def client_means(self) -> torch.Tensor:
        """(clients with a gradient, P): each client's mean buffered gradient."""
        return torch.stack([torch.stack(list(d)).mean(0) for d in self.grads if d])


def flat_gradient(net: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """∇loss w.r.t. the parameters that require grad, flattened (zeros where unused), shape (P,)."""
    params = [q for q in net.parameters() if q.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(q)).flatten() for g, q in zip(grads, params)])


def orthogonal_direction(g: torch.Tensor, G: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """g − Gᵀ(GGᵀ + εI)⁻¹G g for g (P,) and G (k, P), in float64 for the k×k solve."""
    if G.numel() == 0:
        return g.clone()
    gram = G.double() @ G.double().T  # (k, k)
    eps = ridge * float(gram.trace()) / len(gram) + 1e-30
    coef = torch.linalg.solve(
        gram + eps * torch.eye(len(gram), dtype=gram.dtype, device=gram.device), G.double() @ g.double()
    )  # (k,)
    return (g.double() - G.double().T @ coef).to(g.dtype)
