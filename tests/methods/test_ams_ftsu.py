"""`ams` and `ftsu` (the kit's own methods): their distinctive mechanics on a TinyCNN.

ams: two sequential requests through `run_requests`; the saliency map after request 2 is the documented
incremental update of request 1's (S_2 = decay·S_1 + ŝ_2), only masked-in weights move in a request, each
request has its own stream, `run` with a list equals consuming `run_requests`, one loader is one request,
the check is bounded. ftsu: the client split covers the retain batches once, the server buffer is bounded,
the linear removal is the documented formula, the repair changes only masked-in weights and never sees
forget data.
"""

import copy

import pytest
import torch

import methods.ams as ams_mod
import methods.ftsu as ftsu_mod
from methods._federated import ServerBuffer, client_split
from methods._requests import normalised, request_seeds
from methods._saliency import saliency_mask
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot

FAST = dict(impair_steps=2, repair_steps=2, max_extra=1, mask_batches=1, signal_batches=1, entry_batches=1)
FTSU_FAST = dict(impair_steps=2, repair_steps=3, mask_batches=1, entry_batches=1, clients=3, buffer=1)


def _loaders(dict_batches=False):
    return random_loaders((96, 64, 64), data_seed=11, batch_size=32, dict_batches=dict_batches)


def _second_forget(dict_batches=False):
    return random_loaders((32, 64, 32), data_seed=12, batch_size=32, dict_batches=dict_batches)[1]


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def _same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


# ---------------------------------------------------------------------------------------------- ams


def test_ams_two_requests_update_the_map_incrementally_and_change_only_masked_weights(net):
    retain, forget, val = _loaders()
    model = copy.deepcopy(net)
    method = ams_mod.AMS(seed=3, decay=0.5, mask_ratio=0.3, **FAST)
    steps = method.run_requests(model, [retain, retain], [forget, _second_forget()], val)
    start = snapshot(model)
    assert next(steps) == 0
    s1, m1, after1 = {n: s.clone() for n, s in method.saliency_.items()}, method.mask_, snapshot(model)
    assert all(torch.allclose(s1[n], v) for n, v in normalised(method.last_score_).items())  # S_1 = ŝ_1
    assert next(steps) == 1
    with pytest.raises(StopIteration):
        next(steps)
    fresh = normalised(method.last_score_)
    s2, m2, after2 = method.saliency_, method.mask_, snapshot(model)
    for n in s2:  # S_2 = decay·S_1 + ŝ_2, not ŝ_2 recomputed alone
        assert torch.allclose(s2[n], 0.5 * s1[n] + fresh[n], rtol=1e-6, atol=1e-12)
    assert any(not torch.allclose(s2[n], fresh[n]) for n in s2)
    assert all(torch.equal(m2[n], v) for n, v in saliency_mask(s2, 0.3).items())
    for before, after, mask in ((start, after1, m1), (after1, after2, m2)):
        changed = {n: before[n] != after[n] for n in before}
        assert any(c.any() for c in changed.values())
        assert not any((c & ~mask[n]).any() for n, c in changed.items()), "a masked-out weight moved"
    seeds = [r["seed"] for r in method.log_["requests"]]
    assert seeds == request_seeds(3, 2) and seeds[0] != seeds[1]  # each request its own stream
    assert all(torch.isfinite(q).all() for q in model.parameters()) and not model.training


def test_ams_run_with_a_list_equals_consuming_run_requests_and_one_loader_is_one_request(net):
    retain, forget, val = _loaders()
    f2 = _second_forget()
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    ams_mod.AMS(seed=5, **FAST).run(a, retain, [forget, f2], val)
    assert list(ams_mod.AMS(seed=5, **FAST).run_requests(b, [retain, retain], [forget, f2], val)) == [0, 1]
    assert _same(snapshot(a), snapshot(b))
    one, listed, gen = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    ams_mod.AMS(seed=5, **FAST).run(one, retain, forget, val)
    ams_mod.AMS(seed=5, **FAST).run(listed, retain, (forget,), val)
    list(ams_mod.AMS(seed=5, **FAST).run_requests(gen, [retain], [forget], val))
    assert _same(snapshot(one), snapshot(listed)) and _same(snapshot(one), snapshot(gen))
    assert not _same(snapshot(one), snapshot(a))  # the second request did something


