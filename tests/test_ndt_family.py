"""mtm / ndt / scratch_ndt: pretrain -> finetune -> evaluate on a tiny dataset."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_loader import make_dataset

from neurossl.methods.base import StageInputs, StageOutputs
from neurossl.methods.registry import get_method
from neurossl.names import is_metric

TASKS = ("co_smoothing", "forecasting", "inter_region", "intra_region", "choice",
         "behavior_wheel_speed", "stimulus_class")  # fmt: skip
FAST = {"max_steps": 30, "stitch_steps": 10, "eval_every": 10, "checkpoint_every": 10}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ndt_family"), n_trials=40)


def _inputs(data, method: str, hparams: dict | None = None, tasks=TASKS) -> StageInputs:
    paths, splits = data
    return StageInputs(
        "toy", method, "tiny", 0, paths, splits, tasks, dict(FAST, **(hparams or {}))
    )


@pytest.mark.parametrize("method", ["mtm", "ndt"])
def test_pretrain_finetune_evaluate(data, tmp_path, method):
    torch.set_num_threads(1)
    impl = get_method(method)
    # The logistic probe's CV is the slow part: score labels once, in the mtm run.
    inputs = _inputs(data, method, tasks=TASKS[:6] if method == "mtm" else TASKS[:4] + TASKS[5:6])
    pre = StageOutputs(model=tmp_path / "pre" / "model.pt")
    impl.pretrain(inputs, pre)
    fine = StageOutputs(model=tmp_path / "fine" / "model.pt")
    impl.finetune(inputs, pre.model, fine)
    assert (tmp_path / "fine" / "train_log.stitch.csv").exists()
    evaluation = impl.evaluate(inputs, fine.model)
    heldout = inputs.splits.heldout_sessions
    by_task = {}
    for row in evaluation.rows:
        assert row.method == method and row.seed == 0 and is_metric(row.metric)
        assert row.session in heldout
        by_task.setdefault(row.task, set()).add(row.metric)
    assert by_task["co_smoothing"] == {"bps", "poisson_d2"}
    assert by_task["forecasting"] == {"bps", "poisson_d2"}
    assert by_task["inter_region"] == by_task["intra_region"] == {"bps", "poisson_d2"}
    if method == "mtm":
        assert by_task["choice"] == {"bacc", "acc"}
    assert by_task["behavior_wheel_speed"] == {"r2"}
    assert all(math.isfinite(r.value) for r in evaluation.rows)
    pred = evaluation.arrays[f"co_smoothing/{heldout[0]}/pred"]
    target = evaluation.arrays[f"co_smoothing/{heldout[0]}/target"]
    assert pred.shape == target.shape
    # Only held-out neurons are predicted: held-in columns are NaN.
    assert np.isnan(pred[:, :, 1]).all() and np.isfinite(pred[:, :, 0]).all()


def test_model_learns_the_data(data, tmp_path):
    """Trained co-smoothing beats the per-neuron mean (bps > 0) on this easy latent data."""
    torch.set_num_threads(1)
    impl = get_method("scratch_ndt")
    inputs = _inputs(data, "scratch_ndt", {"max_steps": 120, "lr": 3e-3}, ("co_smoothing",))
    fine = StageOutputs(model=tmp_path / "model.pt")
    impl.finetune(inputs, None, fine)
    rows = impl.evaluate(inputs, fine.model).rows
    bps = [r.value for r in rows if r.task == "co_smoothing" and r.metric == "bps"]
    assert np.mean(bps) > 0.0


def test_hparams_are_checked(data):
    impl = get_method("mtm")
    assert impl.supported_tasks(TASKS) == TASKS  # stimulus_class decodes like choice
    with pytest.raises(ValueError, match="unknown hparams \\['learning_rate'\\]"):
        impl.pretrain(_inputs(data, "mtm", {"learning_rate": 1.0}), StageOutputs())
    with pytest.raises(ValueError, match="'max_steps' must be int"):
        impl.pretrain(_inputs(data, "mtm", {"max_steps": "many"}), StageOutputs())
    with pytest.raises(ValueError, match="unknown NDT preset 'huge'"):
        impl.pretrain(replace(_inputs(data, "mtm"), size="huge", hparams={"preset": "huge"}),
                      StageOutputs())  # fmt: skip
    assert not get_method("scratch_ndt").pretrains
    assert get_method("ndt").supported_tasks(("co_smoothing", "stimulus_x", "nope")) == (
        "co_smoothing", "stimulus_x")  # fmt: skip
