"""Memory and time per training job at real sizes, measured on CPU, derived for an H100.

Usage: ``python benchmarks/job_sizes.py [--mfu 0.4] [--peak-flops 989e12] [--markdown]``.

For each method family at its real-size preset on the real datasets' shapes (IBL
repeated-site: 700 units, 100 bins of 20 ms, MtM's batch 16; Allen Visual Coding: 300
ROIs at 30 Hz in 2 s windows, the family's batch) it measures, on a batch of
``--sample-batch`` windows under bf16 autocast (the CPU rehearsal of the GPU's dtypes):

- parameters (trainable and total);
- activation memory per window: the bytes of every tensor autograd saves for the
  backward pass (``saved_tensors_hooks``, one count per storage), which is what a
  training step holds at its peak besides weights, gradients and AdamW's moments;
- FLOPs per window of one forward + backward (``torch.utils.flop_counter``: matmuls,
  attention; elementwise ops are not counted, as in every MFU figure).

and derives the GPU memory of a step (fp32 weights + gradients + two AdamW moments =
16 bytes per parameter, plus activations x batch, plus ``CUDA_OVERHEAD_GIB`` for the
CUDA context and cuBLAS/SDPA workspaces) and the time per epoch on an H100 (989 TFLOP/s
dense bf16) at the stated MFU and at a pessimistic ``LOW_MFU``, never below a launch
floor (ATen ops of the step x ``KERNEL_S``): models this small are often bound by kernel
launches, not by FLOPs. The configs' runtimes use the pessimistic time.

Why measured on CPU: most machines that plan a run have no GPU, and these counts do
not depend on the device (autocast casts the same ops to bf16 on both).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from neurossl.device import CPU_BF16_ENV, autocast

#: CUDA context + cuBLAS/cuDNN/SDPA workspaces + allocator slack, GiB (typical on an H100).
CUDA_OVERHEAD_GIB = 2.0
#: MFU that launch-bound small models reach in practice; the pessimistic time.
LOW_MFU = 0.05
H100_GIB = 80.0
#: Seconds per kernel of an eager step whose kernels are too small to fill the GPU (launch
#: latency + scheduling, a typical figure for an H100 under eager PyTorch).
KERNEL_S = 8e-6


class _OpCount(TorchDispatchMode):
    """Counts ATen ops of a step: about one CUDA kernel each in eager mode."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class Job:
    """One method family at a real size on one dataset's shapes."""

    method: str
    dataset: str
    preset: str
    batch: int
    bins: int
    neurons: int
    #: Training windows of one pretraining epoch (see ``WINDOWS`` for the assumption).
    epoch_windows: int
    #: Training windows of one fine-tuning epoch (held-out sessions).
    finetune_windows: int


#: IBL repeated-site (MtM's 34 eids, 5 held out): about 600 trials per session, 70 % train.
#: Allen 000728 session A, ``limit: 20`` sessions, 2 held-out subjects (~2 sessions): about
#: 3,000 s of stimulus epochs per session cut into 2 s windows, 70 % train.
IBL_TRAIN_WINDOWS_PER_SESSION = 420
ALLEN_TRAIN_WINDOWS_PER_SESSION = 1050
JOBS = (
    Job("mtm / ndt / scratch_ndt", "ibl_repeated_site", "published", 16, 100, 700,
        29 * IBL_TRAIN_WINDOWS_PER_SESSION, 5 * IBL_TRAIN_WINDOWS_PER_SESSION),
    Job("poyo_ssl (+ablations) / scratch_perceiver", "allen_visual_coding", "published_s", 8, 60,
        300, 18 * ALLEN_TRAIN_WINDOWS_PER_SESSION, 2 * ALLEN_TRAIN_WINDOWS_PER_SESSION),
    Job("poyo_ssl (+ablations) / scratch_perceiver", "allen_visual_coding", "published_l", 8, 60,
        300, 18 * ALLEN_TRAIN_WINDOWS_PER_SESSION, 2 * ALLEN_TRAIN_WINDOWS_PER_SESSION),
    Job("calm / scratch_dual_axis", "allen_visual_coding", "base", 8, 60, 300,
        18 * ALLEN_TRAIN_WINDOWS_PER_SESSION, 2 * ALLEN_TRAIN_WINDOWS_PER_SESSION),
)  # fmt: skip


