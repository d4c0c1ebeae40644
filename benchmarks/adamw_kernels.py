"""Time of one AdamW step per torch kernel, on the parameters of an NDT size preset.

Prints JSON: milliseconds per ``step()`` for torch's per-parameter loop, the multi-tensor
(``foreach``) kernel and the fused kernel, on one CPU thread (as the workflow's jobs run)
or on CUDA when ``--device cuda``. The parameters are split into the decay / no-decay
groups ``neurossl.train.optim.make_optimizer`` builds. Run from the repository root:
``PYTHONPATH=src python benchmarks/adamw_kernels.py [--size tiny] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from neurossl.models.ndt import NDT, make_config
from neurossl.train.optim import make_optimizer

KERNELS = {
    "per-parameter": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def step_ms(model: NDT, kernel: dict[str, bool], steps: int, device: str) -> float:
    params = list(model.named_parameters())
    for _, p in params:
        p.grad = torch.randn_like(p)
    # The groups make_optimizer builds, under the kernel asked for.
    built = make_optimizer(params, lr=1e-3, weight_decay=0.01)
    groups = [
        {"params": g["params"], "weight_decay": g["weight_decay"]} for g in built.param_groups
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=built.defaults["betas"], **kernel)
    for _ in range(10):
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sessions = {f"s{i}": 64 for i in range(6)}  # the demo's six sessions, 64 neurons each
    model = NDT(make_config(args.size), sessions).to(args.device)
    n_tensors = sum(1 for _ in model.parameters())
    out = {"size": args.size, "device": args.device, "parameter_tensors": n_tensors}
    for name, kernel in KERNELS.items():
        out[f"{name}_ms_per_step"] = round(step_ms(model, kernel, args.steps, args.device), 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
