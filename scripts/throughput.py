"""Training throughput of each preset's network against the machine's limit, and K models at once with torch.func.

For each network: the FLOPs of one training step (forward and backward of a batch of the preset's size,
counted by `torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix products), the step's
time (median of timed steps after warm-up, SGD with momentum as the recipes use), and the achieved rate
against two peaks taken in the same process: a measured float32 matrix product (2048 x 2048, the best
the BLAS reaches here) and the nominal vector peak (cores x clock x FMA units x lanes x 2). Then K copies
trained as one batched step (`torch.func.stack_module_state`, `functional_call`, `vmap` of `grad`), its
time against K sequential steps in the same process: models per hour, sequential vs batched.

    python scripts/throughput.py                      # CPU, the threads torch uses here
    python scripts/throughput.py --device cuda        # on a GPU

Writes benchmarks/throughput/<device>-<threads>t.{csv,md}. Every ratio is taken within one run.
"""

import argparse
import copy
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.models import build_model  # noqa: E402
from data.presets import get_preset  # noqa: E402
from eval.harness.bank_models import prepare  # noqa: E402
from eval.io import write_text  # noqa: E402

PRESETS = ("tiny", "cpu", "airbench", "kaggle", "full")  # one per network (kaggle and full: the same ResNet-18)


def batch(preset, device, k: int | None = None):
    shape = (preset.recipe.batch_size, 3, 32, 32) if k is None else (k, preset.recipe.batch_size, 3, 32, 32)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, preset.num_classes, shape[:-3], device=device)
    return x, y


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(step, n: int, device) -> float:
    """Median seconds of `step()` over `n` calls after 2 warm-up calls."""
    for _ in range(2):
        step()
    times = []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def step_flops(net, x, y) -> int:
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def sequential_step(net, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def batched_step(nets, xs, ys, lr=0.1, momentum=0.9):
    """One SGD-with-momentum step of K models at once: vmap over stacked parameters, buffers and data."""
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    grads_of = vmap(grad(loss), in_dims=(0, 0, 0, 0), randomness="different")

    def step():
        g = grads_of(params, buffers, xs, ys)
        with torch.no_grad():
            for k, v in params.items():
                velocity[k].mul_(momentum).add_(g[k])
                v.sub_(lr * velocity[k])

    return step


def matmul_peak(device, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / timed(lambda: a @ b, 10, device)


def nominal_cpu_peak(threads: int) -> tuple[float, str]:
    """cores x GHz x 2 FMA units x lanes x 2 flops, from /proc/cpuinfo; (flop/s, how it was obtained)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", info)
    ghz = float(mhz.group(1)) / 1000 if mhz else float("nan")
    lanes = 16 if "avx512f" in info else 8 if "avx2" in info else 4
    width = {16: "AVX-512", 8: "AVX2", 4: "SSE"}[lanes]
    how = f"{threads} core(s) x {ghz:.2f} GHz x 2 FMA units x {lanes} float32 lanes ({width}) x 2"
    return threads * ghz * 1e9 * 2 * lanes * 2, how


def measure(name: str, device, k: int, steps: int) -> dict:
    preset = get_preset(name)
    torch.manual_seed(0)
    net = prepare(build_model(preset.arch, preset.num_classes), device).train()
    x, y = batch(preset, device)
    if torch.device(device).type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    flops = step_flops(net, x, y)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    seq = timed(sequential_step(net, opt, x, y), steps, device)
    row = {
        "preset": name,
        "arch": preset.arch,
        "params": sum(p.numel() for p in net.parameters()),
        "batch": preset.recipe.batch_size,
        "step_gflop": flops / 1e9,
        "step_ms": 1e3 * seq,
        "achieved_gflops": flops / seq / 1e9,
    }
    if row["params"] > 1_000_000 and torch.device(device).type == "cpu":
        k = min(k, 2)  # a large net's K copies take minutes a step on one CPU core: two show the trend
    nets = [prepare(build_model(preset.arch, preset.num_classes), device).train() for _ in range(k)]
    xs, ys = batch(preset, device, k)
    try:
        t_batched = timed(batched_step(nets, xs, ys), max(2, steps // 2), device)
        row.update(k=k, batched_step_ms=1e3 * t_batched, batched_speedup=k * seq / t_batched, batched_error="")
    except Exception as exc:  # noqa: BLE001 (a network vmap cannot batch: say so in the table)
        row.update(k=k, batched_step_ms=np.nan, batched_speedup=np.nan, batched_error=str(exc).splitlines()[0][:120])
    return row


def model_steps(preset) -> int:
    """Training steps of one retrained model: epochs x ceil(retain-set size / batch size)."""
    n = int((preset.n_train or 50_000) * (1 - preset.forget_frac))
    return preset.recipe.epochs * -(-n // preset.recipe.batch_size)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--presets", nargs="*", default=list(PRESETS))
    p.add_argument(
        "-k", type=int, default=8, help="models at once in the batched step (default 8; 2 for a >1M-param net on CPU)"
    )
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default="benchmarks/throughput")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    rows = []
    for name in args.presets:
        big = torch.device(args.device).type == "cpu" and get_preset(name).arch != "tiny_cnn" and name not in ("cpu",)
        rows.append(measure(name, args.device, args.k, 3 if big else args.steps))
        print(rows[-1], flush=True)
    peak = matmul_peak(args.device)
    df = pd.DataFrame(rows)
    df["pct_of_matmul"] = 100 * df.achieved_gflops * 1e9 / peak
    if args.device == "cpu":
        nominal, how = nominal_cpu_peak(threads)
        df["pct_of_nominal"] = 100 * df.achieved_gflops * 1e9 / nominal
        where = f"{platform.processor() or platform.machine()}, {threads} thread(s), torch {torch.__version__}"
    else:
        nominal, how = float("nan"), "see the device's data sheet"
        where = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    df["model_s_sequential"] = [model_steps(get_preset(n)) * ms / 1e3 for n, ms in zip(df.preset, df.step_ms)]
    df["models_per_hour_sequential"] = 3600 / df.model_s_sequential
    df["models_per_hour_batched"] = df.models_per_hour_sequential * df.batched_speedup
    stem = Path(args.out) / f"{args.device}-{threads}t"
    write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    lines = [
        f"# Training throughput ({where})",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', threads)} python scripts/throughput.py "
        f"--device {args.device}`. One process; every ratio below is taken within it.",
        "",
        f"- Measured peak: a float32 2048 x 2048 matrix product, {peak / 1e9:.1f} GFLOP/s.",
        f"- Nominal peak: {how} = {nominal / 1e9:.1f} GFLOP/s." if nominal == nominal else f"- Nominal peak: {how}.",
        "- Step: forward + backward of one batch of the preset's size (random data, 32 x 32), SGD with momentum; "
        "FLOPs by `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products).",
        f"- Batched: {args.k} copies in one step (`torch.func`: `stack_module_state`, `functional_call`, `vmap` of "
        "`grad`, its own random data each), against the same number of sequential steps. Speed-up > 1: batching pays.",
        "- Model time: the recipe's epochs x steps per epoch (90% of the preset's training images) x the step time; "
        "an estimate that leaves out data loading, augmentation and evaluation.",
        "",
        df.to_markdown(index=False, floatfmt=".3g"),
        "",
    ]
    write_text(stem.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
