"""A real single-node SLURM cluster on this host, for testing the SLURM workflow profile.

Why a real cluster rather than a mocked ``sbatch``: the profile is only trustworthy when
its resource mapping, partition fallback and status polling have been accepted by an
actual ``slurmctld``. Debian's ``slurm-wlm`` and ``munge`` make that cheap: this module
installs them when missing (needs root and apt), writes a minimal ``slurm.conf`` with
this host as controller and only compute node, starts ``munged``, ``slurmctld`` and
``slurmd``, and waits until the node accepts jobs. Every step is idempotent, so a second
test session reuses the running cluster. A ``slurm.conf`` this module did not write is
never overwritten: on a host that already runs SLURM we only use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from neurossl.atomic import write_text

PACKAGES = ("slurm-wlm", "munge")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
CGROUP_CONF = Path("/etc/slurm/cgroup.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
STATE_DIR = Path("/var/lib/slurm")
LOG_DIR = Path("/var/log/slurm")
SLURMCTLD_LOG = LOG_DIR / "slurmctld.log"
SLURMD_LOG = LOG_DIR / "slurmd.log"
SLURMCTLD_PID = Path("/run/slurmctld.pid")
SLURMD_PID = Path("/run/slurmd.pid")
PARTITION = "debug"
MARKER = "# Written by neurossl tests/slurm_cluster.py; rewritten when the host changes."
# Node states in which a job can start; anything else is repaired or waited on.
USABLE_STATES = ("idle", "mixed", "allocated", "completing")


class ClusterUnavailable(Exception):
    """This host cannot run a SLURM cluster at all (no root, no apt, no packages).

    A distinct type so the test fixture skips on exactly these conditions and fails on
    everything else (a daemon that does not come up is a bug worth seeing).
    """


@dataclass(frozen=True)
class Cluster:
    """What a test needs to know about the running cluster."""

    node: str
    partition: str
    slurmctld_log: Path


def start_cluster(timeout_s: float = 120.0) -> Cluster:
    """Install, configure and start the cluster as far as needed; return once usable."""
    node = socket.gethostname().split(".")[0]
    if os.geteuid() != 0:
        if _responds():
            return _wait_usable(node, timeout_s)
        raise ClusterUnavailable("starting a SLURM cluster needs root (uid 0)")
    _install_packages()
    if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text():
        if _responds():
            return _wait_usable(node, timeout_s)
        raise ClusterUnavailable(
            f"{SLURM_CONF} belongs to another SLURM set-up whose cluster does not respond; "
            "leaving it alone"
        )
    changed = _write_config(node)
    _start_munge()
    if changed:
        _stop_daemon(SLURMD_PID)
        _stop_daemon(SLURMCTLD_PID)
    if not _alive(SLURMCTLD_PID):
        _run(["slurmctld"], "slurmctld", SLURMCTLD_LOG)
    if not _alive(SLURMD_PID):
        _run(["slurmd"], "slurmd", SLURMD_LOG)
    return _wait_usable(node, timeout_s)


def _install_packages() -> None:
    """apt-get install the packages if any of their daemons is missing."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"SLURM is not installed and apt-get is missing for {PACKAGES}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ClusterUnavailable(
                f"could not install {PACKAGES}: `{' '.join(command)}` exited "
                f"{result.returncode}: {(result.stdout + result.stderr)[-1500:]}"
            )


def _write_config(node: str) -> bool:
    """Write slurm.conf/cgroup.conf for this host; True when anything changed on disk."""
    wanted = {SLURM_CONF: _slurm_conf(node), CGROUP_CONF: _cgroup_conf()}
    changed = False
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
            path.chmod(0o644)
            changed = True
    for sub in ("slurmctld", "slurmd"):
        (STATE_DIR / sub).mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return changed


