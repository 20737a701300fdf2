"""`fisher`: Fisher forgetting, Gaussian noise on every weight shaped by the inverse retain-set Fisher.

Paper: Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
Networks", CVPR 2020, arXiv 1911.04933; code: AdityaGolatkar/SelectiveForgetting (`main.ipynb`, the
"Fisher Forgetting" cells `hessian`, `get_mean_var` and the noise cell), copied by meghdadk/SCRUB.

Method, as released. F = the diagonal Fisher on the retain set under the model's own predictive
distribution, Σ_y p_y(x)·(∇ log p_y(x))² per example (p detached), averaged over the examples, in eval mode,
no augmentation (`_importance.predictive_fisher_diagonal`). Per parameter: var = min(1/(F + 1e-8), 1e3),
clamped again at 1e2 on the classifier, times α; for tensors of two or more dimensions averaged over
dimension 1 (input features or channels, not the kernel's spatial axes); ×10 on the classifier, else ×10
on one-dimensional tensors (biases, BatchNorm). Then θ = θ₀ + sqrt(var)·ε, ε ~ N(0, 1) from the run's
seed. No training. Released α 1e-6 (the noise cell; the function default is 3e-6).

Class-wise forgetting (the release's full-class runs, `num_to_forget` None): the forgotten classes' rows of
the classifier get mean 0 and variance 1e-4 (×10). Here that branch fires when the retain set holds no
example of the forget set's classes (`--forget-class K`); on a random forget set it never does, as in
the release's sub-class runs. Deviation: the release finds the classifier as the tensors whose first
dimension is the number of classes; here it is the last nn.Linear (`_partial.last_linear`), the same
tensors on every preset's network.

Budget: the released Fisher costs one backward pass per class per retain example, several retrainings'
worth of gradients. `time_factor` is the share of the retain set, drawn by the run, that the Fisher
averages over (1: the release, the whole set); its default fits the 20% rule on `cpu` (measured ratio in
the preset's record).
"""

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset

from methods._importance import predictive_fisher_diagonal
from methods._partial import last_linear
from methods._relabel import labels_of
from methods.BaseMethod import BaseMethod, register


def fisher_variance(fisher: torch.Tensor, alpha: float, classifier: bool) -> torch.Tensor:
    """The release's `get_mean_var` variance for one tensor (steps in its order; no class-wise override)."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e3)
    if classifier:
        var = var.clamp(max=1e2)
    var = alpha * var
    if var.dim() > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(var).clone()
    if classifier or var.dim() == 1:
        var = var * 10
    return var


@register("fisher", aliases=("Fisher", "FisherForgetting"))
class FisherForgetting(BaseMethod):
    """θ₀ + sqrt(α / Fisher_retain)·ε per weight (with the release's clamps), no training."""

    origin = "published"

    @dataclass
    class Params(BaseMethod.Params):
        alpha: float = 1e-6  # noise scale α (release: 1e-6)
        time_factor: float = 0.07  # share of the retain set the Fisher averages over (1: as released)

        def __post_init__(self):
            if not self.alpha > 0:
                raise ValueError(f"alpha must be > 0, got {self.alpha}")
            if not 0 < self.time_factor <= 1:
                raise ValueError(f"time_factor must be in (0, 1] (1: the whole retain set), got {self.time_factor}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"alpha": ("log", 1e-8, 1e-4)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        retain = retain_loader.dataset
        kept = torch.randperm(len(retain), generator=g)[: max(1, round(p.time_factor * len(retain)))]
        subset = DataLoader(
            Subset(retain, sorted(kept.tolist())),
            batch_size=retain_loader.batch_size,
            shuffle=False,
            collate_fn=retain_loader.collate_fn,
        )
        fisher, examples = predictive_fisher_diagonal(net, subset)
        head = last_linear(net)
        head_tensors = {f"{head}.weight", f"{head}.bias"}
        forgotten = self._forgotten_classes(retain_loader, forget_loader)
        with torch.no_grad():
            for n, w in net.named_parameters():
                if n not in fisher:
                    continue
                var = fisher_variance(fisher[n], p.alpha, n in head_tensors)
                mu = w.detach().clone()
                if n in head_tensors and forgotten:
                    rows = torch.tensor(forgotten, device=w.device)
                    mu[rows], var[rows] = 0.0, 1e-4 * 10
                noise = torch.randn(w.shape, generator=g, dtype=w.dtype).to(w.device)
                w.copy_(mu + var.sqrt() * noise)
        self.log_.update(fisher_examples=examples, forgotten_classes=forgotten)
        net.eval()

    @staticmethod
    def _forgotten_classes(retain_loader, forget_loader) -> list[int]:
        """The forget set's classes that the retain set lacks (class-wise forgetting), sorted."""
        return sorted(set(labels_of(forget_loader).tolist()) - set(labels_of(retain_loader).tolist()))
