"""mtm / ndt / scratch_ndt: pretrain -> finetune -> evaluate on a tiny dataset."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from test_loader import make_dataset

from neurossl.contract import StageInputs, StageOutputs
from neurossl.methods.registry import get_method
from neurossl.models.ndt import NDT, RATE_FLOOR, count_parameters, make_config
from neurossl.names import is_metric

TASKS = ("co_smoothing", "forecasting", "inter_region", "intra_region", "choice",
         "behavior_wheel_speed", "stimulus_class")  # fmt: skip
FAST = {
    "pretrain_steps": 30,
    "max_steps": 30,
    "stitch_steps": 10,
    "decode_steps": 10,
    "eval_every": 10,
    "checkpoint_every": 10,
}


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
    log = pd.read_csv(tmp_path / "fine" / "train_log.csv")
    assert list(log["phase"].unique()) == ["stitch", "full", "decode"]
    evaluation = impl.evaluate(inputs, fine.model)
    heldout = inputs.splits.heldout_sessions
    by_task = {}
    for row in evaluation.rows:
        assert row.method == method and row.seed == 0 and is_metric(row.metric)
        assert row.session in heldout
        by_task.setdefault(row.task, set()).add(row.metric)
    spiking = {"bps", "poisson_d2", "poisson_d2_pooled"}
    assert by_task["co_smoothing"] == spiking
    assert by_task["forecasting"] == spiking
    assert by_task["inter_region"] == by_task["intra_region"] == spiking
    # Decoding is read twice: the fine-tuned head and the frozen-representation probe.
    if method == "mtm":
        assert by_task["choice"] == {"bacc", "acc", "frozen_bacc", "frozen_acc"}
    assert by_task["behavior_wheel_speed"] == {"r2", "frozen_r2"}
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
    with pytest.raises(ValueError, match=r"hparams\.mtm: unknown key 'learning_rate'"):
        impl.pretrain(_inputs(data, "mtm", {"learning_rate": 1.0}), StageOutputs())
    with pytest.raises(ValueError, match="key 'max_steps': Input should be a valid integer"):
        impl.pretrain(_inputs(data, "mtm", {"max_steps": "many"}), StageOutputs())
    with pytest.raises(ValueError, match="key 'preset': Input should be 'tiny' or 'published'"):
        impl.pretrain(replace(_inputs(data, "mtm"), size="huge", hparams={"preset": "huge"}),
                      StageOutputs())  # fmt: skip
    # A size the backbone lacks is refused, never trained as the tiny preset.
    with pytest.raises(ValueError, match=r"mtm: size 'small' is not an NDT preset"):
        impl.pretrain(replace(_inputs(data, "mtm"), size="small"), StageOutputs())
    assert not get_method("scratch_ndt").pretrains
    assert get_method("ndt").supported_tasks(("co_smoothing", "stimulus_x", "nope")) == (
        "co_smoothing", "stimulus_x")  # fmt: skip


def test_new_readouts_start_at_each_neurons_mean_rate():
    """Regression: read-outs started near 1 spike/bin, so short runs scored bps ~ -1."""
    torch.manual_seed(0)
    model = NDT(make_config("tiny"), {"s0": 5})
    mean = torch.tensor([0.05, 0.1, 0.2, 0.0, 1.5])
    model.add_session("s1", 5, mean)
    expected = torch.log(mean.clamp_min(RATE_FLOOR))
    torch.testing.assert_close(model.stitch_out["s1"].bias.detach(), expected)
    model.init_rates("s0", mean)
    torch.testing.assert_close(model.stitch_out["s0"].bias.detach(), expected)
    with pytest.raises(ValueError, match="got 3 mean counts"):
        model.init_rates("s0", mean[:3])


def test_untrained_model_is_calibrated(data, tmp_path):
    """Before any real training the predicted rates are the neurons' mean rates.

    Regression: with read-out biases at 0 an untrained (or CPU-short) run predicted ~1
    spike/bin for neurons firing ~0.3, and co-smoothing bits/spike came out near -1.
    """
    torch.set_num_threads(1)
    impl = get_method("scratch_ndt")
    frozen = {"max_steps": 1, "stitch_steps": 1, "lr": 1e-9, "stitch_lr": 1e-9}
    inputs = _inputs(data, "scratch_ndt", frozen, ("co_smoothing",))
    fine = StageOutputs(model=tmp_path / "model.pt")
    impl.finetune(inputs, None, fine)
    evaluation = impl.evaluate(inputs, fine.model)
    for session in inputs.splits.heldout_sessions:
        pred = evaluation.arrays[f"co_smoothing/{session}/pred"]
        target = evaluation.arrays[f"co_smoothing/{session}/target"]
        scored = ~np.isnan(pred)
        ratio = pred[scored].mean() / target[scored].mean()
        assert 0.6 < ratio < 1.6, ratio
    bps = [r.value for r in evaluation.rows if r.metric == "bps"]
    assert min(bps) > -0.3, bps


def test_decoding_heads_train_a_copy_and_leave_the_masking_model_alone(data, tmp_path):
    """Phase 3 fine-tunes a copy: the saved NDT is the one phases 1-2 produced."""
    torch.set_num_threads(1)
    impl = get_method("scratch_ndt")
    tasks = ("co_smoothing", "behavior_wheel_speed")
    runs = {}
    for steps in (0, 10):
        fine = StageOutputs(model=tmp_path / f"decode{steps}" / "model.pt")
        impl.finetune(_inputs(data, "scratch_ndt", {"decode_steps": steps}, tasks), None, fine)
        runs[steps] = torch.load(fine.model, weights_only=True)
    assert "decoder" not in runs[0] and "decoder" in runs[10]
    for key, value in runs[0]["state_dict"].items():
        assert torch.equal(value, runs[10]["state_dict"][key]), key
    decoder = runs[10]["decoder"]
    changed = [
        k
        for k, v in runs[10]["state_dict"].items()
        if not torch.equal(v, decoder["state_dict"][f"backbone.{k}"])
    ]
    assert changed, "the decoding phase trained nothing of the backbone copy"
    assert [h["name"] for h in decoder["task_heads"]] == ["behavior_wheel_speed"]


def test_pretraining_ignores_the_finetune_only_hparams(data, tmp_path):
    """The pretrain rule drops these keys from its params; pretraining must not read them."""
    torch.set_num_threads(1)
    method = get_method("mtm")
    other = {"max_steps": 7, "finetune_batch_size": 5, "stitch_steps": 3, "stitch_lr": 0.5,
             "decode_steps": 2, "decode_lr": 0.5}  # fmt: skip
    assert set(other) == method.finetune_only_hparams
    states = []
    for run, extra in (("a", {}), ("b", other)):
        out = StageOutputs(model=tmp_path / run / "model.pt")
        method.pretrain(_inputs(data, "mtm", extra), out)
        states.append(torch.load(out.model, weights_only=False)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_count_parameters_is_the_shared_part_of_a_built_model() -> None:
    """The budget table's FLOPs for MtM/NDT read this count; it must be the session-free part."""
    model = NDT(make_config("tiny"), {"a": 7, "b": 11})
    per_session = ("stitch_in.", "stitch_out.", "session_token.")
    shared = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(per_session))
    assert count_parameters("tiny") == shared
    assert count_parameters("published") > 100 * count_parameters("tiny")
