"""ft, ft_l1, rl_og and salun: the random-label wrapper, the L1 schedule, SalUn's mask and its frozen weights."""

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

import methods
from data.splits import DictDataset
from methods._common import unpack
from methods._relabel import RandomLabels, loader_over, relabelled_union
from methods._saliency import gradient_saliency
from methods.ft_l1 import l1_norm, l1_weight
from methods.salun import negative_cross_entropy
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


def _data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 10, (n,), generator=g)


def _labels(ds):
    return torch.stack(
        [torch.as_tensor(ds[i]["age_group"] if isinstance(ds[i], dict) else ds[i][1]) for i in range(len(ds))]
    )


# ------------------------------------------------------------------------------------------ relabelling


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_random_labels_replace_only_the_label_in_range(kind):
    x, y = _data()
    base = TensorDataset(x, y) if kind == "tuple" else DictDataset(x, y)
    ds = RandomLabels(base, 7, torch.Generator().manual_seed(0))
    labels = _labels(ds)
    assert len(ds) == len(base) and labels.min() >= 0 and labels.max() <= 6
    assert len(labels.unique()) == 7  # uniform over all C classes
    for i in (0, 17, 199):
        image = ds[i]["image"] if kind == "dict" else ds[i][0]
        assert torch.equal(image, x[i])
        label = ds[i]["age_group"] if kind == "dict" else ds[i][1]
        assert torch.is_tensor(label) and label.dtype == y.dtype and label.shape == y[i].shape


def test_random_labels_may_keep_the_true_label_and_are_redrawn_per_epoch():
    x, y = _data(n=2000)
    g = torch.Generator().manual_seed(1)
    ds = RandomLabels(TensorDataset(x, y), 10, g)
    first = _labels(ds)
    assert 0.05 < (first == y).float().mean() < 0.15  # randint(0, C): the true label about 1/C of the time
    ds.redraw(g)  # the next epoch, from the same stream
    second = _labels(ds)
    assert (first != second).float().mean() > 0.8


def test_random_labels_are_a_function_of_the_generator_seed():
    x, y = _data()

    def draw(seed):
        return _labels(RandomLabels(TensorDataset(x, y), 10, torch.Generator().manual_seed(seed)))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_int_labels_stay_ints():
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"image": torch.zeros(3), "age_group": 1}

    item = RandomLabels(Plain(), 4, torch.Generator().manual_seed(0))[2]
    assert type(item["age_group"]) is int and 0 <= item["age_group"] < 4


@pytest.mark.parametrize("dict_batches", [False, True], ids=["tuple", "dict"])
def test_relabelled_union_covers_both_sets_in_retain_batches(dict_batches):
    retain, forget, _ = random_loaders((64, 40, 8), data_seed=0, dict_batches=dict_batches, batch_size=16)
    relabelled = RandomLabels(forget.dataset, 10, torch.Generator().manual_seed(0))
    loader = relabelled_union(relabelled, retain, torch.Generator().manual_seed(0))
    batches = list(loader)
    assert sum(len(unpack(b)[1]) for b in batches) == 104 and loader.batch_size == 16
    # the order comes from the generator, and a redraw reaches the loader without rebuilding it
    again = relabelled_union(relabelled, retain, torch.Generator().manual_seed(0))
    assert all(torch.equal(unpack(a)[1], unpack(b)[1]) for a, b in zip(batches, again))
    forget_only = loader_over(relabelled, forget, torch.Generator().manual_seed(5))
    before = torch.cat([unpack(b)[1] for b in forget_only])
    relabelled.redraw(torch.Generator().manual_seed(9))
    forget_only.generator.manual_seed(5)
    after = torch.cat([unpack(b)[1] for b in forget_only])
    assert not torch.equal(before, after)


# ------------------------------------------------------------------------------------------ ft_l1


def test_l1_schedule_falls_linearly_from_alpha_to_alpha_over_e():
    assert [l1_weight(0.5, e, 5) for e in range(5)] == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])
    assert [l1_weight(0.3, e, 5, no_l1_epochs=2) for e in range(5)] == pytest.approx([0.3, 0.2, 0.1, 0.0, 0.0])
    assert [l1_weight(1.0, e, 2, no_l1_epochs=2) for e in range(2)] == [0.0, 0.0]
    with pytest.raises(ValueError, match="no_l1_epochs"):
        methods.get_method("FT_prune")(epochs=2, no_l1_epochs=3)
    with pytest.raises(ValueError, match="alpha"):
        methods.get_method("ft_l1")(alpha=-1.0)


def _toy():
    loaders = random_loaders((96, 32, 32), data_seed=7, batch_size=32)
    return fitted_tiny_cnn(loaders[0]), loaders


def test_ft_l1_logs_its_schedule_and_adds_the_penalty_only_to_the_second_sam_pass():
    net, loaders = _toy()
    plain = methods.get_method("ft_l1")(seed=0, epochs=3, alpha=1.0)
    plain.run(copy.deepcopy(net), *loaders)
    assert plain.log_["alpha"] == pytest.approx([1.0, 2 / 3, 1 / 3])
    norm = float(l1_norm(net).detach())
    assert plain.log_["retain_loss"][0] > 0.5 * norm  # the logged loss holds α·‖θ‖₁
    sam = methods.get_method("ft_l1")(seed=0, epochs=1, alpha=1.0, sam="min")
    sam.run(copy.deepcopy(net), *loaders)
    assert sam.log_["retain_loss"][0] < 0.1 * norm  # the first SAM pass is CE alone


