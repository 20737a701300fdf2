"""`unsir` (Tarun et al. 2023) as released: the error-maximising noise, the impair set, the repair."""

import copy

import pytest
import torch
import torch.nn.functional as F

import methods
import methods.unsir as unsir
from methods._common import unpack
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


def _loaders():
    return random_loaders((96, 32, 32), data_seed=8, batch_size=32)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def test_the_noise_minimises_the_released_objective_and_leaves_the_weights_alone(net):
    """−CE(net(noise), c) + 0.1·mean ‖noise_i‖² falls; without the norm term the error on c rises."""
    model = copy.deepcopy(net)
    before = snapshot(model)
    shape, target = (16, 3, 32, 32), torch.full((16,), 4)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0))  # the same first draw

    def objective(x, weight):
        with torch.no_grad():  # train mode, as released: BatchNorm on the noise batch's statistics
            return float(-F.cross_entropy(model.train()(x), target) + weight * x.square().flatten(1).sum(1).mean())

    noise = unsir.error_maximising_noise(model, shape, 4, 20, 0.1, 0.1, torch.Generator().manual_seed(0))
    assert objective(noise, 0.1) < objective(start, 0.1) - 10
    free = unsir.error_maximising_noise(model, shape, 4, 20, 0.1, 0.0, torch.Generator().manual_seed(0))
    assert objective(free, 0.0) < objective(start, 0.0) - 0.1, "the error on class c rises"
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before), "only the noise moves"
    assert all(q.grad is None for q in model.parameters())


def test_retain_examples_are_the_first_k_of_each_class_in_dataset_order():
    labels = torch.tensor([0, 1, 0, 2, 0, 1, 2, 2, 0])
    assert unsir.first_per_class(labels, 2) == [0, 1, 2, 3, 5, 6]


def test_the_impair_set_is_the_release_s_three_noise_images_per_class_and_the_retain_examples(net, monkeypatch):
    retain, forget, val = _loaders()
    seen = []
    real = unsir.train_steps

    def spy(model, batches, *args, **kwargs):
        batches = list(batches)
        seen.append(batches)
        return real(model, batches, *args, **kwargs)

    monkeypatch.setattr(unsir, "train_steps", spy)
    method = methods.get_method("unsir")(seed=0, noise_batch=16, noise_steps=4, retain_per_class=5, time_factor=1.0)
    method.configure(Recipe(epochs=30, lr=0.1))  # E/30 = 1: one released epoch is one pass
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    classes = sorted(set(torch.cat([b[1] for b in forget]).tolist()))
    assert method.log_["classes"] == classes
    impair, repair = seen
    x = torch.cat([unpack(b)[0] for b in impair])
    n_retain = method.log_["retain_examples"]
    assert len(x) == 3 * 20 * len(classes) + n_retain, "every noise copy and every kept retain example, once"
    assert sum(len(unpack(b)[0]) for b in repair) == n_retain, "the repair sees the retain examples only"
    assert n_retain == sum(min(5, int((torch.cat([b[1] for b in retain]) == c).sum())) for c in range(10))
    distinct = torch.unique(x.flatten(1), dim=0)
    assert len(distinct) == 3 * len(classes) + n_retain, "three distinct noise images per class"
    before, after = snapshot(net), snapshot(out)
    assert any(not torch.equal(before[n], after[n]) for n in before)
