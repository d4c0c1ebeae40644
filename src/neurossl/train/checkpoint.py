"""Checkpoint files of one training run, written atomically.

``checkpoint_dir/last.pt`` holds everything a killed job needs to continue as if it
had never stopped (model, optimiser, scheduler, RNG streams, step, early-stopping
state); ``best.pt`` holds the weights with the best validation loss so far. Both are
replaced by rename, so a kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
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
#: Written once the stage's outputs are published (see :func:`mark_complete`).
COMPLETE = "complete.json"
_CLAIM_WAIT_S = 600.0
#: Open lock files of this process; the OS releases their locks when it dies, even by
#: SIGKILL, so a killed job never leaves a claim behind.
_HELD: dict[Path, int] = {}


def hold(checkpoint_dir: Path) -> None:
    """Lock the run of ``checkpoint_dir`` for this process, or fail naming the holder.

    Why: two Snakemake runs on one results folder (say, after ``--unlock`` while the
    first was alive) would both train the same run and interleave its log and
    checkpoints. The lock is a sibling file, so :func:`claim` may empty the folder.
    """
    path = Path(checkpoint_dir).with_name(Path(checkpoint_dir).name + ".lock")
    if path in _HELD:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RuntimeError(
            f"{checkpoint_dir}: this run is being trained by {holder}; two workflow runs "
            "share this results folder; wait for the other one (or stop it) and rerun"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _HELD[path] = fd


def mark_complete(checkpoint_dir: Path) -> None:
    """Record that the run's outputs were published from these checkpoints.

    Snakemake runs a finished job again only when told to (``--forcerun``, deleted or
    incomplete outputs): :func:`claim` then starts over instead of handing back the
    finished weights in seconds.
    """
    write_json(Path(checkpoint_dir) / COMPLETE, {"complete": True})


def claim(checkpoint_dir: Path, identity: dict[str, Any], rank: int = 0) -> bool:
    """Make ``checkpoint_dir`` belong to the run ``identity`` describes; True on a resume.

    Why: Snakemake reruns a job when its settings or inputs change, and the folder still
    holds the previous run's checkpoints, possibly a *finished* one. Resuming from it
    would return the old weights (settings the engine does not compare, such as masking
    ratios, the Session files or the package's code, would be ignored silently), so
    checkpoints of any other run, and of a run already completed (a forced rerun), are
    removed and training starts over; a killed job rerun with the same identity resumes.
    ``identity`` must be JSON-serialisable. Under torchrun only rank 0 touches the folder;
    the other ranks wait until it carries this identity.
    """
    checkpoint_dir = Path(checkpoint_dir)
    record = checkpoint_dir / RUN_RECORD
    wanted = json.loads(json.dumps(identity, sort_keys=True))
    complete = checkpoint_dir / COMPLETE
    if rank != 0:
        deadline = time.monotonic() + _CLAIM_WAIT_S
        while _recorded(record) != wanted or complete.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{record}: rank 0 did not claim the checkpoint folder")
            time.sleep(0.2)
        return latest(checkpoint_dir) is not None
    if _recorded(record) == wanted and not complete.exists():
        return latest(checkpoint_dir) is not None
    if checkpoint_dir.exists():
        if complete.exists():
            logger.warning("%s: run finished before; rerun asked for, so starting over",
                           checkpoint_dir)  # fmt: skip
        elif any(checkpoint_dir.iterdir()):
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
