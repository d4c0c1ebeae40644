"""Training throughput of the NDT/MtM backbone: samples/s, tokens/s, MFU, data wait.

Usage: ``python benchmarks/train_throughput.py [--preset published] [--steps 5]
[--peak-flops 989e12]``. Runs the CPU measurement always and the CUDA one (bf16 autocast)
when a GPU is visible. Tokens are time bins x batch. Model FLOPs per step use the usual
6 x parameters x tokens estimate plus attention (12 x layers x d x T^2 per window),
so MFU is comparable with other transformer reports; peak FLOP/s is the dense bf16
figure of the GPU (H100 SXM: 989 TFLOP/s). "Data wait" is the share of step time spent
reading and collating batches from HDF5 (a real WindowDataset on synthetic sessions).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_loader import make_dataset

from neurossl.data.loader import WindowDataset, make_loader
from neurossl.models.ndt import NDT, make_config
from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios
from neurossl.train.adamw import AdamW


def measure(device: str, preset: str, steps: int, batch_size: int, root: Path) -> dict:
    paths, splits = make_dataset(root, n_sessions=2, n_neurons=96, n_trials=4 * batch_size)
    data = WindowDataset(paths, splits, "train", sorted(paths))
    loader = make_loader(data, batch_size, True, 0, True, num_workers=0)
    counts = {s: int(data.regions(s).size) for s in data.sessions}
    config = make_config(preset, n_prompts=len(SCHEMES))
    model = NDT(config, counts).to(device)
    loss_fn = MaskedModelingLoss(SCHEMES, MaskRatios(), True, data.vocab.session_ids)
    optimizer = AdamW(model.parameters(), lr=1e-4)  # what training jobs use
    batches = loader.iter_from(0)
    n_params = sum(p.numel() for p in model.parameters())
    cuda = device.startswith("cuda")
    wait = total = 0.0
    samples = tokens = 0
    for step in range(steps + 2):  # two warm-up steps are not timed
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        t1 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss, _ = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step >= 2:
            wait, total = wait + (t1 - t0), total + (t2 - t0)
            b, t, _ = batch["activity"].shape
            samples, tokens = samples + b, tokens + b * t
    t_bins = batch["activity"].shape[1] + 2
    flops = 6 * n_params * tokens + 12 * config.n_layers * config.d_model * t_bins**2 * samples
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "params": n_params,
        "samples_per_s": samples / total,
        "tokens_per_s": tokens / total,
        "flops_per_s": flops / total,
        "data_wait_share": wait / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="published")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--peak-flops", type=float, default=989e12)
    args = parser.parse_args()
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            r = measure(device, args.preset, args.steps, args.batch_size, Path(tmp) / device)
            mfu = (
                f", MFU {100 * r['flops_per_s'] / args.peak_flops:.1f} %"
                if device == "cuda"
                else ""
            )
            print(
                f"{r['device']}: preset={args.preset} params={r['params'] / 1e6:.2f}M "
                f"batch={args.batch_size} samples/s={r['samples_per_s']:.1f} "
                f"tokens/s={r['tokens_per_s']:.0f} model TFLOP/s={r['flops_per_s'] / 1e12:.3f}"
                f"{mfu}, data wait {100 * r['data_wait_share']:.1f} % of step time"
            )


if __name__ == "__main__":
    main()
