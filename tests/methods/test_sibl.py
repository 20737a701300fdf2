"""`sibl`: sparsity of the change, masked-out weights untouched, the implicit step, the dual variable."""

import copy

import pytest
import torch

from methods._masks import METHODS
from methods.BaseMethod import parse_overrides
from methods.sibl import SIBL
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def _loaders(dict_batches=False):
    return random_loaders((160, 64, 32), data_seed=3, dict_batches=dict_batches)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=3, momentum=0.9)


SMALL = dict(T=3, K=2, val_batches=1, entry_batches=1, mask_batches=1, seed=0)


def _run(net, dict_batches=False, **overrides):
    method = SIBL(**{**SMALL, **overrides})
    out = copy.deepcopy(net)
    method.run(out, *_loaders(dict_batches))
    return out, method.log_


def _weights(net):
    return {n: p.detach() for n, p in net.named_parameters() if p.ndim >= 2}


@pytest.mark.parametrize("method", METHODS)
def test_changed_fraction_is_about_one_minus_sparsity(net, method):
    sparsity = 0.8
    out, log = _run(net, sparsity=sparsity, sparsity_method=method, init_noise=0.05, gamma=0.0)
    before, after = _weights(net), _weights(out)
    changed = sum((before[n] != after[n]).sum().item() for n in before)
    total = sum(before[n].numel() for n in before)
    frac = changed / total
    assert frac == pytest.approx(log["changed_fraction"])
    # at most the mask's share (structured rounds per layer), and most of the free weights do move
    assert 0.6 * (1 - sparsity) <= frac <= (1 - sparsity) + 0.05, (method, frac)
    if method != "gradual":
        assert log["mask_density"] == pytest.approx(1 - sparsity, abs=0.05)


def test_dense_mask_changes_everything(net):
    out, log = _run(net, use_sparsity=False, init_noise=0.05)
    assert log["changed_fraction"] > 0.95


def test_l1_prox_keeps_change_sparser(net):
    _, free = _run(net, sparsity=0.5, gamma=0.0)
    _, l1 = _run(net, sparsity=0.5, gamma=5.0)  # prox threshold inner_lr * gamma = 0.1 per step
    assert l1["changed_fraction"] < free["changed_fraction"]


def test_implicit_step_runs_cg_and_logs_residual(net):
    out, log = _run(net, use_implicit=True, cg_iters=4, cg_tol=1e-6)
    assert len(log["cg_iters"]) == SMALL["T"] and all(1 <= k <= 4 for k in log["cg_iters"])
    assert all(r >= 0 for r in log["cg_rel_residual"])
    assert all(torch.isfinite(p).all() for p in out.parameters())
    _, explicit = _run(net, use_implicit=False)
    assert not explicit["cg_iters"]


def test_hvp_modes_give_the_same_run(net):
    """Both exact HVP modes must give the same CG solves, hence the same weights and residuals."""
    runs = {mode: _run(net, use_implicit=True, cg_iters=3, hvp_mode=mode) for mode in ("double", "jvp")}
    (a, log_a), (b, log_b) = runs["double"], runs["jvp"]
    assert log_a["cg_iters"] == log_b["cg_iters"]
    assert log_a["cg_rel_residual"] == pytest.approx(log_b["cg_rel_residual"], rel=1e-3, abs=1e-6)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), n
    explicit, _ = _run(net, use_implicit=False)
    assert not all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), explicit.parameters())), (
        "the implicit step changes the run"
    )


def test_dual_variable_projected_and_rises_under_violation(net):
    _, log = _run(net, epsilon=0.0, epsilon_mode="absolute", T=4, lambda_max=None)  # CE > 0: always violated
    lam = log["lambda"]
    assert all(b > a for a, b in zip(lam, lam[1:])) and lam[0] > 0
    _, slack = _run(net, epsilon=100.0, T=4)  # never binding
    assert slack["lambda"] == [0.0] * 4


def test_safeguard_caps_the_multiplier(net):
    _, log = _run(net, epsilon=0.0, epsilon_mode="absolute", T=4, al_rho=5.0, lambda_max=1.5)
    assert max(log["lambda"]) == 1.5 and log["lambda"][-1] == 1.5