def _ndt(job: Job, batch: int) -> tuple[torch.nn.Module, Callable, dict]:
    from neurossl.models.ndt import NDT, make_config
    from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios

    model = NDT(make_config(job.preset, n_prompts=len(SCHEMES)), {"s0": job.neurons})
    loss = MaskedModelingLoss(SCHEMES, MaskRatios(), True, ["s0"])
    g = torch.Generator().manual_seed(0)
    regions = torch.arange(job.neurons) % 8
    data = {
        "activity": torch.poisson(torch.full((batch, job.bins, job.neurons), 0.3), generator=g),
        "neuron_mask": torch.ones(batch, job.neurons, dtype=torch.bool),
        "session": torch.zeros(batch, dtype=torch.int64),
        "region": regions.repeat(batch, 1),
    }
    return model, loss, data


def _perceiver(job: Job, batch: int) -> tuple[torch.nn.Module, Callable, dict]:
    from neurossl.models.perceiver import Perceiver, make_config
    from neurossl.objectives.poyo_ssl import reconstruction_loss_fn

    config = make_config(job.preset)
    model = Perceiver(config, n_units=job.neurons, n_sessions=1)
    loss = reconstruction_loss_fn(frames_per_token=config.frames_per_token)
    return model, loss, _calcium_batch(job, batch)


def _calm(job: Job, batch: int) -> tuple[torch.nn.Module, Callable, dict]:
    import numpy as np

    from neurossl.models.dual_axis import DualAxisConfig, preset
    from neurossl.models.tokenizer import Tokenizer, TokenizerConfig
    from neurossl.objectives.calm import CalmNetwork, UnitScaler, make_pretrain_loss

    tokenizer = Tokenizer(TokenizerConfig(vocab_size=256))
    backbone = DualAxisConfig(vocab_size=256, n_units=job.neurons, n_sessions=1,
                              value_patch=tokenizer.patch, **preset(job.preset))  # fmt: skip
    scaler = UnitScaler(np.zeros(job.neurons), np.ones(job.neurons))
    network = CalmNetwork(tokenizer, backbone, scaler)
    return network, make_pretrain_loss(), _calcium_batch(job, batch)


def _calcium_batch(job: Job, batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "activity": torch.randn(batch, job.bins, job.neurons, generator=g).abs(),
        "neuron_mask": torch.ones(batch, job.neurons, dtype=torch.bool),
        "unit": torch.arange(job.neurons).repeat(batch, 1),
        "session": torch.zeros(batch, dtype=torch.int64),
        "time": (torch.arange(job.bins, dtype=torch.float32) / 30.0).repeat(batch, 1),
    }


BUILDERS = {"published": _ndt, "published_s": _perceiver, "published_l": _perceiver, "base": _calm}


def measure(job: Job, sample_batch: int) -> dict:
    """Parameters, saved-activation bytes and FLOPs per window of one training step."""
    torch.manual_seed(0)
    model, loss_fn, batch = BUILDERS[job.preset](job, sample_batch)
    model.train()
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.layout == torch.strided and t.device.type == "cpu":
            storage = t.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    counter, ops = FlopCounterMode(display=False), _OpCount()
    with counter, ops, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast("cpu"):
            loss, _ = loss_fn(model, batch)
        loss.backward()
    params = {id(p): p for p in model.parameters()}.values()
    # Parameters are saved for backward too (weights of matmuls); they are not activations.
    weights = {p.untyped_storage().data_ptr() for p in params}
    act = sum(n for ptr, n in saved.items() if ptr not in weights)
    return {
        "params": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "act_bytes_per_window": act / sample_batch,
        "flops_per_window": counter.get_total_flops() / sample_batch,
        # the fused AdamW adds a handful of kernels; the op count barely depends on batch
        "kernels_per_step": ops.ops,
    }


