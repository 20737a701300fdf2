"""The seed tree: every random consumer gets its own stream, derived from one base seed.

The scorer compares the spread of R unlearning runs with the spread of N independently retrained
models, so hidden coupling between runs (run i's forget loader sharing a seed with run i+1's retain
loader, a method seeded like its loader) biases the score. Every stream here is a child of
`numpy.random.SeedSequence(base, spawn_key=(purpose, index))`, which is what
`SeedSequence(base, spawn_key=(purpose,)).spawn(...)[index]` returns, reachable without spawning
the others first:

    runs:  (RUNS, i) -> method, retain, forget, val    (base = the CLI's --seed)
    bank:  (BANK, k) -> init, order                    (k = 0 original, 1 + i retrained i; base BANK_SEED)

Each stream is handed out as one 63-bit integer seed (for torch.Generator.manual_seed).
"""

import numpy as np

RUNS, BANK = 1, 2  # spawn-key roots: unlearning runs, bank models
BANK_SEED = 0  # base of the bank's tree (fixed: part of the bank's code key)
RUN_CONSUMERS = ("method", "retain", "forget", "val")
BANK_CONSUMERS = ("init", "order")
SEED_LIMIT = 2**63


def _streams(base: int, path: tuple[int, ...], names: tuple[str, ...]) -> dict[str, int]:
    if not 0 <= base < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**63), got {base}")
    children = np.random.SeedSequence(base, spawn_key=path).spawn(len(names))
    return {name: int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for name, c in zip(names, children)}


def run_streams(base: int, run_index: int) -> dict[str, int]:
    """Seeds of run `run_index`'s method and of its retain, forget and validation loaders."""
    return _streams(base, (RUNS, run_index), RUN_CONSUMERS)


def bank_streams(model_index: int) -> dict[str, int]:
    """Seeds of bank model `model_index` (0: the original; 1 + i: retrained model i): init, loader order."""
    return _streams(BANK_SEED, (BANK, model_index), BANK_CONSUMERS)
