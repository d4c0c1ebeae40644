"""Checkpoint files of one training run, written atomically.

``checkpoint_dir/last.pt`` holds everything a killed job needs to continue as if it
had never stopped (model, optimiser, scheduler, RNG streams, step, early-stopping
state); ``best.pt`` holds the weights with the best validation loss so far. Both are
replaced by rename, so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neurossl.atomic import atomic_path

LAST = "last.pt"
BEST = "best.pt"


def save(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint to CPU; a corrupt file names itself in the error."""
    try:
        # RNG states hold numpy arrays and python tuples, hence weights_only=False:
        # these files are written by this engine, not downloaded.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise RuntimeError(f"{path}: unreadable checkpoint ({err})") from err


def latest(checkpoint_dir: Path) -> Path | None:
    path = Path(checkpoint_dir) / LAST
    return path if path.exists() else None
