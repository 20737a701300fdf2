"""`ftsu`: federated targeted saliency unlearning, a retain-preserving linear removal step, impair, masked repair.

Source: the kit's own method (origin "ours"), not a paper. For a model trained by federated learning,
the server keeps a limited set of recent client gradients; unlearning combines a gradient-saliency map
(SalUn, Fan et al., ICLR 2024, arXiv 2310.12508) with a certified-style linear approximation of the
forget data's contribution, in the spirit of "Forgettable Federated Linear Learning" (Jin et al., arXiv
2306.02216), an impair step on the forget set and a brief localized repair on the retain set (UNSIR's
impair-repair: Tarun, Chundawat, Mandal, Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE
TNNLS 2023, arXiv 2111.08947), with no further client interaction. Every choice below is ours.
Blocks: `_federated` (client split, server buffer, orthogonal direction), `_saliency.saliency_mask`,
`_masked_optimizer.MaskedOptimizer`, `_relabel` (random labels), `_train_loop.train_steps`, `_noise.entry_noise_`,
`_trust.step_reference`.

Simulation. The retain batches, in an order drawn from the method's seed, are split among `clients`
clients by index (batch i → client i mod `clients`; `client_split`). At entry, in eval mode at the
weights θ₀, the clients send the gradients of CE on the first `history_batches` batches; the server
keeps each client's most recent `buffer` (`ServerBuffer`, a bounded deque: older ones evicted) and uses
each client's mean ḡ_c. These are the only retain-side quantities the unlearning uses, besides the repair.

Algorithm.
  1. forget gradient g_F = mean over `mask_batches` forget batches of ∇CE at θ₀ (eval mode).
  2. saliency mask M = top `mask_ratio` of |g_F| ranked globally (SalUn's |Σ∇| map: the mean's scale
     does not change the ranking).
  3. linear removal (first-order model of the losses around θ₀): with m = M flattened,
         d = m⊙g_F − Gᵀ(GGᵀ + εI)⁻¹G(m⊙g_F),   G = rows m⊙ḡ_c       (`orthogonal_direction`)
         θ ← θ₀ + η·d,   η = `linear_rise` / ‖d‖²
     To first order each client's retain loss is unchanged (G·d = 0) and the forget loss rises by
     g_Fᵀ(ηd) = η‖d‖² = `linear_rise` nats: the forget data's gradient contribution is removed in the
     directions the retained clients do not use (FFLL removes a client's contribution from a linearised
     model; with no Hessian stored, ours is the first-order version, steepest ascent of the linearised
     forget loss under linearised retain-loss equality constraints). Where g_F is tiny (a well-fit model)
     η is huge and the linear model is no longer valid, so the whole step is scaled by one factor until no
     tensor moves more than `linear_cap` of its norm (0: no limit); a per-tensor cap would break G·d = 0.
     The log holds the applied η, the scale, the applied first-order forget rise and retain residual.
  4. seeded noise on M's conv/linear entries, σ calibrated on the repair's first `entry_batches`
     batches to raise the retain loss by `noise_rise` nats (σ <= `init_noise` x each tensor's std), as
     sibl: the scorer compares the spread of many runs with that of retrained models.
  5. impair: `impair_steps` masked CE steps on forget batches with random labels (SalUn's RL, labels
     uniform over C, drawn from the seed), forget data only.
  6. repair: `repair_steps` masked CE steps on retain batches (the clients' batches, continuing the
     seeded order), the only use of raw retain data. Forget data never enter it.
  Steps 5-6: SGD (momentum 0.9, weight decay 5e-4, constant `lr`, per-tensor cap `max_update`), a fresh
  MaskedOptimizer each: entries outside M are bit-for-bit θ₀ throughout (step 3 moves only masked-in
  entries since d is masked). BN running statistics follow the train-mode passes (as salun).
  `self.log_`: client batch counts, buffer counts, η, ‖d‖, the first-order retain residual max_c|ḡ_c·d|/‖d‖,
  capped tensors, noise σ, the impair and repair losses.

Choices where the idea is silent: client means rather than every buffered gradient as constraints (one
constraint per client, "keep each client's loss"); gradients at θ₀ in eval mode (the server's record
of the trained model, BN statistics untouched); random labels for the impair (bounded targets, unlike
ascent); the ridge ε = 1e-6·mean eigenvalue of GGᵀ.

Earlier tuning logs: benchmarks/history/ftsu.md; current scores: benchmarks/results/ and benchmarks/tuned/.
"""

