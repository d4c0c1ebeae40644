"""Time and peak memory of one dual-axis training step as neurons N and patch steps T double.

The factorised attention costs O(N T^2 + T N^2) per layer (plus O(N T D^2) for the
projections and MLPs), never O((N T)^2): doubling N at fixed T should scale time by
2^1..2^2 (slope 1-2 on a log-log plot), and likewise for T at fixed N. Full attention
over all N*T tokens would show slope 2 in both, at far larger constants.

Measured: forward + backward + AdamW step of the backbone on random codes (the frozen
tokenizer is not part of the training step's gradient work and is excluded).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` after a reset; on CPU each
configuration runs in a fresh spawned process and reports the growth of the process'
maximum resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) from just
before its first step to after its last. tracemalloc is not used because it does not
see PyTorch's C++ allocations.

Usage::

    python benchmarks/dual_axis_scaling.py                 # CPU defaults, a few minutes
    python benchmarks/dual_axis_scaling.py --device cuda   # bf16 autocast on GPU
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import platform
import resource
import time

import numpy as np
import torch

from neurossl.device import autocast
from neurossl.models.dual_axis import DualAxisConfig, DualAxisTransformer, preset
from neurossl.train.optim import adamw

VOCAB = 256


def _step_fn(model: DualAxisTransformer, batch: int, t: int, n: int, device: str):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, VOCAB, (batch, t, n), generator=g).to(device)
    unit = torch.randint(0, model.config.n_units, (batch, n), generator=g).to(device)
    session = torch.zeros(batch, dtype=torch.long, device=device)
    mask = torch.ones(batch, n, dtype=torch.bool, device=device)
    optimizer = adamw(model.parameters(), 1e-4)  # what training jobs use

    def step() -> None:
        with autocast(device):
            _, logits = model(codes, unit, session, mask)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, VOCAB).float(), codes[:, 1:].reshape(-1)
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(shape: dict, batch: int, t: int, n: int, steps: int, device: str) -> dict:
    """Seconds per step (median of ``steps`` after one warm-up) and peak memory (MiB)."""
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = DualAxisConfig(VOCAB, n_units=max(n, 8), n_sessions=1, **shape)
    model = DualAxisTransformer(config).to(device)
    step = _step_fn(model, batch, t, n, device)
    step()  # warm-up: allocator, kernels
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    seconds = float(np.median(times))
    return {
        "N": n,
        "T": t,
        "seconds": seconds,
        "peak_mib": peak,
        "tokens_per_s": batch * t * n / seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _isolated(args: tuple) -> dict:
    return measure(*args)


def run(configs: list[tuple], device: str) -> list[dict]:
    if device.startswith("cuda"):
        return [measure(*c) for c in configs]
    # A fresh process per configuration so ru_maxrss starts from that configuration alone.
    ctx = mp.get_context("spawn")
    results = []
    for c in configs:
        with ctx.Pool(1) as pool:
            results.append(pool.apply(_isolated, (c,)))
    return results


def slope(rows: list[dict], axis: str, key: str) -> float:
    x = np.log2([r[axis] for r in rows])
    y = np.log2([max(r[key], 1e-9) for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def table(rows: list[dict], axis: str) -> str:
    lines = ["| N | T | ms/step | peak MiB | tokens/s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['N']} | {r['T']} | {1000 * r['seconds']:.1f} | "
            f"{r['peak_mib']:.1f} | {r['tokens_per_s']:.0f} |"
        )
    lines.append(
        f"\nlog-log slope vs {axis}: time {slope(rows, axis, 'seconds'):.2f}, "
        f"memory {slope(rows, axis, 'peak_mib'):.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per config")
    parser.add_argument("--scaling-size", default="tiny", help="preset of the N/T sweeps")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--fixed-t", type=int, default=32)
    parser.add_argument("--fixed-n", type=int, default=64)
    parser.add_argument("--ns", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--ts", type=int, nargs="+", default=[32, 64, 128, 256])
    args = parser.parse_args()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device.startswith("cuda")
    steps = args.steps or (20 if gpu else 3)
    batch = args.batch or (8 if gpu else 1)
    shape = preset(args.scaling_size)
    print(f"# dual-axis scaling, {datetime.date.today()}, device {device}", end="")
    print(f" ({torch.cuda.get_device_name() if gpu else platform.processor() or 'cpu'}),")
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, preset")
    print(f"# {args.scaling_size} {shape}, batch {batch}, median of {steps} steps")
    n_rows = run([(shape, batch, args.fixed_t, n, steps, device) for n in args.ns], device)
    print(f"\n## N doubles at T = {args.fixed_t} patch steps\n")
    print(table(n_rows, "N"))
    t_rows = run([(shape, batch, t, args.fixed_n, steps, device) for t in args.ts], device)
    print(f"\n## T doubles at N = {args.fixed_n} neurons\n")
    print(table(t_rows, "T"))
    base_n, base_t = (256, 64) if gpu else (64, 32)
    (base,) = run([(preset("base"), batch, base_t, base_n, max(2, steps // 2), device)], device)
    print(
        f"\n## realistic size 'base' ({base['params'] / 1e6:.1f} M params), N={base_n}, "
        f"T={base_t}, batch {batch}: {base['tokens_per_s']:.0f} tokens/s "
        f"({1000 * base['seconds']:.0f} ms/step, peak {base['peak_mib']:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