def test_clip_norm_bounds_the_outer_step(net):
    """With no inner steps, noise or L1, the whole change is the T outer steps: each at most clip_norm."""
    quiet = dict(K=0, init_noise=0.0, gamma=0.0, use_sparsity=False, margin_target="zero")
    out, log = _run(net, clip_norm=1e-3, **quiet)
    assert max(log["step_norm"]) > 1e-3  # the clip was active
    change = torch.cat([(a - b).flatten() for a, b in zip(out.parameters(), net.parameters())]).norm()
    assert 0 < change <= SMALL["T"] * SIBL.Params.lr * 1e-3 * 1.001
    free, _ = _run(net, **quiet)
    change_free = torch.cat([(a - b).flatten() for a, b in zip(free.parameters(), net.parameters())]).norm()
    assert change_free > 10 * change


def test_dict_batches_give_the_same_run(net):
    a, _ = _run(net, dict_batches=False)
    b, _ = _run(net, dict_batches=True)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_design_option_names_parse():
    over = parse_overrides(
        SIBL,
        [
            "sparsity=0.95",
            "sparsity_method=structured",
            "T=30",
            "K=15",
            "use_implicit=true",
            "cg_iters=7",
            "cg_tol=1e-4",
            "al_rho=2",
            "gamma=0",
            "eta_theta=0.1",
            "eta_in=0.01",
            "epsilon=0.2",
        ],
    )
    assert over["sparsity_method"] == "structured" and over["T"] == 30 and over["use_implicit"] is True
    assert over["lr"] == 0.1 and over["inner_lr"] == 0.01, "the released names are aliases"
    with pytest.raises(ValueError, match="given twice"):
        parse_overrides(SIBL, ["eta_theta=0.1", "lr=0.1"])
    with pytest.raises(ValueError, match="sparsity_method"):
        parse_overrides(SIBL, ["sparsity_method=bogus"])
    with pytest.raises(ValueError, match="sparsity"):
        parse_overrides(SIBL, ["sparsity=1.0"])


def test_masked_out_weights_bit_identical_with_sam(net):
    """The inner steps go through MaskedOptimizer, also as SAM steps: frozen entries never move."""
    out, log = _run(net, sparsity=0.7, sam="min", rho=0.05, init_noise=0.1)
    from methods._masks import make_mask

    masks = make_mask(net, "layerwise_magnitude", 0.7)
    for (n, p), q in zip(net.named_parameters(), out.parameters()):
        if p.ndim >= 2:
            assert torch.equal(p[~masks[n]], q[~masks[n]]), n
    assert 0 < log["changed_fraction"] <= log["mask_density"] + 1e-9


def test_the_outer_step_descends_the_forget_loss(net, monkeypatch):
    """First order, constraint slack (μ = 0), dense mask, no prox or cap: the outer step is θ − lr·h with
    h = ∇L_f, so it lowers L_f on its batch (the sign a forget step must have)."""
    import methods.sibl as sibl

    seen = {}
    real_direction, real_restore = SIBL._outer_direction, sibl.restore_masked_

    def direction(self, net_, names, params, lf, *rest):
        seen["before"] = [q.detach().clone() for q in params]
        seen["grad"] = torch.autograd.grad(lf, params, retain_graph=True, allow_unused=True)
        seen["h"] = real_direction(self, net_, names, params, lf, *rest)
        return seen["h"]

    def restore(net_, masks, theta0):
        if "h" in seen and "after" not in seen:
            seen["after"] = [q.detach().clone() for q in net_.parameters() if q.requires_grad]
        return real_restore(net_, masks, theta0)

    monkeypatch.setattr(SIBL, "_outer_direction", direction)
    monkeypatch.setattr(sibl, "restore_masked_", restore)
    lr = 0.05
    _run(
        net,
        T=1,
        K=1,
        lr=lr,
        schedule="constant",
        use_sparsity=False,
        gamma=0.0,
        max_update=0.0,
        epsilon=100.0,
        lambda0=0.0,
        noise_rise=0.0,
        init_noise=0.0,
        clip_norm=0.0,
    )
    grad = torch.cat(
        [(torch.zeros_like(q) if g is None else g).flatten() for g, q in zip(seen["grad"], seen["before"])]
    )
    step = torch.cat([(a - b).flatten() for a, b in zip(seen["after"], seen["before"])])
    assert torch.allclose(step, -lr * seen["h"], atol=1e-6), "the step applied is −lr·h"
    assert float(seen["h"] @ grad) > 0 and float(step @ grad) < 0, "h ascends L_f: the step descends it"