def test_ft_l1_penalty_shrinks_the_weights():
    net, loaders = _toy()
    runs = {}
    for alpha in (0.0, 0.05):
        m, out = methods.get_method("ft_l1")(seed=0, epochs=2, alpha=alpha, max_update=0.0), copy.deepcopy(net)
        m.run(out, *loaders)
        runs[alpha] = m.log_["l1_final"]
    assert runs[0.05] < runs[0.0]


def test_ft_is_retain_only_fine_tuning_at_a_constant_rate():
    params = methods.get_method("FT")().params
    assert params.schedule == "constant" and params.optimizer == "sgd"


# ------------------------------------------------------------------------------------------ salun


@pytest.mark.parametrize(
    "overrides",
    [{}, {"sam": "min", "passes": "union", "optimizer": "adamw"}],
    ids=["sgd-sequential", "sam-adamw-union"],
)
def test_salun_leaves_masked_weights_bit_for_bit_unchanged(overrides):
    net, loaders = _toy()
    method = methods.get_method("RL")(seed=0, epochs=2, lr=0.1, mask_ratio=0.3, max_update=0.0, **overrides)
    before = snapshot(net)
    buffers = {n: b.clone() for n, b in net.named_buffers() if b.is_floating_point()}
    out = copy.deepcopy(net)
    method.run(out, *loaders)
    mask = method.mask_
    assert set(mask) == set(before)
    assert method.log_["mask_kept"] == pytest.approx(0.3, abs=1e-3)
    moved = 0
    for n, p in out.named_parameters():
        assert torch.equal(p.detach()[~mask[n]], before[n][~mask[n]]), f"{n}: a masked-out entry moved"
        moved += int((p.detach()[mask[n]] != before[n][mask[n]]).sum())
    assert moved > 0.5 * sum(int(m.sum()) for m in mask.values())  # the free entries do move
    # decision: BN running statistics are not frozen (buffers, not parameters)
    assert any(not torch.equal(b, buffers[n]) for n, b in out.named_buffers() if n in buffers)


def test_salun_mask_keeps_the_largest_forget_gradients():
    net, loaders = _toy()
    method = methods.get_method("salun")(seed=0, epochs=1, mask_ratio=0.25)
    before = copy.deepcopy(net)
    method.run(net, *loaders)
    scores = gradient_saliency(before, loaders[1], negative_cross_entropy)
    kept = torch.cat([scores[n][m] for n, m in method.mask_.items()])
    dropped = torch.cat([scores[n][~m] for n, m in method.mask_.items()])
    total = kept.numel() + dropped.numel()
    assert kept.numel() == int(0.25 * total)
    assert kept.min() >= dropped.max()
    top = max(scores, key=lambda n: scores[n].max())  # the single most salient entry is kept
    assert method.mask_[top].flatten()[scores[top].argmax()]


def test_salun_checks_its_options():
    with pytest.raises(ValueError, match="mask_ratio"):
        methods.get_method("salun")(mask_ratio=0.0)
    with pytest.raises(ValueError, match="passes"):
        methods.get_method("salun")(passes="both")


@pytest.mark.parametrize("key", ["rl_og", "salun"])
def test_a_run_trains_on_forget_images_with_random_labels_and_retain_images_with_their_own(key, monkeypatch):
    """Every batch the run's loss sees, split by where each image comes from: forget images carry drawn
    labels (about 9 in 10 differ from the true one), retain images their true labels."""
    import methods._train_loop as loop

    module = __import__(f"methods.{key}", fromlist=["run"])
    retain, forget, val = random_loaders((64, 64, 32), data_seed=11)
    true = {}
    for loader, where in ((retain, "retain"), (forget, "forget")):
        for i in range(len(loader.dataset)):
            x, y = loader.dataset[i][0], int(loader.dataset[i][1])
            true[x.flatten()[:8].numpy().tobytes()] = (where, y)
    seen = {"retain": [0, 0], "forget": [0, 0]}  # [examples, examples whose label is the true one]

    def spy(net, x, y):
        for xi, yi in zip(x, y):
            where, label = true[xi.flatten()[:8].numpy().tobytes()]
            seen[where][0] += 1
            seen[where][1] += int(yi) == label
        return loop.batch_cross_entropy(net, x, y)

    monkeypatch.setattr(module, "batch_cross_entropy", spy)
    methods.get_method(key)(seed=0, epochs=2, time_factor=1.0, augment=False).run(
        fitted_tiny_cnn(retain), retain, forget, val
    )
    assert seen["forget"][0] >= 2 * 64, "the forget set is visited every epoch"
    assert seen["retain"][1] == seen["retain"][0] > 0
    assert seen["forget"][1] / seen["forget"][0] < 0.3, f"forget labels kept: {seen['forget']}"