def _slurm_conf(node: str) -> str:
    """The node line comes from ``slurmd -C`` so CPUs/memory never exceed the machine
    (a node that claims more than it has is drained by slurmctld)."""
    hardware = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
    node_line = hardware.stdout.splitlines()[0].split()
    fields = [f for f in node_line if not f.startswith(("NodeName=", "UpTime="))]
    lines = [
        MARKER,
        "ClusterName=neurossl",
        f"SlurmctldHost={node}",
        "AuthType=auth/munge",
        "SlurmUser=root",
        "MpiDefault=none",
        # No cgroup hierarchy is needed or reliably writable in containers/VMs.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        # No slurmdbd: sacct has nothing to report, so job status comes from squeue,
        # which keeps finished jobs for MinJobAge seconds.
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MinJobAge=600",
        "ReturnToService=2",
        f"StateSaveLocation={STATE_DIR / 'slurmctld'}",
        f"SlurmdSpoolDir={STATE_DIR / 'slurmd'}",
        f"SlurmctldPidFile={SLURMCTLD_PID}",
        f"SlurmdPidFile={SLURMD_PID}",
        f"SlurmctldLogFile={SLURMCTLD_LOG}",
        f"SlurmdLogFile={SLURMD_LOG}",
        f"NodeName={node} {' '.join(fields)} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def _cgroup_conf() -> str:
    # slurmd reads cgroup.conf at start-up even with proctrack/linuxproc; autodetect
    # copes with both cgroup v1 and v2 hosts.
    return f"{MARKER}\nCgroupPlugin=autodetect\n"


def _start_munge() -> None:
    """munged must run as the munge user with a key only it can read."""
    if _munge_works():
        return
    if not MUNGE_KEY.exists():
        subprocess.run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"], check=True)
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
    deadline = time.monotonic() + 10
    while not _munge_works():
        if time.monotonic() > deadline:
            raise RuntimeError("munged started but `munge -n | unmunge` keeps failing")
        time.sleep(0.2)


def _munge_works() -> bool:
    credential = subprocess.run(["munge", "-n"], capture_output=True)
    if credential.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=credential.stdout, capture_output=True).returncode == 0


def _alive(pid_file: Path) -> bool:
    """Whether the daemon recorded in ``pid_file`` still runs."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/comm").read_text().strip() in ("slurmctld", "slurmd")


def _stop_daemon(pid_file: Path) -> None:
    """Stop a daemon this module started (by its pid file) so it rereads slurm.conf."""
    if not _alive(pid_file):
        return
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid_file):
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon {pid} from {pid_file} ignored SIGTERM for 30 s")
        time.sleep(0.2)


def _run(command: list[str], name: str, log: Path) -> None:
    """Start a daemon (it forks into the background itself)."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{name} failed to start ({result.returncode}): {result.stderr}\n{_tail(log)}"
        )


def _responds() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


def _node_state(node: str) -> str:
    result = subprocess.run(
        ["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True, text=True
    )
    return result.stdout.strip().lower() if result.returncode == 0 else ""


def _wait_usable(node: str, timeout_s: float) -> Cluster:
    """Wait until ``node`` can run jobs, resuming it once if it is down or drained."""
    deadline = time.monotonic() + timeout_s
    resumed = False
    state = ""
    while time.monotonic() < deadline:
        state = _node_state(node)
        if state.rstrip("*~#") in USABLE_STATES:
            return Cluster(node=node, partition=_default_partition(), slurmctld_log=SLURMCTLD_LOG)
        if not resumed and any(s in state for s in ("down", "drain", "fail")):
            subprocess.run(
                ["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True
            )
            resumed = True
        time.sleep(0.5)
    raise RuntimeError(
        f"SLURM node {node!r} not usable after {timeout_s:.0f} s (state {state!r})\n"
        f"slurmctld log:\n{_tail(SLURMCTLD_LOG)}\nslurmd log:\n{_tail(SLURMD_LOG)}"
    )


def _default_partition() -> str:
    partitions = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True
    ).stdout.split()
    for partition in partitions:
        if partition.endswith("*"):
            return partition.rstrip("*")
    return partitions[0] if partitions else PARTITION


def _tail(path: Path, n_chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-n_chars:] if path.exists() else f"({path} missing)"