def test_ams_check_is_bounded_and_dict_batches_work(net):
    retain, forget, val = _loaders(dict_batches=True)
    never = ams_mod.AMS(seed=1, tol=-2.0, **FAST)  # the check never passes
    never.run(copy.deepcopy(net), retain, forget, val)
    assert never.log_["requests"][0]["steps"] == FAST["max_extra"] + 1
    always = ams_mod.AMS(seed=1, tol=2.0, **FAST)  # it always passes
    always.run(copy.deepcopy(net), retain, forget, val)
    assert always.log_["requests"][0]["steps"] == 1


@pytest.mark.parametrize(
    "gap, se, steps",
    [
        (0.05, 0.06, 1),  # within the probes' noise: passes at once
        (0.05, 0.01, 3),  # beyond it: every extra step is taken
        (-0.01, 0.0, 1),
    ],
)  # the forget set classified worse: passes
def test_ams_check_fires_at_the_defaults_when_the_gap_is_within_the_probes_noise(net, monkeypatch, gap, se, steps):
    monkeypatch.setattr(ams_mod, "accuracy_gap", lambda *a: {"gap": gap, "se": se, "forget_acc": 0.0, "val_acc": 0.0})
    method = ams_mod.AMS(seed=1, impair_steps=1, repair_steps=1, mask_batches=1, signal_batches=1, entry_batches=1)
    assert (method.params.tol, method.params.tol_se, method.params.max_extra) == (0.0, 1.0, 2)
    method.run(copy.deepcopy(net), *_loaders())
    assert method.log_["requests"][0]["steps"] == steps


def test_accuracy_gap_reports_the_binomial_standard_error_of_the_difference(net):
    from methods._requests import accuracy_gap, probe_hits

    g = torch.Generator().manual_seed(3)
    f = [(torch.randn(40, 3, 32, 32, generator=g), torch.randint(0, 10, (40,), generator=g))]
    v = [(torch.randn(24, 3, 32, 32, generator=g), torch.randint(0, 10, (24,), generator=g))]
    out = accuracy_gap(net, f, v)
    (hf, nf), (hv, nv) = probe_hits(net, f), probe_hits(net, v)
    assert (nf, nv) == (40, 24)
    a, b = hf / nf, hv / nv
    assert out["gap"] == pytest.approx(a - b)
    assert out["se"] == pytest.approx((a * (1 - a) / 40 + b * (1 - b) / 24) ** 0.5)


# ---------------------------------------------------------------------------------------------- ftsu


@pytest.mark.parametrize("n, clients", [(0, 3), (1, 1), (7, 3), (71, 4), (5, 8)])
def test_client_split_covers_every_batch_exactly_once(n, clients):
    split = client_split(n, clients)
    assert len(split) == clients
    assert sorted(i for part in split for i in part) == list(range(n))
    assert all(i % clients == c for c, part in enumerate(split) for i in part)


def test_server_buffer_keeps_at_most_its_size_per_client():
    server = ServerBuffer(clients=3, size=2)
    for k in range(5):
        server.push(0, torch.full((4,), float(k)))
    server.push(2, torch.ones(4))
    assert server.counts() == [2, 0, 1]
    assert torch.equal(server.client_means(), torch.stack([torch.full((4,), 3.5), torch.ones(4)]))


def test_ftsu_linear_removal_is_the_documented_formula():
    torch.manual_seed(0)
    tiny = torch.nn.Linear(4, 2)  # P = 10
    method = ftsu_mod.FTSU(linear_rise=0.7, linear_cap=0.0)
    g_f, G = torch.randn(10), torch.randn(3, 10)
    m = (torch.arange(10) % 5 != 0).float()  # entries 0 and 5 masked out
    before = torch.cat([q.detach().flatten() for q in tiny.parameters()])
    method.linear_removal_(tiny, g_f, G, m)
    delta = torch.cat([q.detach().flatten() for q in tiny.parameters()]) - before
    gm, Gm = (g_f * m).double(), (G * m).double()
    d = gm - Gm.T @ torch.linalg.solve(Gm @ Gm.T, Gm @ gm)  # the projection, without the ridge
    expected = (0.7 / float(d @ d)) * d
    assert torch.allclose(delta.double(), expected, atol=1e-5)
    assert float(delta[m == 0].abs().max()) == 0.0  # masked-out entries untouched
    assert torch.allclose(Gm @ delta.double(), torch.zeros(3, dtype=torch.double), atol=1e-5)  # retain kept
    assert abs(float(g_f.double() @ delta.double()) - 0.7) < 1e-4  # first-order forget rise = linear_rise


