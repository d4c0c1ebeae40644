"""The SLURM workflow profile against a real single-node SLURM cluster.

Each test runs snakemake with ``--workflow-profile profiles/slurm`` exactly as a user on a
login node would, then cross-checks snakemake's own log with what slurmctld recorded
(squeue keeps finished jobs for MinJobAge = 600 s): every non-local job must have been
an sbatch job of this run, with the memory and time snakemake asked for.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slurm_cluster import Cluster, ClusterUnavailable, start_cluster
from workflow_helpers import REPO, SNAKEFILE, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = REPO / "profiles" / "slurm"
RETRY_SNAKEFILE = REPO / "tests" / "data" / "slurm_retry" / "Snakefile"
# The plugin's first status poll waits 40 s by default, sensible on a busy cluster and
# the only thing that would make this test slow; it is the one setting the test adds.
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "1")
RUN_TIMEOUT_S = 480
SITE_PREFIX = "NEUROSSL_SLURM_"


@dataclass
class SnakemakeJob:
    """One job block of snakemake's log ("rule x:" or "localrule x:" ... "jobid: n")."""

    rule: str
    local: bool
    jobid: int = -1
    resources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SlurmJob:
    """One line of ``squeue --states=all`` for a job of the run."""

    jobid: str
    state: str
    comment: str
    memory: str
    time_limit: str
    partition: str


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -e '.[dev]'")
    try:
        return start_cluster()
    except ClusterUnavailable as reason:
        pytest.skip(f"no SLURM cluster on this host: {reason}")


@pytest.fixture
def workdir(tmp_path, cluster):
    """A run directory whose leftover SLURM jobs (after a failure or timeout) are cancelled."""
    yield tmp_path
    for line in _squeue("--format=%i|%Z", "--states=pending,running,configuring"):
        jobid, job_dir = line.split("|", 1)
        if Path(job_dir).is_relative_to(tmp_path):
            subprocess.run(["scancel", jobid], check=False)


def test_default_dag_runs_every_nonlocal_job_through_sbatch(workdir, cluster):
    config = tiny_config(workdir)
    log = _run_with_profile(SNAKEFILE, workdir, "--configfile", str(config))

    jobs = _parse_jobs(log)
    remote = [job for job in jobs if not job.local]
    local = [job for job in jobs if job.local and job.rule != "all"]
    assert {"synthesize_session", "preprocess", "split"} <= {job.rule for job in remote}
    assert "dataset_summary" in {job.rule for job in local}, "localrules must stay local"

    submissions = _submissions(log)
    slurm = _slurm_jobs(_run_id(log))
    assert sorted(submissions) == sorted(job.jobid for job in remote), log
    assert set(slurm) == {slurm_id for ids in submissions.values() for slurm_id in ids}
    for job in remote:
        (slurm_id,) = submissions[job.jobid]
        record = slurm[slurm_id]
        assert record.state == "COMPLETED", (job, record)
        assert record.comment.startswith(f"rule_{job.rule}"), (job, record)
        assert "slurm_partition" not in job.resources, "no NEUROSSL_SLURM_PARTITION set"
        assert record.partition == cluster.partition, "unset: the cluster's default partition"
        assert record.memory == f"{job.resources['mem_mb']}M", (job, record)
        assert record.time_limit == _slurm_minutes(int(job.resources["runtime"])), (job, record)

    results = workdir / "results" / "synthetic"
    assert (results / "splits.json").stat().st_size > 0
    n_preprocessed = sum(job.rule == "preprocess" for job in remote)
    assert len(list((results / "sessions").glob("*.h5"))) == n_preprocessed
    assert (results / "report" / "summary" / "dataset_summary.json").stat().st_size > 0


