"""The device switch: which device a job runs on and in which precision it computes.

Every training step, evaluation pass and benchmark enters :func:`autocast` with the
device it resolved through :func:`resolve_device`, so GPU and CPU run the same code and
differ only here: bf16 autocast on CUDA (tensor-core matmuls and SDPA's fused kernels),
fp32 on CPU. Setting ``NEUROSSL_CPU_BF16=1`` turns on bf16 autocast on CPU as well, a
rehearsal of the GPU's dtype paths on a machine without one (tests/test_bf16_rehearsal.py):
a dtype mismatch then fails in seconds on a laptop instead of hours into a GPU job.
"""

from __future__ import annotations

import contextlib
import os

import torch

#: Environment variable that asks for bf16 autocast on CPU (the rehearsal).
CPU_BF16_ENV = "NEUROSSL_CPU_BF16"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; explicit names are checked.

    Failing here (not deep inside the first forward pass) tells a user on a GPU-less
    node that the rule asked for CUDA.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        return name
    raise ValueError(f"unknown device {name!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def cpu_bf16_rehearsal() -> bool:
    """True when the environment asks for bf16 autocast on CPU."""
    return os.environ.get(CPU_BF16_ENV, "").strip().lower() in ("1", "true", "yes")


def autocast_dtype(device: str) -> torch.dtype | None:
    """The dtype matmuls run in under :func:`autocast` on ``device`` (None: fp32)."""
    if str(device).startswith("cuda") or cpu_bf16_rehearsal():
        return torch.bfloat16
    return None


def autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (and on CPU for the rehearsal), otherwise nothing (fp32).

    Outputs computed inside may be bf16: callers cast with ``.float()`` before numpy.
    """
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
