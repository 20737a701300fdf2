"""`rum`: the Refined-Unlearning Meta-algorithm: split the forget set by memorization, unlearn the parts in turn.

Paper: Zhao, Kurmanji, Bărbulescu, Triantafillou, Triantafillou, "What makes unlearning hard and what
to do about it", NeurIPS 2024, arXiv 2406.01257; code kairanzhao/RUM (`main_rum.py`,
`main_rum_proxy.py`, `memorization_proxy/`).

Method.
1. Refinement: score every forget example with a memorization proxy computed inside `run()` and cut
   the forget set, in proxy order, into three equal groups (the remainder goes to the last ones):
   low, mid and high memorization (`partition_by_proxy`).
2. Meta-unlearning: unlearn the groups in sequence, low → mid → high, each with its own registered
   method: step t forgets group t with retain set R ∪ (the groups still to come), as RUM's
   `main_forget.py` does, so a group not yet processed is still something to keep.
   Default, RUM's CIFAR-10 recipe: nothing on low, `ft` on mid, `salun` on high. Any registered
   method per group: `--set mid_method=ng mid_set=alpha=0.97,epochs=1` (RUM^F: the same method on
   every group). Each group's method gets its own seed drawn from this run's generator.

Proxies (`proxy`):
  "confidence" (default): the entry model's true-label logit-scaled confidence log p_y − log Σ_{j≠y} p_j
      on each forget example; high confidence = low memorization. RUM's C-proxy averages train-mode
      confidence over the whole original training run, which `run()` cannot reconstruct, so this is
      a static stand-in (weaker; a near-saturated model has ties,
      broken by a tiny jitter from the run's generator).
  "ho_ret": held-out retraining (RUM `heldout_retrain.py`), with the validation loader in place of
      RUM's test set: a copy of the model is fine-tuned on `val_loader` for `ho_epochs` epochs (SGD,
      momentum 0.9, weight decay 5e-4, lr `ho_lr`; RUM: up to 30 epochs with early stopping), and each
      forget example is scored by the symmetric KL between the two models' outputs; higher = more
      memorized. Computed once, on the entry model (RUM can recompute it per step; not done here).

Released settings (RUM `main_rum.py`, CIFAR-10): FT 10 epochs at lr 0.1 on the mid group, SalUn 5
epochs at lr 0.1 on the high group, without augmentation (RUM's scripts pass --no_aug): `mid_set`
and `high_set`. Budget: each group's method scales its released epochs to the preset's retraining
(it gets the preset's recipe through `configure`; RUM retrains for 30 epochs), and this method's
`time_factor` (0.35) goes to every group's method that has one, unless its `*_set` names another:
15 released epochs over R are half a retraining, and the three sub-runs share the 20% rule. The
notebook carries `none`, `ft`, `salun` and `ng` (imported below); another method per group works
locally, not in a generated notebook.
"""

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from methods._entry import loader_statistics
from methods._losses import symmetric_kl, true_label_confidence
from methods._optimizers import make_optimizer
from methods._relabel import loader_over
from methods._train_loop import batch_cross_entropy, train_epochs
from methods.BaseMethod import BaseMethod, get_method, parse_overrides, register

# imported so they are registered (and pasted into a generated notebook) as per-group methods
from methods.ft import FT  # noqa: F401
from methods.ng import NG  # noqa: F401
from methods.none import NoUnlearning  # noqa: F401
from methods.salun import SalUn  # noqa: F401

PROXIES = ("confidence", "ho_ret")
GROUPS = ("low", "mid", "high")