def test_job_that_ran_out_of_memory_succeeds_on_retry_with_more(workdir, cluster):
    log = _run_with_profile(
        RETRY_SNAKEFILE, workdir, env={"NEUROSSL_SLURM_PARTITION": cluster.partition}
    )

    attempts = [job for job in _parse_jobs(log) if job.rule == "needs_memory"]
    assert [job.resources["mem_mb"] for job in attempts] == ["1000", "2000"], log
    (slurm_ids,) = _submissions(log).values()
    assert len(slurm_ids) == 2, log
    slurm = _slurm_jobs(_run_id(log))
    first, second = (slurm[slurm_id] for slurm_id in slurm_ids)
    assert (first.state, first.memory) == ("FAILED", "1000M")
    assert (second.state, second.memory) == ("COMPLETED", "2000M")
    assert (first.partition, second.partition) == (cluster.partition, cluster.partition)
    assert {job.resources["slurm_partition"] for job in attempts} == {cluster.partition}

    granted = [line.split() for line in (workdir / "attempts.log").read_text().splitlines()]
    assert granted == [[slurm_ids[0], "1000"], [slurm_ids[1], "2000"]]
    assert (workdir / "done.txt").read_text().split() == [slurm_ids[1], "2000"]


def _run_with_profile(
    snakefile: Path, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> str:
    """snakemake with the SLURM profile from ``workdir``; returns its combined output.

    The profile's site variables come only from ``env``, never from the caller's shell.
    """
    site = {key: value for key, value in os.environ.items() if not key.startswith(SITE_PREFIX)}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(PROFILE),
        *FAST_POLL,
        *args,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env={**site, **(env or {})},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{log}"
    return log


_JOB_HEADER = re.compile(r"^(local)?rule (\w+):$")
# --show-failed-logs pastes a failed job's own snakemake log between two rules of "=".
_PASTED_LOG = re.compile(r"^Logfile \S+:\n={40,}\n.*?^={40,}$", re.MULTILINE | re.DOTALL)
_JOB_FIELD = re.compile(r"^\s+(jobid|resources): (.*)$")


def _parse_jobs(log: str) -> list[SnakemakeJob]:
    """Every job snakemake started (once per attempt), in order, from its main log."""
    jobs: list[SnakemakeJob] = []
    for line in _PASTED_LOG.sub("", log).splitlines():
        if header := _JOB_HEADER.match(line):
            jobs.append(SnakemakeJob(rule=header.group(2), local=bool(header.group(1))))
        elif jobs and (entry := _JOB_FIELD.match(line)):
            if entry.group(1) == "jobid":
                jobs[-1].jobid = int(entry.group(2))
            else:
                pairs = (item.split("=", 1) for item in entry.group(2).split(", "))
                jobs[-1].resources = {key: value for key, value in pairs}
    return jobs


def _submissions(log: str) -> dict[int, list[str]]:
    """snakemake job id -> SLURM job ids it was submitted as, one per attempt."""
    submitted: dict[int, list[str]] = {}
    for jobid, slurm_id in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log):
        submitted.setdefault(int(jobid), []).append(slurm_id)
    return submitted


def _run_id(log: str) -> str:
    """The plugin names every sbatch job of one snakemake run with this id."""
    match = re.search(r"SLURM run ID: (\S+)", log)
    assert match, f"no 'SLURM run ID' in the log: did the slurm executor run?\n{log}"
    return match.group(1)


def _slurm_jobs(run_id: str) -> dict[str, SlurmJob]:
    lines = _squeue("--name", run_id, "--format=%i|%T|%k|%m|%l|%P", "--states=all")
    return {fields[0]: SlurmJob(*fields) for fields in (line.split("|") for line in lines)}


def _squeue(*args: str) -> list[str]:
    result = subprocess.run(
        ["squeue", "--noheader", *args], capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def _slurm_minutes(minutes: int) -> str:
    """A time limit in minutes as squeue prints it: [days-]hours:minutes:seconds."""
    days, rest = divmod(minutes, 24 * 60)
    clock = f"{rest // 60}:{rest % 60:02d}:00"
    return f"{days}-{clock:0>8}" if days else clock
