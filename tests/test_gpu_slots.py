"""Concurrent jobs get distinct GPUs; a scheduler's assignment is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from neurossl.gpu_slots import auto_gpus_per_job


def _start(tmp_path, name, gpus, env_extra):
    env = {
        **os.environ,
        "NEUROSSL_GPU_COUNT": "3",
        "NEUROSSL_GPU_LOCK_DIR": str(tmp_path),
        **env_extra,
    }
    if "SLURM_JOB_ID" not in env_extra:
        env.pop("SLURM_JOB_ID", None)
    out = tmp_path / f"{name}.txt"
    script = (
        f"import os, time; open({str(out)!r}, 'w')"
        ".write(os.environ.get('CUDA_VISIBLE_DEVICES', '')); time.sleep(1.5)"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neurossl.gpu_slots",
            "--gpus",
            str(gpus),
            "--",
            sys.executable,
            "-c",
            script,
        ],
        env=env,
    )
    return proc, out


def test_parallel_jobs_get_disjoint_cards(tmp_path):
    first, out1 = _start(tmp_path, "a", 2, {})
    time.sleep(0.5)
    second, out2 = _start(tmp_path, "b", 1, {})
    assert first.wait(timeout=30) == 0 and second.wait(timeout=30) == 0
    cards1 = set(out1.read_text().split(","))
    cards2 = set(out2.read_text().split(","))
    assert len(cards1) == 2 and len(cards2) == 1
    assert not cards1 & cards2


def test_job_waits_until_a_card_is_free(tmp_path):
    jobs = [_start(tmp_path, f"j{i}", 2, {}) for i in range(2)]
    started = time.monotonic()
    assert all(proc.wait(timeout=30) == 0 for proc, _ in jobs)
    assert time.monotonic() - started >= 2.5  # the second job had to wait for the first


def test_slurm_assignment_is_kept(tmp_path):
    proc, out = _start(tmp_path, "s", 1, {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "5"})
    assert proc.wait(timeout=30) == 0
    assert out.read_text() == "5"


def test_failure_exit_code_is_passed_on(tmp_path):
    env = {**os.environ, "NEUROSSL_GPU_COUNT": "1", "NEUROSSL_GPU_LOCK_DIR": str(tmp_path)}
    code = subprocess.call(
        [
            sys.executable,
            "-m",
            "neurossl.gpu_slots",
            "--gpus",
            "1",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(3)",
        ],
        env=env,
    )
    assert code == 3


def test_auto_asks_one_gpu_only_when_a_card_is_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("NEUROSSL_GPU_COUNT", "2")
    assert auto_gpus_per_job() == 1
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert auto_gpus_per_job() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert auto_gpus_per_job() == 1
    monkeypatch.setenv("NEUROSSL_GPU_COUNT", "0")
    assert auto_gpus_per_job() == 0
