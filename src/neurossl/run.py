"""``python -m neurossl.run [snakemake options]``: start or resume the workflow.

The one command for a first run and for recovery after a crash (``make run`` calls it).
Snakemake leaves its directory lock behind when it is killed (kill -9, a lost node, a
closed laptop), and its own advice, ``--unlock``, is unsafe while another run is alive:
both would then write the same files. This wrapper tells the two cases apart:

- it holds an OS lock (``flock``) on ``.snakemake/neurossl-run.lock`` for as long as the
  Snakemake process it becomes lives; the OS releases it when that process dies, by any
  signal. Held by someone else: another run is alive, and the command stops with one
  line saying so. Free, but Snakemake's lock is there: that lock is stale, is removed
  (``snakemake --unlock``) and the run continues.
- a Snakemake started by hand (not through this command), or a training job that
  outlived a killed Snakemake, holds no such lock; it is found among the live
  processes (Linux ``/proc``) and the command stops likewise.

Incomplete outputs of the killed run are redone (``--rerun-incomplete``); training jobs
resume from their checkpoints.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

RUN_LOCK = "neurossl-run.lock"


def workdir_of(args: list[str]) -> Path:
    """The working directory Snakemake will use (``--directory``/``-d``, else cwd)."""
    for i, arg in enumerate(args):
        if arg in ("--directory", "-d") and i + 1 < len(args):
            return Path(args[i + 1]).resolve()
        if arg.startswith("--directory="):
            return Path(arg.split("=", 1)[1]).resolve()
    return Path.cwd().resolve()


def _is_ours(argv: list[str]) -> str | None:
    """What a process is to this workflow: "snakemake", "a training job" or None."""
    head = [Path(a).name for a in argv[:3]]
    if "snakemake" in head or argv[1:3] == ["-m", "snakemake"]:
        return None if "--unlock" in argv else "snakemake"
    if "neurossl.stages" in argv[:6]:
        return "a training job"  # may outlive its Snakemake when only that was killed
    return None


def live_process(workdir: Path) -> tuple[int, str] | None:
    """(pid, what) of a live Snakemake or training job working in ``workdir``, if any."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            what = _is_ours(argv)
            if what and workdir_of_process(entry, argv) == workdir:
                return int(entry.name), what
        except (OSError, ValueError):
            continue  # gone meanwhile, or another user's process
    return None


def workdir_of_process(entry: Path, argv: list[str]) -> Path:
    for i, arg in enumerate(argv):
        if arg in ("--directory", "-d") and i + 1 < len(argv):
            return (Path(os.readlink(entry / "cwd")) / argv[i + 1]).resolve()
        if arg.startswith("--directory="):
            return (Path(os.readlink(entry / "cwd")) / arg.split("=", 1)[1]).resolve()
    return Path(os.readlink(entry / "cwd")).resolve()


def stop(line: str) -> None:
    print(f"neurossl: {line}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    workdir = workdir_of(args)
    state = workdir / ".snakemake"
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 100, 0).decode(errors="replace").strip()
        stop(
            f"another run ({holder}) is working in {workdir}; wait for it to finish or "
            f"stop it (kill {holder.split()[-1] if holder else '<pid>'}), then run this "
            "command again"
        )
    alive = live_process(workdir)
    if alive is not None:
        pid, what = alive
        stop(
            f"{what} (pid {pid}) is running in {workdir}; wait for it to finish or "
            f"stop it (kill {pid}), then run this command again"
        )
    locks = state / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        print(f"neurossl: no run is alive in {workdir}; removing the lock a killed run left")
        unlock = subprocess.run(
            [sys.executable, "-m", "snakemake", *args, "--unlock"], capture_output=True, text=True
        )
        if unlock.returncode != 0:
            stop(f"snakemake --unlock failed:\n{unlock.stderr[-3000:]}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    os.set_inheritable(fd, True)  # exec keeps the lock for the life of Snakemake
    if not {"--rerun-incomplete", "--ri"} & set(args):
        args.append("--rerun-incomplete")
    os.execv(sys.executable, [sys.executable, "-m", "snakemake", *args])


if __name__ == "__main__":
    main()
