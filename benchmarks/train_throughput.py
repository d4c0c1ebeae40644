"""Training throughput of the NDT/MtM step at MtM's reference shapes: MFU and data wait.

Usage: ``python benchmarks/train_throughput.py [--preset published] [--steps 3]
[--batch-size 16 --bins 100 --neurons 668] [--peak-flops 989e12] [--json out.json]``.

The defaults are the MtM reference implementation's published configuration (batch 16
trials x 100 bins of 20 ms x 668 neurons, the NDT1 backbone of width 512 and 5 layers).
Runs one step as the engine does it (the engine's AdamW and warm-up + cosine schedule,
gradient clipping, the device switch's autocast) on CPU in fp32 always and, when a GPU
is visible, in bf16 eager and bf16 with ``torch.compile``.

- Model FLOPs per step are counted once by ``torch.utils.flop_counter`` on the eager
  step (matmuls and attention, forward + backward), so MFU = FLOPs / step time / peak,
  with the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s; pass ``--peak-flops``).
- Data wait is the share of step time spent getting the next batch from the loader the
  training jobs use (a WindowDataset on HDF5 sessions of the same shape, ``--workers``
  background workers as the ``num_workers`` hparam sets) and copying it to the device.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_loader import make_dataset

from neurossl.data.loader import WindowDataset, make_loader
from neurossl.device import autocast
from neurossl.models.ndt import NDT, make_config
from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios
from neurossl.train.optim import make_optimizer, make_scheduler


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(device: str, compiled: bool, args: argparse.Namespace, root: Path) -> dict:
    torch.manual_seed(0)
    n_trials = 10 * args.batch_size  # about 7 full training batches per epoch
    paths, splits = make_dataset(
        root, n_sessions=1, n_neurons=args.neurons, n_trials=n_trials, trial_bins=args.bins
    )
    data = WindowDataset(paths, splits, "train", sorted(paths))
    loader = make_loader(data, args.batch_size, True, 0, True, num_workers=args.workers)
    counts = {s: int(data.regions(s).size) for s in data.sessions}
    config = make_config(args.preset, n_prompts=len(SCHEMES))
    model = NDT(config, counts).to(device)
    loss_fn = MaskedModelingLoss(SCHEMES, MaskRatios(), True, data.vocab.session_ids)
    optimizer = make_optimizer(list(model.named_parameters()), 3e-3, 0.01)
    scheduler = make_scheduler(optimizer, 10, 1000)
    stepped: nn.Module = torch.compile(model) if compiled else model
    batches = loader.iter_from(0)

    def step(batch: dict) -> None:
        with autocast(device):
            loss, _ = loss_fn(stepped, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()

    def next_batch() -> dict:
        return {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}

    counter = FlopCounterMode(display=False)
    with counter:  # also the first warm-up step
        model.train()
        with autocast(device):
            loss, _ = loss_fn(model, next_batch())
        loss.backward()
    flops = counter.get_total_flops()
    for _ in range(args.warmup):  # compilation, allocator, cuDNN/SDPA kernel choice
        step(next_batch())
    _sync(device)
    wait = total = 0.0
    samples = 0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        batch = next_batch()
        _sync(device)
        t1 = time.perf_counter()
        step(batch)
        _sync(device)
        t2 = time.perf_counter()
        wait, total = wait + (t1 - t0), total + (t2 - t0)
        samples += int(batch["activity"].shape[0])
    seconds = total / args.steps
    _, t, n = batch["activity"].shape
    return {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "precision": "bf16 autocast" if device.startswith("cuda") else "fp32",
        "compiled": compiled,
        "preset": args.preset,
        "shape": f"{args.batch_size} x {t} x {n}",
        "params": sum(p.numel() for p in model.parameters()),
        "seconds_per_step": seconds,
        "samples_per_s": samples / total,
        "tflop_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / args.peak_flops if device.startswith("cuda") else None,
        "gflop_per_step": flops / 1e9,
        "data_wait_share": wait / total,
    }


def line(r: dict) -> str:
    mfu = "" if r["mfu"] is None else f", MFU {100 * r['mfu']:.1f} %"
    return (
        f"{r['device']} {r['precision']}{' + torch.compile' if r['compiled'] else ''}: "
        f"preset={r['preset']} params={r['params'] / 1e6:.2f}M batch {r['shape']} "
        f"{r['seconds_per_step'] * 1e3:.1f} ms/step, {r['samples_per_s']:.1f} samples/s, "
        f"{r['gflop_per_step']:.0f} GFLOP/step, {r['tflop_per_s']:.3f} TFLOP/s{mfu}, "
        f"data wait {100 * r['data_wait_share']:.1f} % of step time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="published")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bins", type=int, default=100)
    parser.add_argument("--neurons", type=int, default=668)
    parser.add_argument("--workers", type=int, default=0, help="loader background workers")
    parser.add_argument("--peak-flops", type=float, default=989e12)
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu (+ cuda)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(
        f"# {datetime.date.today()} {platform.machine()}, torch {torch.__version__}, "
        f"CPU threads {torch.get_num_threads()}, peak {args.peak_flops / 1e12:.0f} TFLOP/s"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for compiled in (False, True) if device.startswith("cuda") else (False,):
                root = Path(tmp) / f"{device}{'-compiled' if compiled else ''}"
                results.append(measure(device, compiled, args, root))
                print(line(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
