"""Training throughput of the POYO-SSL Perceiver: input tokens per second.

One token is one (neuron, sample) of a window, the unit the Perceiver's cost scales with.
A step is the real pretraining step: span masking, encoder + latent layers, readout of
the masked tokens, masked MSE, backward and an AdamW update, on random dF/F batches of
the default Allen-like shape (60 frames at 30 Hz, 48 ROIs). CPU runs in fp32; CUDA runs
under bf16 autocast with ``scaled_dot_product_attention``, as the engine trains.

    .venv/bin/python benchmarks/perceiver_throughput.py --device cpu --steps 3
    python benchmarks/perceiver_throughput.py --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import torch

from neurossl.device import autocast
from neurossl.models.perceiver import Perceiver, count_parameters, make_config
from neurossl.objectives.poyo_ssl import reconstruction_loss_fn
from neurossl.train.optim import adamw


def make_batch(batch_size: int, n_bins: int, n_neurons: int, device: str) -> dict:
    generator = torch.Generator().manual_seed(0)
    batch = {
        "activity": torch.randn(batch_size, n_bins, n_neurons, generator=generator).abs(),
        "neuron_mask": torch.ones(batch_size, n_neurons, dtype=torch.bool),
        "unit": torch.arange(n_neurons).repeat(batch_size, 1),
        "session": torch.zeros(batch_size, dtype=torch.int64),
        "time": (torch.arange(n_bins, dtype=torch.float32) / 30).repeat(batch_size, 1),
    }
    return {k: v.to(device) for k, v in batch.items()}


def measure(size: str, args: argparse.Namespace) -> dict:
    device = args.device
    model = Perceiver(make_config(size), n_units=args.neurons, n_sessions=1).to(device)
    optimizer = adamw(model.parameters(), 1e-4)  # what training jobs use
    loss_fn = reconstruction_loss_fn()
    batch = make_batch(args.batch_size, args.bins, args.neurons, device)

    def step() -> None:
        with autocast(device):
            loss, _ = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    tokens = args.batch_size * args.bins * args.neurons
    return {
        "size": size,
        "backbone_parameters": count_parameters(size),
        "seconds_per_step": seconds,
        "tokens_per_s": tokens / seconds,
        "windows_per_s": args.batch_size / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--sizes", nargs="+", default=["published_s", "published_l"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bins", type=int, default=60)
    parser.add_argument("--neurons", type=int, default=48)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    precision = "bf16 autocast" if args.device.startswith("cuda") else "fp32"
    print(
        f"# {datetime.date.today()} device={args.device} ({name or platform.machine()}), "
        f"{precision}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"batch {args.batch_size} x {args.bins} bins x {args.neurons} neurons"
    )
    print("| size | backbone params | s/step | tokens/s | windows/s |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        r = measure(size, args)
        print(
            f"| {r['size']} | {r['backbone_parameters']:,} | {r['seconds_per_step']:.3f} "
            f"| {r['tokens_per_s']:,.0f} | {r['windows_per_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
