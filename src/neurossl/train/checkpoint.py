"""Checkpoint files of one training run, written atomically.

``checkpoint_dir/last.pt`` holds everything a killed job needs to continue as if it
had never stopped (model, optimiser, scheduler, RNG streams, step, early-stopping
state); ``best.pt`` holds the weights with the best validation loss so far. Both are
replaced by rename, so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from neurossl.atomic import atomic_path, write_json

logger = logging.getLogger(__name__)
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


#: The run a checkpoint folder belongs to (see :func:`claim`).
RUN_RECORD = "run.json"
_CLAIM_WAIT_S = 600.0


def claim(checkpoint_dir: Path, identity: dict[str, Any], rank: int = 0) -> bool:
    """Make ``checkpoint_dir`` belong to the run ``identity`` describes; True on a resume.

    Why: Snakemake reruns a job when its settings or inputs change, and the folder still
    holds the previous run's checkpoints, possibly a *finished* one. Resuming from it
    would return the old weights (settings the engine does not compare, such as masking
    ratios or the Session files, would be ignored silently), so checkpoints of any other
    run are removed and training starts over; a killed job rerun with the same identity
    resumes. ``identity`` must be JSON-serialisable. Under torchrun only rank 0 touches
    the folder; the other ranks wait until it carries this identity.
    """
    checkpoint_dir = Path(checkpoint_dir)
    record = checkpoint_dir / RUN_RECORD
    wanted = json.loads(json.dumps(identity, sort_keys=True))
    if rank != 0:
        deadline = time.monotonic() + _CLAIM_WAIT_S
        while _recorded(record) != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{record}: rank 0 did not claim the checkpoint folder")
            time.sleep(0.2)
        return latest(checkpoint_dir) is not None
    if _recorded(record) == wanted:
        return latest(checkpoint_dir) is not None
    if checkpoint_dir.exists():
        if any(checkpoint_dir.iterdir()):
            logger.warning("%s: checkpoints of another run; starting over", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    write_json(record, wanted)
    return False


def _recorded(record: Path) -> Any:
    try:
        return json.loads(record.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
