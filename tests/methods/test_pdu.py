"""`pdu`: the dual update, λ's behaviour in short runs, the cap's statistic and parameter checks."""

import copy

import pytest
import torch

from methods._losses import true_label_confidence
from methods.pdu import PDU, dual_update
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def test_dual_update_rises_when_violated_and_projects_to_zero():
    assert dual_update(1.0, retain_loss=0.5, epsilon=0.2, step_size=2.0) == pytest.approx(1.6)
    assert dual_update(1.0, retain_loss=0.1, epsilon=0.2, step_size=2.0) == pytest.approx(0.8)
    assert dual_update(1.0, retain_loss=0.0, epsilon=5.0, step_size=1.0) == 0.0  # projected
    assert dual_update(0.0, retain_loss=0.1, epsilon=0.2, step_size=1.0) == 0.0  # stays at 0
    assert dual_update(3.0, retain_loss=0.2, epsilon=0.2, step_size=1.0) == 3.0  # on the boundary


def test_true_label_confidence_is_the_scorers_statistic():
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([0, 3, 9, 1, 1, 5])
    p = logits.softmax(1)[torch.arange(6), y]
    expected = torch.log(p) - torch.log1p(-p)
    assert torch.allclose(true_label_confidence(logits, y), expected)


def _loaders(dict_batches=False):
    return random_loaders((128, 32, 32), data_seed=7, dict_batches=dict_batches)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0])


def _run(net, dict_batches=False, **overrides):
    """A run with one step per forget batch and epoch (min_steps 0 unless given)."""
    method = PDU(seed=0, **{"min_steps": 0, **overrides})
    method.run(copy.deepcopy(net), *_loaders(dict_batches))
    return method.log_


def test_lambda_rises_under_impossible_epsilon(net):
    # cross-entropy is > 0, so epsilon = 0 is always violated: λ grows at every step after warm-up
    log = _run(net, epochs=3, warmup_epochs=1, lambda0=0.5, dual_lr=1.0, epsilon=0.0, epsilon_mode="absolute")
    lam = log["lambda_steps"]
    assert len(lam) == 3  # one forget batch of 32 per epoch
    assert lam[0] == 0.5  # frozen during warm-up
    assert lam[1] > lam[0] and lam[2] > lam[1]
    assert [e["constraint_held"] for e in log["epochs"]] == [False, False, False]
    assert log["constraint_held_final"] is False
    assert log["epsilon"] == 0.0


def test_a_small_forget_set_is_revisited_until_min_steps(net):
    log = _run(net, epochs=2, warmup_epochs=1, min_steps=7)  # 1 forget batch: ceil(7 / 1) = 7 passes
    assert log["forget_epochs"] == 7 and len(log["lambda_steps"]) == 7 and len(log["epochs"]) == 7
    assert _run(net, epochs=2, min_steps=1)["forget_epochs"] == 2, "epochs is a floor too"


def test_noise_is_never_above_init_noise_and_zero_rise_means_fixed(net):
    # (the calibration itself: tests/methods/test_scale_robust.py; this net is near chance already)
    assert _run(net, epochs=1, noise_rise=1e6, init_noise=0.3)["noise"]["sigma"] == 0.3
    assert _run(net, epochs=1, noise_rise=0.0, init_noise=0.3)["noise"] == {"sigma": 0.3}


def test_lambda_falls_to_zero_when_slack(net):
    log = _run(net, epochs=3, warmup_epochs=1, lambda0=5.0, dual_lr=1.0, epsilon=100.0, epsilon_mode="absolute")
    assert log["lambda_steps"] == [5.0, 0.0, 0.0]
    assert all(e["constraint_held"] and e["frac_steps_within_eps"] == 1.0 for e in log["epochs"])
    assert [e["lambda"] for e in log["epochs"]] == [5.0, 0.0, 0.0]


def test_epsilon_is_original_retain_loss_plus_margin(net):
    log = _run(net, epochs=1, epsilon=0.25, warmup_epochs=0)
    assert log["epsilon"] == pytest.approx(log["L0"] + 0.25)
    assert log["L0"] > 0


def test_the_budget_and_the_constraint_are_measured_in_the_same_mode(net):
    """L0 is the original's retain loss in train mode (batch statistics), as the run measures the constraint,
    and measuring it leaves the running statistics alone."""
    import torch.nn.functional as F

    retain = _loaders()[0]
    before = copy.deepcopy(net.state_dict())
    log = _run(net, epochs=1, entry_batches=2, noise_rise=0.0, init_noise=0.0)
    probe = copy.deepcopy(net).train()
    with torch.no_grad():
        batches = [b for _, b in zip(range(2), retain)]
        expected = sum(F.cross_entropy(probe(x), y, reduction="sum").item() for x, y in batches) / sum(
            len(y) for _, y in batches
        )
    assert log["L0"] == pytest.approx(expected, rel=1e-5)
    eval_mode = sum(F.cross_entropy(copy.deepcopy(net).eval()(x), y, reduction="sum").item() for x, y in batches) / sum(
        len(y) for _, y in batches
    )
    assert abs(eval_mode - expected) > 1e-4, "the toy must tell the two modes apart"
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("cap", ["none", "margin", "confidence"])
def test_caps_run_and_log(net, cap):
    log = _run(net, dict_batches=True, epochs=2, cap=cap)
    assert len(log["epochs"]) == 2
    assert 0.0 <= log["epochs"][-1]["frac_flattened"] <= 1.0
    assert ("target_quantiles" in log) == (cap != "none")
    if cap == "none":
        assert log["epochs"][0]["frac_flattened"] == 1.0


def test_confidence_cap_gates_the_flattening(net):
    """Huge jitter puts half the targets far above every confidence (never flattened) and half far below
    (always flattened): with the cap a fraction near one half is flattened, without it all of them."""
    gated = _run(net, epochs=2, cap="confidence", target_noise=1e6)
    fracs = [e["frac_flattened"] for e in gated["epochs"]]
    assert all(0.2 <= f <= 0.8 for f in fracs), fracs
    assert all(e["frac_flattened"] == 1.0 for e in _run(net, epochs=2, cap="none")["epochs"])


def test_sam_option_changes_the_steps(net):
    runs = {}
    for sam in (None, "min"):
        out = copy.deepcopy(net)
        PDU(seed=0, epochs=1, sam=sam, rho=0.05).run(out, *_loaders())
        runs[sam] = torch.cat([p.detach().flatten() for p in out.parameters()])
    assert torch.isfinite(runs["min"]).all() and not torch.allclose(runs[None], runs["min"])


def test_flattening_without_cap_lowers_forget_margins(net):
    forget = _loaders()[1]
    x = torch.cat([b[0] for b in forget])
    before = (lambda z: (z.max(1).values - z.mean(1)).mean())(net(x).detach())
    unlearned = copy.deepcopy(net)
    PDU(seed=0, epochs=10, lr=0.01, cap="none", lambda0=0.0, dual_lr=0.0, max_update=0.0).run(unlearned, *_loaders())
    after = (lambda z: (z.max(1).values - z.mean(1)).mean())(unlearned(x).detach())
    assert after < 0.5 * before


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"lr": 0.0},
        {"optimizer": "lbfgs"},
        {"cap": "uniform"},
        {"dual_lr": -1.0},
        {"epsilon": -0.1},
        {"warmup_epochs": -1},
        {"schedule": "step"},
        {"entry_batches": 0},
        {"epsilon_mode": "relative"},
    ],
)
def test_params_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        PDU(**bad)