from dataclasses import dataclass
from itertools import chain, islice

import torch
import torch.nn.functional as F

from methods._common import cycle, device_of, eval_mode, num_classes, reshuffled, unpack
from methods._federated import ServerBuffer, client_split, flat_gradient, orthogonal_direction
from methods._masked_optimizer import MaskedOptimizer
from methods._noise import entry_noise_
from methods._relabel import RandomLabels, loader_over
from methods._saliency import saliency_mask
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer
from methods._trust import step_reference
from methods.BaseMethod import BaseMethod, register


@register("ftsu")
class FTSU(BaseMethod):
    """Federated targeted saliency unlearning: retain-orthogonal removal, masked random-label impair, repair."""

    @dataclass
    class Params(TrainParams):
        lr: float = 0.05  # SGD learning rate of the impair and repair steps
        schedule: str = "constant"
        max_update: float = 3e-3  # per-tensor step cap of the impair and repair steps
        clients: int = 4  # simulated clients
        buffer: int = 2  # gradients the server keeps per client (the most recent ones)
        history_batches: int = 16  # retain batches whose gradients the clients send (more than clients·buffer)
        mask_ratio: float = 0.3  # fraction of all parameter entries that may change
        mask_batches: int = 4  # forget batches of g_F
        linear_rise: float = 1.5  # first-order forget-loss rise of the linear removal step (nats; history: ftsu.md)
        linear_cap: float = 0.05  # per-tensor cap of that step, fraction of the tensor's norm (0: none)
        impair_steps: int = 20  # masked random-label steps on the forget set
        repair_steps: int = 50  # masked CE steps on the retain set
        init_noise: float = 1.0  # largest σ of the noise, relative to each tensor's std
        noise_rise: float = 0.5  # σ calibrated to raise the retain loss by this (nats); 0: σ = init_noise
        entry_batches: int = 2  # repair batches of the noise calibration

        def __post_init__(self):
            for name in ("clients", "buffer", "mask_batches", "entry_batches", "history_batches"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
            if not 0.0 < self.mask_ratio <= 1.0:
                raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")
            for name in ("linear_rise", "linear_cap", "init_noise", "noise_rise"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {
        "lr": ("log", 0.01, 0.2),
        "mask_ratio": ("float", 0.1, 0.8),
        "linear_rise": ("float", 0.0, 3.0),
        "noise_rise": ("float", 0.0, 1.5),
        "repair_steps": ("int", 10, 60),
    }

    @classmethod
    def test_overrides(cls) -> dict:
        return {"impair_steps": 2, "repair_steps": 2, "mask_batches": 1, "entry_batches": 1, "buffer": 1}

    def server_buffer(self, net, retain_it, n_batches: int) -> tuple[ServerBuffer, list[list[int]]]:
        """The clients' split of a retain pass of `n_batches` batches and the server's buffer of their gradients
        at θ₀: the first `history_batches` batches of `retain_it` (batch i from client i mod `clients`), of
        which the server keeps each client's most recent `buffer`."""
        p, device = self.params, device_of(net)
        split = client_split(n_batches, p.clients)
        server = ServerBuffer(p.clients, p.buffer)
        with eval_mode(net), torch.enable_grad():
            for i in range(min(n_batches, p.history_batches)):
                x, y = unpack(next(retain_it), device)
                server.push(i % p.clients, flat_gradient(net, F.cross_entropy(net(x), y)))
        return server, split

    @torch.no_grad()
    def linear_removal_(self, net, g_forget: torch.Tensor, client_grads: torch.Tensor, flat_mask: torch.Tensor) -> dict:
        """Step 3 in place: θ ← θ + η·d, d = the masked forget gradient orthogonal to the masked client means,
        the whole step scaled by one factor where a tensor would move more than `linear_cap` of its norm (a
        scalar keeps G·d = 0). Logs the applied η, the applied first-order forget rise and retain residual."""
        p = self.params
        params = [q for q in net.parameters() if q.requires_grad]
        d = orthogonal_direction(g_forget * flat_mask, client_grads * flat_mask)
        sq = float(d.double().pow(2).sum())
        eta = p.linear_rise / sq if sq > 0 else 0.0
        parts = [
            d[a : a + q.numel()].view_as(q)
            for a, q in zip(torch.tensor([0, *[q.numel() for q in params]]).cumsum(0).tolist(), params)
        ]
        scale = 1.0
        if p.linear_cap > 0 and eta > 0:  # the largest tensor's change over its allowance, for the full η
            ratio = max(float(eta * part.norm()) / (p.linear_cap * step_reference(q)) for part, q in zip(parts, params))
            scale = min(1.0, 1.0 / ratio) if ratio > 0 else 1.0
        applied = eta * scale
        for part, q in zip(parts, params):
            q.add_(applied * part)
        step = applied * d  # the step taken, (P,)
        residual = (
            float((client_grads * flat_mask @ step).abs().max()) / max(float(step.norm()), 1e-30)
            if len(client_grads) and applied > 0
            else 0.0
        )
        return {
            "eta": applied,
            "scale": scale,
            "d_norm": sq**0.5,
            "step_norm": float(step.norm()),
            "forget_rise": float(g_forget.double() @ step.double()),
            "retain_residual": residual,
        }

    def run(self, net, retain_loader, forget_loader, val_loader):
        p, g, device = self.params, self.generator("cpu"), device_of(net)
        order = reshuffled(retain_loader, g)  # the seeded retain order the clients split
        retain_it = cycle(order)
        server, split = self.server_buffer(net, retain_it, len(order))
        total, count = 0.0, 0
        with eval_mode(net), torch.enable_grad():
            for batch in islice(reshuffled(forget_loader, g), p.mask_batches):
                x, y = unpack(batch, device)
                total = total + flat_gradient(net, F.cross_entropy(net(x), y)) * len(y)
                count += len(y)
        g_forget = total / max(count, 1)  # (P,)
        named = [(n, q) for n, q in net.named_parameters() if q.requires_grad]
        sizes = [q.numel() for _, q in named]
        self.mask_ = saliency_mask(
            {n: part.view_as(q).abs() for (n, q), part in zip(named, g_forget.split(sizes))}, p.mask_ratio
        )
        flat_mask = torch.cat([self.mask_[n].flatten() for n, _ in named]).to(g_forget.dtype)
        log = {
            "client_batches": [len(s) for s in split],
            "buffer_counts": server.counts(),
            "gradients_sent": server.pushed,
        }
        log["linear"] = self.linear_removal_(net, g_forget, server.client_means(), flat_mask)
        del server
        calib = list(islice(retain_it, p.entry_batches))  # the repair's first batches
        log["noise"] = entry_noise_(net, calib, p.entry_batches, p.noise_rise, p.init_noise, g, self.mask_)
        if p.impair_steps:
            relabelled = loader_over(RandomLabels(forget_loader.dataset, num_classes(net), g), forget_loader, g)
            opt = MaskedOptimizer(build_optimizer(p, net), net, self.mask_)
            log["impair_loss"] = train_steps(net, islice(cycle(relabelled), p.impair_steps), batch_cross_entropy, opt)
        if p.repair_steps:
            opt = MaskedOptimizer(build_optimizer(p, net), net, self.mask_)
            log["repair_loss"] = train_steps(
                net, islice(chain(calib, retain_it), p.repair_steps), batch_cross_entropy, opt
            )
        self.log_ = log
        net.eval()
