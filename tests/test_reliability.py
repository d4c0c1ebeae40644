"""What a user does to a run, on a tiny synthetic workflow: kill it, force it, break it.

Every recovery uses the documented command, ``python -m neurossl.run`` (what
``make run`` calls), and every recovered run must end with the metrics AND the complete
training logs of an uninterrupted run. The end-to-end tests share one prepared folder
(sessions and splits) and one uninterrupted run, copied with their Snakemake metadata.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neurossl.report.figures import check_complete
from neurossl.train_logs import StepLog, publish
from workflow_helpers import SNAKEFILE, run_snakemake, tiny_dataset

RUN = "results/synthetic"
PRETRAIN = f"{RUN}/pretrain/mtm/spikes/tiny/seed0"
FINETUNE = f"{RUN}/finetune/mtm/spikes/tiny/seed0"
METRICS = f"{RUN}/eval/mtm/spikes/tiny/seed0/metrics.json"
LOGS = (f"{PRETRAIN}/train_log.csv", f"{FINETUNE}/train_log.csv")


def tiny_config(path: Path, **dataset: object) -> Path:
    """One neural method that pretrains and fine-tunes in three phases, on spikes only."""
    spec = tiny_dataset(modalities=["spikes"], tasks={"spikes": ["co_smoothing", "choice"]})
    spec |= dataset
    config = {
        "results": "results",
        "resources": "resources",
        "device": "cpu",
        "seeds": [0],
        "sizes": ["tiny"],
        "methods": ["mtm"],
        "hparams": {"mtm": {"pretrain_steps": 60, "max_steps": 40, "stitch_steps": 10,
                            "decode_steps": 10, "eval_every": 10, "checkpoint_every": 5}},
        "compute": {"gpus": 0},
        "datasets": {"synthetic": spec},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def command(workdir: Path, *args: str) -> list[str]:
    """The documented run/recovery command, on this test's workflow and config."""
    return [sys.executable, "-m", "neurossl.run", "-s", str(SNAKEFILE), "--directory",
            str(workdir), "--cores", "2", *args,
            "--configfile", str(workdir / "config.yaml")]  # fmt: skip


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(workdir, *args), capture_output=True, text=True, cwd=workdir)


