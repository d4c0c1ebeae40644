"""Seeding and RNG state, what every entry point does before training (device: neurossl.device)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; on CUDA also ask for deterministic kernels.

    CPU kernels are already deterministic for a fixed seed and thread count (the resume
    test checks bit-identity), while ``use_deterministic_algorithms`` imports TorchDynamo
    and Inductor: 2.2 s of every training job's start-up on CPU, for nothing. On CUDA it
    is asked for with ``warn_only`` so an op without a deterministic kernel warns
    instead of crashing a long run; cuBLAS is deterministic only with a fixed workspace
    (``CUBLAS_WORKSPACE_CONFIG``, read when its first handle is made), so that is set
    unless the user chose one.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict:
    """Every global RNG stream a training step may draw from (for checkpoints)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
