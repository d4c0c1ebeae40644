"""Device choice and seeding: the two things every entry point does before training."""

from __future__ import annotations

import random

import numpy as np
import torch


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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; on CUDA also ask for deterministic kernels.

    CPU kernels are already deterministic for a fixed seed and thread count (the resume
    test checks bit-identity), while ``use_deterministic_algorithms`` imports TorchDynamo
    and Inductor: 2.2 s of every training job's start-up on CPU, for nothing. On CUDA it
    is asked for with ``warn_only`` so an op without a deterministic kernel warns
    instead of crashing a long run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
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