def test_ftsu_limited_linear_step_is_one_scale_of_the_direction_and_logs_what_was_applied():
    """With `linear_cap` binding, the step is the uncapped one times one factor (retain gradients stay
    orthogonal to it), no tensor moves more than the cap, and the log gives the applied η and rise."""
    from methods._trust import step_reference

    torch.manual_seed(0)
    full, tiny = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    tiny.load_state_dict(full.state_dict())
    g_f, G = torch.randn(10), torch.randn(3, 10)
    m = torch.ones(10)
    before = torch.cat([q.detach().flatten() for q in full.parameters()])
    ftsu_mod.FTSU(linear_rise=50.0, linear_cap=0.0).linear_removal_(full, g_f, G, m)
    log = ftsu_mod.FTSU(linear_rise=50.0, linear_cap=0.01).linear_removal_(tiny, g_f, G, m)
    uncapped = torch.cat([q.detach().flatten() for q in full.parameters()]) - before
    delta = torch.cat([q.detach().flatten() for q in tiny.parameters()]) - before
    assert 0 < log["scale"] < 1
    assert torch.allclose(delta, log["scale"] * uncapped, atol=1e-6), "one factor for the whole step"
    assert torch.allclose(G.double() @ delta.double(), torch.zeros(3, dtype=torch.double), atol=1e-6)
    moves = [
        float((q.detach() - b).norm()) / step_reference(b)
        for q, b in zip(tiny.parameters(), [before[:8].view(2, 4), before[8:]])
    ]
    assert max(moves) == pytest.approx(0.01, rel=1e-4)
    assert log["forget_rise"] == pytest.approx(float(g_f.double() @ delta.double()), rel=1e-5)
    assert log["forget_rise"] == pytest.approx(50.0 * log["scale"], rel=1e-4)
    assert log["step_norm"] == pytest.approx(float(delta.norm()), rel=1e-5)


def test_ftsu_server_buffer_evicts_old_gradients_in_a_run(net):
    retain, forget, val = _loaders()
    method = ftsu_mod.FTSU(seed=2, **{**FTSU_FAST, "clients": 2, "buffer": 1, "history_batches": 3})
    method.run(copy.deepcopy(net), retain, forget, val)
    assert method.log_["gradients_sent"] == 3 and method.log_["buffer_counts"] == [1, 1]


def test_ftsu_repair_changes_only_masked_weights_and_never_sees_forget_data(net, monkeypatch):
    retain, forget, val = _loaders()
    forget_images = {x.numpy().tobytes() for xb, _ in forget for x in xb}
    retain_images = {x.numpy().tobytes() for xb, _ in retain for x in xb}
    calls, real = [], ftsu_mod.train_steps

    def spy(model, batches, *args, **kwargs):
        batches = list(batches)
        before = snapshot(model)
        out = real(model, batches, *args, **kwargs)
        calls.append((batches, before, snapshot(model)))
        return out

    monkeypatch.setattr(ftsu_mod, "train_steps", spy)
    model = copy.deepcopy(net)
    start = snapshot(model)
    method = ftsu_mod.FTSU(seed=2, **FTSU_FAST)
    method.run(model, retain, forget, val)
    assert len(calls) == 2  # impair, then repair
    (impair, _, _), (repair, before, after) = calls
    assert len(repair) == FTSU_FAST["repair_steps"]
    for xb, _ in repair:
        for x in xb:
            key = x.numpy().tobytes()
            assert key not in forget_images and key in retain_images, "non-retain data in the repair"
    assert all(x.numpy().tobytes() in forget_images for xb, _ in impair for x in xb)
    for b, a in ((before, after), (start, snapshot(model))):
        changed = {n: b[n] != a[n] for n in b}
        assert any(c.any() for c in changed.values())
        assert not any((c & ~method.mask_[n]).any() for n, c in changed.items()), "a masked-out weight moved"
    log = method.log_
    assert sum(log["client_batches"]) == len(retain) and all(c <= FTSU_FAST["buffer"] for c in log["buffer_counts"])
    assert log["linear"]["retain_residual"] < 1e-3
    assert all(torch.isfinite(q).all() for q in model.parameters()) and not model.training