def derive(job: Job, m: dict, mfu: float, peak: float, epochs: int) -> dict:
    """GPU memory of a step and H100 time per epoch / per ``epochs`` epochs of the job."""
    state_gib = 16 * m["trainable"] / 2**30 + 4 * (m["params"] - m["trainable"]) / 2**30
    act_gib = m["act_bytes_per_window"] / 2**30
    step_flops = m["flops_per_window"] * job.batch
    floor = m["kernels_per_step"] * KERNEL_S
    step = max(step_flops / (peak * mfu), floor)
    step_low = max(step_flops / (peak * LOW_MFU), floor)
    steps = math.ceil(job.epoch_windows / job.batch)
    ft_steps = math.ceil(job.finetune_windows / job.batch)
    return {
        "gpu_gib": state_gib + job.batch * act_gib + CUDA_OVERHEAD_GIB,
        "max_batch": int((H100_GIB - CUDA_OVERHEAD_GIB - state_gib) / act_gib),
        "launch_ms": 1e3 * floor,
        "step_ms": 1e3 * step,
        "step_ms_low": 1e3 * step_low,
        "epoch_s": steps * step,
        "epoch_s_low": steps * step_low,
        "pretrain_h_low": epochs * steps * step_low / 3600,
        # pretraining + fine-tuning epochs of one seed, hours at the stated MFU / LOW_MFU
        "job_h": epochs * (steps + ft_steps) * step / 3600,
        "job_h_low": epochs * (steps + ft_steps) * step_low / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--peak-flops", type=float, default=989e12, help="H100 dense bf16")
    parser.add_argument("--epochs", type=int, default=100, help="per stage, for GPU-hours")
    parser.add_argument("--sample-batch", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="presets to measure")
    args = parser.parse_args()
    import os

    os.environ[CPU_BF16_ENV] = "1"  # measure bf16 activations, as on the GPU
    print(
        f"# {datetime.date.today()} measured on cpu ({platform.machine()}) under bf16 "
        f"autocast, torch {torch.__version__}; derived for an H100 at {args.peak_flops / 1e12:.0f}"
        f" TFLOP/s, MFU {args.mfu:.0%} (and {LOW_MFU:.0%}); {args.epochs} epochs per stage"
    )
    print(
        "| method | dataset | preset | batch x bins x units | params | act. MiB/window "
        "| GFLOP/window (fwd+bwd) | kernels/step (launch floor ms) | GPU GiB at batch "
        "| max batch on 80 GiB | ms/step "
        f"({args.mfu:.0%} / {LOW_MFU:.0%}) | s/epoch ({args.mfu:.0%} / {LOW_MFU:.0%}) "
        f"| GPU-h per seed, {args.epochs}+{args.epochs} epochs ({args.mfu:.0%} / {LOW_MFU:.0%}) |"
    )
    print("|" + "---|" * 13)
    for job in JOBS:
        if args.only and job.preset not in args.only:
            continue
        m = measure(job, args.sample_batch)
        d = derive(job, m, args.mfu, args.peak_flops, args.epochs)
        print(
            f"| {job.method} | {job.dataset} | {job.preset} "
            f"| {job.batch} x {job.bins} x {job.neurons} | {m['params'] / 1e6:.2f} M "
            f"| {m['act_bytes_per_window'] / 2**20:.1f} | {m['flops_per_window'] / 1e9:.1f} "
            f"| {m['kernels_per_step']} ({d['launch_ms']:.1f}) "
            f"| {d['gpu_gib']:.1f} | {d['max_batch']} "
            f"| {d['step_ms']:.2f} / {d['step_ms_low']:.1f} "
            f"| {d['epoch_s']:.1f} / {d['epoch_s_low']:.0f} "
            f"| {d['job_h']:.2f} / {d['job_h_low']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
