"""The fixed views of `_views` (a flip, reflect-padded shifts) and a network's statistic averaged over them:
the per-example forget targets of the `uvt` prototype (`benchmarks/ours/design-views-cpu-seed1.md`)."""

import pytest
import torch

from methods._entry import loader_statistics
from methods._losses import true_label_confidence
from methods._views import flip_and_shifts, mean_over_views, shifted
from tests.methods.toy import fitted_tiny_cnn, random_loaders


@pytest.fixture(scope="module")
def setting():
    retain, forget, val = random_loaders((192, 64, 64), data_seed=7)
    return fitted_tiny_cnn(retain, epochs=2), (retain, forget, val)


def test_shifted_moves_the_image_and_reflects_the_border():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    right = shifted(x, 1, 0)
    assert torch.equal(right[..., 1:], x[..., :3]) and torch.equal(right[..., 0], x[..., 1]), "reflected"
    down = shifted(x, 0, 2)
    assert torch.equal(down[..., 2:, :], x[..., :2, :])
    assert torch.equal(shifted(x, 0, 0), x) and shifted(x, -1, 1).shape == x.shape


def test_views_are_the_flip_and_diagonal_shifts_scaled_to_the_image():
    assert flip_and_shifts([1, 2], 32) == [(True, 0, 0), (False, 1, 1), (False, -1, -1), (False, 2, 2), (False, -2, -2)]
    assert flip_and_shifts([1, 4], 64) == [(True, 0, 0), (False, 2, 2), (False, -2, -2), (False, 8, 8), (False, -8, -8)]
    assert flip_and_shifts([], 224) == [(True, 0, 0)]


def test_mean_over_views_is_the_mean_of_the_views_statistics(setting):
    base, (_, forget, _) = setting
    x, y = next(iter(forget))
    views = flip_and_shifts([1, 2], x.shape[-1])
    got = mean_over_views(base, x, y, true_label_confidence, views, batch_size=7)
    with torch.no_grad():
        want = torch.stack(
            [true_label_confidence(base(shifted(x.flip(-1) if f else x, dx, dy)), y) for f, dx, dy in views]
        ).mean(0)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_memorised_example_is_less_confident_on_views_it_never_saw(setting):
    _, (_, forget, val) = setting
    memorised = fitted_tiny_cnn(forget, epochs=40, momentum=0.9)
    own, x, y = loader_statistics(memorised, forget, true_label_confidence, keep_batches=True)
    views = mean_over_views(memorised, x, y, true_label_confidence, flip_and_shifts([1, 2, 4], x.shape[-1]))
    assert views.mean() < own.mean() - 1.0
