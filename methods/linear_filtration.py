"""`linear_filtration`: a closed-form map on the classifier that filters a forgotten class out of the logits.

Paper: Baumhauer, Schöttle, Zeppelzauer, "Machine Unlearning: Linear Filtration for Logit-based
Classifiers", Machine Learning 111 (2022), arXiv 2002.02730; code: th-b/linear_filtration
(`filtration.py` `filtration_matrix`, `make_filtered_model`).

Method, as released (normalization filtration, the paper's main variant). A is the K×K matrix whose column
i is the mean logit vector of class i over held-out labelled data (the release uses test-set logits; here
the validation split, the held-out data `run()` receives). B is A without the forgotten classes' rows;
each forgotten class's column of B is shifted so its mean equals μ, the mean of the retained block
B[:, R] (one μ for all, computed before any shift). The filtration F = B·A⁻¹ maps the logits z to F·z:
retained classes' mean logits are kept exactly, a forgotten class's examples get the retained classes'
profile at the retained level. It is applied to the classifier, W' = F·W, b' = F·b; no training.

Choices. The release's filtered model has K − r outputs; the kit scores K-way networks, so each forgotten
class keeps a row of zero weights whose bias is the lowest entry of F·A (the lowest mean logit a class
gets), finite where the release drops the logit (−∞). The class means come from `samples_per_class`
validation examples of each class drawn by the run (the release's "Normalization (s=100)" variant), so
runs differ; `samples_per_class=0` uses every validation example (the release's default, identical
runs). The method is defined for whole classes only: on a random forget set no class is left out of the
retain set, F is the identity (as the release gives with no class to filter) and the network is
returned unchanged; its setting is `--forget-class K`.
"""

from dataclasses import dataclass

import torch

from methods._common import device_of, eval_mode, unpack
from methods._partial import last_linear
from methods._relabel import labels_of
from methods.BaseMethod import BaseMethod, register


def filtration_matrix(means: torch.Tensor, forgotten: list[int]) -> torch.Tensor:
    """The release's normalization filtration F = B·A⁻¹, shape (K − r, K), from A (column i: class i's mean
    logits) and the forgotten classes, in float64."""
    a = means.double()
    kept = [i for i in range(a.shape[0]) if i not in set(forgotten)]
    b = a[kept].clone()
    mu = b[:, kept].mean()
    for d in forgotten:
        b[:, d] = b[:, d] - b[:, d].mean() + mu
    return torch.linalg.solve(a.T, b.T).T  # B·A⁻¹


def class_mean_logits(net, loader, num_classes: int, per_class: int, generator) -> torch.Tensor:
    """A: column i the mean logits of `per_class` examples of class i drawn by `generator` (0: all of them)."""
    labels = labels_of(loader)
    chosen = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(num_classes):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            raise ValueError(f"linear filtration needs held-out examples of every class; class {c} has none")
        if per_class:
            idx = idx[torch.randperm(len(idx), generator=generator)[:per_class]]
        chosen[idx] = True
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    ordered = torch.utils.data.DataLoader(
        loader.dataset, batch_size=loader.batch_size or 256, collate_fn=loader.collate_fn
    )
    start, device = 0, device_of(net)
    with eval_mode(net), torch.no_grad():
        for batch in ordered:
            x, y = unpack(batch, device)
            keep = chosen[start : start + len(y)].to(device)
            start += len(y)
            if keep.any():
                z = net(x[keep]).double().cpu()
                sums.index_add_(1, y[keep].cpu(), z.T)
                counts += torch.bincount(y[keep].cpu(), minlength=num_classes).double()
    return sums / counts


@register("linear_filtration", aliases=("LinearFiltration", "LF"))
class LinearFiltration(BaseMethod):
    """Filter the forgotten classes out of the logits with the release's normalization filtration (no training)."""

    origin = "published"
    class_wise = True  # defined for whole forgotten classes (the identity on a random forget set)

    @dataclass
    class Params(BaseMethod.Params):
        samples_per_class: int = 100  # validation examples per class for the means (release variant s=100; 0: all)

        def __post_init__(self):
            if self.samples_per_class < 0:
                raise ValueError(f"samples_per_class must be >= 0, got {self.samples_per_class}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"samples_per_class": ("int", 10, 500)}

    @classmethod
    def test_overrides(cls) -> dict:
        """The contract's toy validation set holds about 3 examples per class: draw 1, so two seeds differ."""
        return {"samples_per_class": 1}

    def run(self, net, retain_loader, forget_loader, val_loader):
        g = self.generator("cpu")
        forgotten = sorted(set(labels_of(forget_loader).tolist()) - set(labels_of(retain_loader).tolist()))
        self.log_["forgotten_classes"] = forgotten
        if not forgotten:  # a random forget set: nothing to filter, F = I (the release with no class)
            net.eval()
            return
        head = net.get_submodule(last_linear(net))
        k = head.out_features
        means = class_mean_logits(net, val_loader, k, self.params.samples_per_class, g)
        f = filtration_matrix(means, forgotten)
        kept = [i for i in range(k) if i not in set(forgotten)]
        floor = float((f @ means).min())
        with torch.no_grad():
            w, b = head.weight.double(), (head.bias.double() if head.bias is not None else None)
            new_w = torch.zeros_like(w)
            new_w[kept] = f.to(w.device) @ w
            head.weight.copy_(new_w.to(head.weight.dtype))
            if b is not None:
                new_b = torch.full_like(b, floor)
                new_b[kept] = f.to(b.device) @ b
                head.bias.copy_(new_b.to(head.bias.dtype))
        self.log_.update(floor_logit=floor, condition_number=float(torch.linalg.cond(means)))
        net.eval()
