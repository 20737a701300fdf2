"""`psgu` and `hirs` (the kit's own methods): their distinctive mechanics on a TinyCNN.

psgu: a round changes only the weights of that round's saliency mask, the map is recomputed every round,
and the adaptive policy stops at entry, midway or at the budget as its signal says. hirs: the impair
changes only the final linear layer, moves the forget set's class-mean logits toward the validation
set's while leaving those fixed, and logs the gap both show after it; the repair changes only the
masked-in weights and never the filtered layer.
"""

import copy

import pytest
import torch

import methods.hirs as hirs_mod
import methods.psgu as psgu_mod
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot

FAST = dict(impair_steps=2, repair_steps=2, mask_batches=1, signal_batches=1, entry_batches=1)


def _loaders(dict_batches=False):
    return random_loaders((96, 64, 64), data_seed=11, batch_size=32, dict_batches=dict_batches)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def _changed(before, after):
    return {n: before[n] != after[n] for n in before}


# ---------------------------------------------------------------------------------------------- psgu


def _spy(monkeypatch, module, name, record, what):
    real = getattr(module, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        record.append(what(args, out))
        return out

    monkeypatch.setattr(module, name, spy)


def test_psgu_round_changes_only_its_salient_weights_and_recomputes_the_map(net, monkeypatch):
    starts, masks, ends = [], [], []
    _spy(monkeypatch, psgu_mod, "gradient_saliency", starts, lambda a, out: snapshot(a[0]))
    _spy(monkeypatch, psgu_mod, "saliency_mask", masks, lambda a, out: out)
    _spy(monkeypatch, psgu_mod, "unseen_gap", ends, lambda a, out: snapshot(a[0]))
    model = copy.deepcopy(net)
    method = psgu_mod.PSGU(seed=3, rounds=3, tol=-1e9, min_drop=-1e9, mask_ratio=0.3, **FAST)
    method.run(model, *_loaders())
    assert method.log_["rounds_used"] == 3 and method.log_["stop"] == "budget"
    assert len(starts) == len(masks) == 3 and len(ends) == 4  # a map per round; a signal at entry + per round
    for t in range(3):
        changed = _changed(starts[t], ends[t + 1])
        assert any(c.any() for c in changed.values()), f"round {t} changed nothing"
        for n, c in changed.items():
            assert not (c & ~masks[t][n]).any(), f"round {t}: {n} changed outside the round's mask"
    # recomputed on the current weights: every round's map is taken on other weights, and the maps differ
    assert any(not torch.equal(starts[0][n], starts[1][n]) for n in starts[0])
    assert any(not torch.equal(masks[0][n], masks[t][n]) for t in (1, 2) for n in masks[0])
    assert len(method.log_["mask_overlap"]) == 2


def test_psgu_stops_at_entry_when_the_forget_set_already_looks_unseen(net):
    model = copy.deepcopy(net)
    before = copy.deepcopy(model.state_dict())
    method = psgu_mod.PSGU(seed=0, rounds=3, tol=1e9, **FAST)
    method.run(model, *_loaders())
    assert method.log_["rounds_used"] == 0 and method.log_["stop"] == "signal"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_psgu_stops_when_the_signal_is_met_midway(net, monkeypatch):
    gaps = iter([1.0, 0.5, -0.1, 2.0, 2.0])
    monkeypatch.setattr(psgu_mod, "unseen_gap", lambda *a: {"gap": next(gaps), "forget_median": 0.0, "val_median": 0.0})
    method = psgu_mod.PSGU(seed=0, rounds=4, tol=0.0, **FAST)
    method.run(copy.deepcopy(net), *_loaders(dict_batches=True))
    assert method.log_["rounds_used"] == 2 and method.log_["stop"] == "signal"


@pytest.mark.parametrize(
    "gaps, rounds",
    [
        ([1.0, 0.8, 0.79, 0.5, 0.4], 2),  # round 2 barely moved it
        ([0.5, 0.9, 0.7, 0.69, 0.1], 3),  # round 1 (noise) may raise it
        ([0.5, 0.9, 0.7, 0.6, 0.5], 4),
    ],
)  # steady progress: the budget
def test_psgu_stops_at_the_defaults_when_a_round_no_longer_shrinks_the_gap(net, monkeypatch, gaps, rounds):
    it = iter(gaps)
    monkeypatch.setattr(psgu_mod, "unseen_gap", lambda *a: {"gap": next(it), "forget_median": 0.0, "val_median": 0.0})
    method = psgu_mod.PSGU(seed=0, **FAST)  # rounds 4, tol 0, min_drop 0.02: the defaults
    assert (method.params.rounds, method.params.tol, method.params.min_drop) == (4, 0.0, 0.02)
    method.run(copy.deepcopy(net), *_loaders())
    assert method.log_["rounds_used"] == rounds
    assert method.log_["stop"] == ("budget" if rounds == 4 else "plateau")


def test_psgu_signal_is_median_val_minus_median_forget(net):
    f = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    v = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    with torch.no_grad():
        ce = [torch.nn.functional.cross_entropy(net(x), y, reduction="none") for x, y in (f[0], v[0])]
    s = psgu_mod.unseen_gap(net, f, v)
    assert s["gap"] == pytest.approx(float(ce[1].median() - ce[0].median()), abs=1e-6)


# ---------------------------------------------------------------------------------------------- hirs


def _mapped_gap(model, forget, val):
    """‖μ_f − μ_v‖ over the classes present in both sets, both measured by forward passes of `model`."""
    mu_f, n_f = hirs_mod.class_mean_logits(model, forget)
    mu_v, n_v = hirs_mod.class_mean_logits(model, val)
    both = (n_f > 0) & (n_v > 0)
    return float((mu_f[both] - mu_v[both]).norm()), mu_v[both]


def test_hirs_impair_changes_only_the_final_layer_and_logs_the_gap_both_sets_show_after_it(net):
    _, forget, val = _loaders()
    model = copy.deepcopy(net)
    before = copy.deepcopy(model.state_dict())
    info = hirs_mod.HIRS(seed=0).impair(model, forget, val)
    after = model.state_dict()
    for k, v in after.items():
        if k.startswith("fc."):
            assert not torch.equal(before[k], v), f"{k} did not change"
        else:
            assert torch.equal(before[k], v), f"{k} changed in the impair"
    gap0, mu_v0 = _mapped_gap(net, forget, val)
    gap1, mu_v1 = _mapped_gap(model, forget, val)  # validation means re-measured after the map
    assert info["forget_val_gap_before"] == pytest.approx(gap0, rel=1e-4)
    assert info["forget_val_gap_after"] == pytest.approx(gap1, rel=1e-3, abs=1e-5)
    assert info["val_drift"] == pytest.approx(float((mu_v1 - mu_v0).norm()), rel=1e-3, abs=1e-5)
    assert gap1 < 0.8 * gap0, "the map did not bring the forget means nearer the validation ones"


def test_hirs_filtration_on_a_linear_classifier_keeps_the_validation_means_fixed():
    """Two classes present, five logits: 4 constraints on 6 input dimensions, so the map is exact: the
    forget class means land on the validation ones, which do not move, and it is R pinv([μ_f μ_v; 1 1])."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 5)
    net = torch.nn.Sequential(lin)
    xf, yf = torch.randn(30, 4), torch.arange(30) % 2
    xv, yv = torch.randn(30, 4) + 1.0, torch.arange(30) % 2
    z_f, z_v = net(xf).detach().double(), net(xv).detach().double()
    mu_f = torch.stack([z_f[yf == c].mean(0) for c in range(2)])
    mu_v = torch.stack([z_v[yv == c].mean(0) for c in range(2)])
    w0, b0 = lin.weight.detach().clone().double(), lin.bias.detach().clone().double()
    info = hirs_mod.logit_filtration_(net, [(xf, yf)], [(xv, yv)], strength=0.5)
    new_f = torch.stack([net(xf)[yf == c].mean(0) for c in range(2)]).detach().double()
    new_v = torch.stack([net(xv)[yv == c].mean(0) for c in range(2)]).detach().double()
    assert torch.allclose(new_f, mu_f + 0.5 * (mu_v - mu_f), atol=1e-4)
    assert torch.allclose(new_v, mu_v, atol=1e-4), "the validation means (the target) moved"
    assert info["forget_val_gap_after"] == pytest.approx(0.5 * float((mu_f - mu_v).norm()), rel=1e-3)
    assert info["val_drift"] < 1e-4 and info["target_residual"] < 1e-4
    src = torch.cat([torch.cat([mu_f, mu_v]).T, torch.ones(1, 4, dtype=torch.float64)])
    d = 0.5 * torch.cat([mu_v - mu_f, torch.zeros_like(mu_v)]).T @ torch.linalg.pinv(src)
    a = torch.eye(5, dtype=torch.float64) + d[:, :5]
    assert torch.allclose(lin.weight.double(), a @ w0, atol=1e-5)
    assert torch.allclose(lin.bias.double(), a @ b0 + d[:, 5], atol=1e-5)
    before = lin.weight.detach().clone()
    hirs_mod.logit_filtration_(net, [(xf, yf)], [(xf, yf)])  # forget pattern == val pattern: identity map
    assert torch.allclose(lin.weight, before, atol=1e-5)


def test_hirs_repair_changes_only_masked_in_weights_and_never_the_filtered_layer(net, monkeypatch):
    masks, after_impair = [], []
    _spy(monkeypatch, hirs_mod, "saliency_mask", masks, lambda a, out: out)
    _spy(monkeypatch, hirs_mod, "logit_filtration_", after_impair, lambda a, out: snapshot(a[0]))
    model = copy.deepcopy(net)
    method = hirs_mod.HIRS(seed=1, mask_ratio=0.2, mask_batches=1, entry_batches=1, epoch_fraction=0.7)
    method.run(model, *_loaders(dict_batches=True))
    assert len(masks) == len(after_impair) == 1
    final = snapshot(model)
    changed = _changed(after_impair[0], final)
    assert any(c.any() for c in changed.values())
    for n, c in changed.items():
        assert not (c & ~masks[0][n]).any(), f"{n} changed outside the saliency mask"
    for n in ("fc.weight", "fc.bias"):
        assert torch.equal(final[n], after_impair[0][n]), f"the repair moved the filter's layer {n}"
    assert 0.15 < method.log_["mask_kept"] < 0.25


def test_hirs_filtration_strength_is_capped_by_the_retain_loss_rise(net):
    retain, forget, val = _loaders()
    model = copy.deepcopy(net)
    free = hirs_mod.logit_filtration_(
        copy.deepcopy(net), forget, val, strength=1.0, retain_batches=retain, max_rise=1e9, retain_n_batches=3
    )
    assert free["strength"] == 1.0
    cap = 0.25 * free["retain_rise"]
    info = hirs_mod.logit_filtration_(
        model, forget, val, strength=1.0, retain_batches=retain, max_rise=cap, retain_n_batches=3
    )
    assert 0.0 < info["strength"] < 1.0 and info["retain_rise"] <= cap + 1e-9
    z0, y = hirs_mod._retain_logits(net, retain, 3)  # all of R: order-free
    z1, y1 = hirs_mod._retain_logits(model, retain, 3)  # the cached-logit bisection matches the folded layer
    rise = float(torch.nn.functional.cross_entropy(z1, y1) - torch.nn.functional.cross_entropy(z0, y))
    assert rise == pytest.approx(info["retain_rise"], abs=1e-4)
