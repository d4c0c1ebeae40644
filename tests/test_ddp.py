"""Pretraining under real torchrun: two gloo processes on CPU, the same entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_loader import make_dataset

from neurossl.data.splits import write_splits

pytestmark = pytest.mark.slow


def test_two_process_ddp_pretraining_writes_one_model(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    paths, splits = make_dataset(tmp_path / "data", n_trials=24)
    write_splits(splits, tmp_path / "splits.json")
    out = tmp_path / "run"
    command = [
        str(torchrun), "--standalone", "--nproc_per_node=2",
        "-m", "neurossl.stages", "pretrain",
        "--dataset", "toy", "--method", "mtm", "--modality", "spikes", "--size", "tiny",
        "--seed", "0", "--device", "cpu", "--tasks", "co_smoothing",
        "--hparams", '{"pretrain_steps": 12, "eval_every": 4, "checkpoint_every": 4}',
        "--splits", str(tmp_path / "splits.json"),
        "--sessions", *[str(p) for p in paths.values()],
        "--model", str(out / "model.pt"), "--train-log", str(out / "train_log.csv"),
        "--checkpoint-dir", str(out / "checkpoints"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "training on cpu, 2 process(es)" in result.stderr
    state = torch.load(out / "model.pt", weights_only=False)
    assert state  # one model, written by rank 0 only
    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].max() == 12
    assert not log["step"].duplicated().any(), "both ranks wrote the log"
