"""The seed tree: every consumer of every run, and every bank model, has its own stream."""

import numpy as np
import pytest

from eval.harness.seeds import bank_streams, run_streams


def test_no_two_consumers_share_a_stream():
    seeds = [s for i in range(64) for s in run_streams(0, i).values()]
    seeds += [s for k in range(65) for s in bank_streams(k).values()]
    seeds += [s for i in range(8) for s in run_streams(1, i).values()]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)


def test_streams_are_reproducible_and_random_access():
    assert run_streams(7, 5) == run_streams(7, 5)
    children = np.random.SeedSequence(7, spawn_key=(1,)).spawn(6)[5].spawn(4)
    assert run_streams(7, 5)["method"] == int(children[0].generate_state(1, np.uint64)[0] >> np.uint64(1))


@pytest.mark.parametrize("bad", [-1, 2**63])
def test_bad_base_seed(bad):
    with pytest.raises(ValueError, match="seed must be in"):
        run_streams(bad, 0)


def test_a_run_draws_its_method_seed_and_loaders_from_its_own_streams(tiny_bank, tiny_splits):
    from data.presets import get_preset
    from eval.harness.unlearn import run_loaders, run_once
    from methods import get_method

    cls = get_method("my_method")
    preset = get_preset("tiny")
    outs = [run_once(cls, cls.make_params(epochs=1), preset, tiny_splits, tiny_bank, 0, i) for i in range(2)]
    assert [int(o["method_seed"]) for o in outs] == [run_streams(0, i)["method"] for i in range(2)]
    first = [next(iter(run_loaders(tiny_splits, 50, run_streams(0, i))[0]))[1] for i in range(2)]
    assert not np.array_equal(first[0], first[1]), "runs shuffle their retain data independently"