def partition_by_proxy(memorization: torch.Tensor, k: int = 3) -> list[torch.Tensor]:
    """Indices of `k` groups of near-equal size, from the least to the most memorized.

    `memorization` (n,): higher = more memorized. Group sizes differ by at most one (the larger ones
    last); together the groups are a partition of range(n), each sorted by index.
    """
    n = len(memorization)
    sizes = [n // k + (i >= k - n % k) for i in range(k)]  # remainder to the last groups
    order = torch.argsort(memorization.cpu(), stable=True)  # least memorized first
    return [part.sort().values for part in torch.split(order, sizes)]


def _parse_set(text: str) -> list[str]:
    """'k=v,k=v' → ['k=v', 'k=v'] (empty: no overrides)."""
    return [item.strip() for item in text.split(",") if item.strip()]


@register("rum", aliases=("RUM",))
class RUM(BaseMethod):
    """RUM: split the forget set into low/mid/high memorization by a proxy, unlearn them in turn (Zhao et al. 2024)."""

    origin = "published"

    @dataclass
    class Params(BaseMethod.Params):
        proxy: str = "confidence"  # confidence | ho_ret (see the docstring)
        low_method: str = "none"  # RUM CIFAR-10: nothing on the least memorized third
        mid_method: str = "ft"  # ... fine-tuning on the middle third
        high_method: str = "salun"  # ... SalUn on the most memorized third
        low_set: str = ""  # overrides of the low group's method, "k=v,k=v"
        mid_set: str = "lr=0.1,augment=False"  # RUM: FT 10 epochs (ft's default), lr 0.1
        high_set: str = "lr=0.1,epochs=5,augment=False"  # RUM: SalUn 5 epochs, lr 0.1
        time_factor: float = 0.35  # given to every group's method that has one (docstring)
        ho_epochs: int = 3  # ho_ret: fine-tuning epochs on the validation loader
        ho_lr: float = 0.01  # ho_ret: its learning rate (RUM: 0.1 on its test set)

        def __post_init__(self):
            if self.proxy not in PROXIES:
                raise ValueError(f"proxy must be one of {', '.join(PROXIES)}, got {self.proxy!r}")
            if self.ho_epochs < 1 or self.ho_lr <= 0:
                raise ValueError("ho_epochs must be >= 1 and ho_lr > 0")
            for group in GROUPS:
                key = getattr(self, f"{group}_method")
                if get_method(key).key == "rum":
                    raise ValueError(f"{group}_method cannot be rum itself")
                try:
                    parse_overrides(get_method(key), _parse_set(getattr(self, f"{group}_set")))
                except ValueError as exc:
                    raise ValueError(f"{group}_set for {key}: {exc}") from None

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {
        "proxy": ("choice", ["confidence", "ho_ret"]),
        "mid_method": ("choice", ["ft", "ng", "salun"]),
        "high_method": ("choice", ["salun", "ng", "ft"]),
    }

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {}

    recipe_ = None  # the preset's training recipe, handed to every group's method

    def configure(self, recipe) -> None:
        """Keep the preset's recipe for the groups' methods (they scale their epochs by it)."""
        self.recipe_ = recipe

    def group_method(self, cls, seed: int, overrides: str):
        """The group's method: its `*_set` overrides, this method's time_factor unless they name one,
        and the preset's recipe."""
        values = parse_overrides(cls, _parse_set(overrides))
        if "time_factor" in {f.name for f in dataclasses.fields(cls.Params)}:
            values.setdefault("time_factor", self.params.time_factor)
        method = cls(seed=seed, **values)
        if self.recipe_ is not None:
            method.configure(self.recipe_)
        return method

    def memorization_proxy(self, net, loader, val_loader, g) -> torch.Tensor:
        """(n,) memorization scores of `loader`'s examples in its order (higher = more memorized)."""
        p = self.params
        if p.proxy == "confidence":
            conf = loader_statistics(net, loader, true_label_confidence)[0]
            return -conf.cpu() + 1e-6 * torch.rand(len(conf), generator=g)  # jitter breaks ties
        tuned = copy.deepcopy(net)
        opt = make_optimizer("sgd", tuned.parameters(), p.ho_lr, momentum=0.9, weight_decay=5e-4)
        train_epochs(tuned, loader_over(val_loader.dataset, val_loader, g), batch_cross_entropy, opt, p.ho_epochs)
        tuned.eval()
        logits = loader_statistics(net, loader, lambda z, y: z, keep_batches=True)
        base, x = logits[0], logits[1]
        with torch.no_grad():
            other = torch.cat([tuned(x[i : i + 256]) for i in range(0, len(x), 256)])
        return symmetric_kl(base, other, reduction="none")

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        forget_ds = forget_loader.dataset
        in_order = DataLoader(
            forget_ds, batch_size=forget_loader.batch_size or 256, shuffle=False, collate_fn=forget_loader.collate_fn
        )
        mem = self.memorization_proxy(net, in_order, val_loader, g).cpu()  # (n_forget,)
        groups = partition_by_proxy(mem)
        log = {"proxy": p.proxy, "groups": []}
        for t, (name, idx) in enumerate(zip(GROUPS, groups)):
            cls = get_method(getattr(p, f"{name}_method"))
            seed = int(torch.randint(2**62, (1,), generator=g))
            later = torch.cat(groups[t + 1 :]) if t + 1 < len(groups) else torch.empty(0, dtype=torch.long)
            entry = {
                "group": name,
                "method": cls.key,
                "size": len(idx),
                "proxy_range": [float(mem[idx].min()), float(mem[idx].max())] if len(idx) else None,
            }
            if cls.key != "none" and len(idx):
                method = self.group_method(cls, seed, getattr(p, f"{name}_set"))
                retain_ds = ConcatDataset([retain_loader.dataset, Subset(forget_ds, later.tolist())])
                method.run(
                    net,
                    loader_over(retain_ds, retain_loader, g),
                    loader_over(Subset(forget_ds, idx.tolist()), forget_loader, g),
                    val_loader,
                )
                entry["log"] = method.log_
            log["groups"].append(entry)
        self.groups_ = groups
        self.log_ = log
        net.eval()