def start(workdir: Path, *args: str) -> subprocess.Popen[str]:
    """The command in its own session, so a kill -9 of the group kills the whole run."""
    return subprocess.Popen(
        command(workdir, *args), cwd=workdir, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for_rows(log: Path, rows: int, proc: subprocess.Popen[str], timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) > rows:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {log} had {rows} rows:\n{proc.stdout}")
        time.sleep(0.05)
    raise AssertionError(f"{log} did not reach {rows} rows in {timeout} s")


def training_job(workdir: Path, stage: str) -> int:
    """Pid of the running ``neurossl.stages <stage>`` job of this workdir."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except (OSError, ValueError):
            continue
        if "neurossl.stages" in argv and stage in argv and cwd == workdir:
            return int(entry.name)
    raise AssertionError(f"no {stage} job is running in {workdir}")


def logged(workdir: Path, path: str) -> pd.DataFrame:
    """A training log without its wall-clock column (the one value a rerun changes)."""
    return pd.read_csv(workdir / path).drop(columns="seconds")


def assert_same_results(workdir: Path, reference: Path) -> None:
    assert (workdir / METRICS).read_text() == (reference / METRICS).read_text()
    for path in LOGS:
        pd.testing.assert_frame_equal(logged(workdir, path), logged(reference, path))
        check_complete(pd.read_csv(workdir / path), workdir / path)


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a workdir with its Snakemake metadata and file times (nothing reruns)."""
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return target


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("prepared")
    tiny_config(workdir / "config.yaml")
    done = run(workdir, f"{RUN}/splits.json")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> Path:
    workdir = copy_run(prepared, tmp_path_factory.mktemp("whole") / "run")
    done = run(workdir)
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


# --- fast checks (no workflow run) ---


def test_a_log_that_does_not_start_at_step_one_is_refused(tmp_path):
    resumed = pd.DataFrame({"step": [101, 102], "loss": [1.0, 0.9]})
    with pytest.raises(ValueError, match="expected step 1, found 101"):
        check_complete(resumed, tmp_path / "train_log.csv")
    phases = pd.DataFrame({"phase": ["a", "a", "b", "b"], "step": [1, 2, 2, 3]})
    with pytest.raises(ValueError, match="phase 'b'"):
        check_complete(phases, tmp_path / "train_log.csv")
    check_complete(pd.DataFrame({"phase": ["a", "b"], "step": [1, 1]}), tmp_path / "x.csv")


def test_a_resumed_log_keeps_the_checkpoints_steps_and_publishes_them_all(tmp_path):
    live = tmp_path / "ckpt" / "train_log.csv"
    log = StepLog(live, keep_until=0, enabled=True)
    for step in range(1, 8):
        log.write({"step": step, "loss": 1.0 / step})
    with live.open("a") as f:
        f.write("8,0.1")  # a kill in the middle of a line
    log = StepLog(live, keep_until=5, enabled=True)  # resumed from the step-5 checkpoint
    for step in range(6, 9):
        log.write({"step": step, "loss": 1.0 / step})
    publish([("fit", live)], tmp_path / "train_log.csv")
    with (tmp_path / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert {r["phase"] for r in rows} == {"fit"}
    with pytest.raises(ValueError, match=r"does not cover the checkpoint's steps 1\.\.20"):
        StepLog(live, keep_until=20, enabled=True)


@pytest.mark.parametrize(
    ("dataset", "named"),
    [
        ({"tasks": {"spikes": ["co_smothing"]}}, "datasets.synthetic.tasks.spikes"),
        ({"tasks": {"spikes": ["behavior_whel_speed"]}}, "no behaviour 'whel_speed'"),
        (
            {"split": {"fractions": {"train": 0.8, "valid": 0.1, "test": 0.2}}},
            "datasets.synthetic.split.fractions",
        ),
        (
            {"split": {"windows": "blocks", "block_window": 9.0, "block_length": 3.0}},
            "datasets.synthetic.split.block_window/block_length",
        ),
    ],
)
def test_what_a_job_would_reject_is_rejected_at_planning(tmp_path, dataset, named):
    config = tiny_config(tmp_path / "config.yaml", **dataset)
    plan = run_snakemake(tmp_path, "-n", check=False, configfile=config)
    assert plan.returncode != 0
    assert named in plan.stderr + plan.stdout


# --- the user's runs (slow) ---


@pytest.mark.slow
def test_killed_job_and_killed_workflow_recover_with_the_documented_command(
    prepared, uninterrupted, tmp_path
):
    workdir = copy_run(prepared, tmp_path / "run")
    # 1. One training job dies (kill -9) in pretraining, after its step-10 checkpoint.
    proc = start(workdir)
    wait_for_rows(workdir / PRETRAIN / "checkpoints/full/train_log.csv", 12, proc)
    os.kill(training_job(workdir, "pretrain"), signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    assert not (workdir / PRETRAIN / "train_log.csv").exists()
    # 2. Recovery; then the whole workflow is killed in fine-tuning's full phase.
    proc = start(workdir)
    wait_for_rows(workdir / FINETUNE / "checkpoints/full/train_log.csv", 7, proc)
    busy = run(workdir)
    assert busy.returncode == 2
    assert busy.stderr.strip().count("\n") == 0 and "another run" in busy.stderr
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert any((workdir / ".snakemake" / "locks").iterdir())  # Snakemake's stale lock
    # 3. The same command again: it removes the stale lock and finishes the run.
    done = run(workdir)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "removing the lock a killed run left" in done.stdout
    assert_same_results(workdir, uninterrupted)
    assert (workdir / RUN / "report/metrics.csv").read_bytes() == (
        uninterrupted / RUN / "report/metrics.csv"
    ).read_bytes()


@pytest.mark.slow
def test_a_forced_rerun_retrains(uninterrupted, tmp_path):
    workdir = copy_run(uninterrupted, tmp_path / "run")
    last = workdir / FINETUNE / "checkpoints/full/last.pt"
    before = last.stat().st_mtime_ns
    forced = run(workdir, "--forcerun", "finetune", METRICS)
    assert forced.returncode == 0, forced.stderr[-4000:]
    assert last.stat().st_mtime_ns != before
    job_log = (workdir / RUN / "logs/finetune/mtm.spikes.tiny.seed0.log").read_text()
    assert "rerun asked for, so starting over" in job_log
    assert "resuming" not in job_log
    assert_same_results(workdir, uninterrupted)


@pytest.mark.slow
def test_a_corrupt_intermediate_is_never_reported_done(uninterrupted, tmp_path):
    workdir = copy_run(uninterrupted, tmp_path / "run")
    (workdir / PRETRAIN / "model.pt").write_bytes(b"not a model")
    failed = run(workdir, METRICS)
    assert failed.returncode != 0
    assert not (workdir / FINETUNE / "model.pt").exists()
    again = run(workdir, METRICS)
    assert again.returncode != 0, "a half-rebuilt workflow was called complete"
    assert "Nothing to be done" not in again.stdout + again.stderr
    plan = run_snakemake(workdir, "-n", configfile=workdir / "config.yaml")
    assert "finetune" in plan.stdout and "report" in plan.stdout
    # The user's fix, deleting the bad file, rebuilds everything after it.
    (workdir / PRETRAIN / "model.pt").unlink()
    fixed = run(workdir)
    assert fixed.returncode == 0, fixed.stderr[-4000:]
    assert_same_results(workdir, uninterrupted)
