"""Give each concurrent training job its own GPU(s) on a workstation.

Snakemake's ``--resources gpu=N`` caps how many GPU jobs run at once but does not say
*which* card a job gets, so two jobs would both land on GPU 0. This wrapper claims free
cards with exclusive file locks, exports ``CUDA_VISIBLE_DEVICES`` for the command and
holds the locks until it exits; the kernel releases them even if the job is killed.

Under a scheduler that already assigned cards (SLURM sets CUDA_VISIBLE_DEVICES) or with
``--gpus 0`` the command runs unchanged.

Usage: ``python -m neurossl.gpu_slots --gpus 2 -- torchrun ... -m neurossl.stages ...``
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

LOCK_DIR = Path(os.environ.get("NEUROSSL_GPU_LOCK_DIR", tempfile.gettempdir()))


def visible_gpu_count() -> int:
    """Number of GPUs on the host, without initialising CUDA in this process."""
    forced = os.environ.get("NEUROSSL_GPU_COUNT")
    if forced is not None:
        return int(forced)
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def auto_gpus_per_job() -> int:
    """``compute.gpus: auto``: 1 when a GPU is visible to this process, else 0.

    Decided without torch: the workflow resolves it at every start-up (each
    ``snakemake`` call, each SLURM job re-reading the workflow), and importing torch
    for ``torch.cuda.is_available()`` cost about 3 s of a 7 s dry run.
    ``CUDA_VISIBLE_DEVICES`` set to nothing (or -1) hides every card, as it does from CUDA.
    """
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return 0
    return 1 if visible_gpu_count() > 0 else 0


def claim(n_wanted: int, n_total: int, timeout: float = 86400.0) -> tuple[list[int], list[IO]]:
    """Lock ``n_wanted`` distinct free GPU indices, waiting until enough are free."""
    if n_wanted > n_total:
        raise RuntimeError(f"job needs {n_wanted} GPUs but the host has {n_total}")
    deadline = time.monotonic() + timeout
    while True:
        held: list[tuple[int, IO]] = []
        for index in range(n_total):
            handle = open(LOCK_DIR / f"neurossl-gpu-{index}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            held.append((index, handle))
            if len(held) == n_wanted:
                return [i for i, _ in held], [h for _, h in held]
        for _, handle in held:
            handle.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n_wanted} free GPUs within {timeout} s")
        time.sleep(1.0)


def run_with_gpus(n_gpus: int, command: list[str]) -> int:
    env = dict(os.environ)
    scheduler_assigned = "SLURM_JOB_ID" in env and "CUDA_VISIBLE_DEVICES" in env
    if n_gpus <= 0 or scheduler_assigned or visible_gpu_count() == 0:
        return subprocess.call(command, env=env)
    indices, handles = claim(n_gpus, visible_gpu_count())
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in indices)
    try:
        return subprocess.call(command, env=env)
    finally:
        for handle in handles:
            handle.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a command on GPUs no other job holds.")
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    sys.exit(run_with_gpus(args.gpus, command))


if __name__ == "__main__":
    main()
