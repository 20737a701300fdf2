"""Time the official metric on random inputs: ``python -m eval.bench [--examples N] [--models M]``.

Both groups are normal per example with a shared random location and scale; the unlearned group
is shifted by a small random amount and its scale perturbed, so epsilons spread over the buckets.
The budget is 60 s for 5,000 examples x 512 models per group on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eval import metrics

BUDGET_S = 60.0


def make_inputs(
    n_examples: int, n_models: int, seed: int = 0, n_retrained: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Random statistics, shapes (n_models, n_examples) and (n_retrained, n_examples)."""
    rng = np.random.default_rng(seed)
    n_retrained = n_models if n_retrained is None else n_retrained
    loc = rng.normal(2.0, 3.0, n_examples)
    scale = rng.lognormal(0.0, 0.5, n_examples)
    shift = rng.normal(0.0, 0.3, n_examples) * scale
    stretch = rng.lognormal(0.0, 0.2, n_examples)
    retrained = loc + scale * rng.standard_normal((n_retrained, n_examples))
    unlearned = loc + shift + scale * stretch * rng.standard_normal((n_models, n_examples))
    return unlearned, retrained


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5000, help="forget examples (default 5000)")
    ap.add_argument("--models", type=int, default=512, help="models per group (default 512)")
    ap.add_argument("--retrained", type=int, default=None, help="retrained models if different from --models")
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: CPUs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    u, r = make_inputs(args.examples, args.models, args.seed, args.retrained)
    t0 = time.perf_counter()
    eps = metrics.per_example_epsilons(u, r, num_threads=args.threads)
    elapsed = time.perf_counter() - t0
    n = min(len(u), len(r))
    f = float(metrics.epsilon_points(eps, n).mean())
    print(
        f"per_example_epsilons: {args.examples} examples x {len(u)} unlearned / {len(r)} "
        f"retrained models: {elapsed:.2f} s"
    )
    print(
        f"F = {f:.6f}  (mean epsilon {eps.mean():.4f}, N for buckets = {n}, max_epsilon = {metrics.max_epsilon(n):g})"
    )
    default = (args.examples, n) == (5000, 512)
    if default:
        verdict = "UNDER" if elapsed <= BUDGET_S else "OVER"
        print(f"budget {BUDGET_S:.0f} s for 5000 x 512: {verdict} budget (measured {elapsed:.1f} s)")
    else:
        # The cost per example hardly depends on N (about 160,000 intervals per example).
        est = elapsed * 5000 / args.examples
        verdict = "UNDER" if est <= BUDGET_S else "OVER"
        print(
            f"budget {BUDGET_S:.0f} s for 5000 x 512: {verdict} budget (estimated {est:.1f} s "
            f"from {args.examples} examples; run the defaults to measure)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
