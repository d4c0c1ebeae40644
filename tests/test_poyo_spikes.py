"""POYO-SSL on binned spike counts: pretrain -> fine-tune -> evaluate on tiny spiking data.

The same stages as on calcium (tests/test_poyo_family.py), with the Poisson
reconstruction and the spiking query tasks every spiking method is scored on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_loader import make_dataset

from neurossl.contract import StageInputs, StageOutputs
from neurossl.methods.poyo_family import load_model, read_hparams
from neurossl.methods.registry import get_method
from neurossl.names import is_metric

TASKS = ("co_smoothing", "forecasting", "inter_region", "intra_region", "choice",
         "behavior_wheel_speed")  # fmt: skip
FAST = {"max_steps": 8, "unit_id_steps": 4, "head_steps": 3, "full_steps": 6, "batch_size": 8}
SPIKING = {"bps", "poisson_d2", "poisson_d2_pooled"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("poyo_spikes"), n_trials=20)


def _inputs(data, method: str, hparams: dict | None = None, tasks=TASKS) -> StageInputs:
    paths, splits = data
    return StageInputs("toy", method, "tiny", 0, paths, splits, tasks, FAST | (hparams or {}))


def _evaluate(data, tmp_path, method: str, hparams=None, tasks=TASKS):
    impl = get_method(method)
    inputs = _inputs(data, method, hparams, tasks)
    pretrained = None
    if impl.pretrains:
        pre = StageOutputs(
            model=tmp_path / "pre/model.pt",
            train_log=tmp_path / "pre/log.csv",
            checkpoint_dir=tmp_path / "pre/ckpt",
        )
        impl.pretrain(inputs, pre)
        pretrained = pre.model
    fine = StageOutputs(
        model=tmp_path / "fine/model.pt",
        train_log=tmp_path / "fine/log.csv",
        checkpoint_dir=tmp_path / "fine/ckpt",
    )
    impl.finetune(inputs, pretrained, fine)
    return inputs, pretrained, fine, impl.evaluate(inputs, fine.model)


@pytest.mark.parametrize("method", ["poyo_ssl", "scratch_perceiver"])
def test_spiking_stages_score_every_spiking_task(data, tmp_path, method):
    torch.set_num_threads(1)
    inputs, pretrained, fine, evaluation = _evaluate(data, tmp_path, method)
    heldout = inputs.splits.heldout_sessions
    by_task: dict[str, set[str]] = {}
    for row in evaluation.rows:
        assert row.method == method and row.session in heldout and is_metric(row.metric)
        assert math.isfinite(row.value)
        by_task.setdefault(row.task, set()).add(row.metric)
    assert by_task["co_smoothing"] == by_task["forecasting"] == SPIKING
    assert by_task["inter_region"] == by_task["intra_region"] == SPIKING
    assert by_task["choice"] == {"bacc", "acc"}
    assert by_task["behavior_wheel_speed"] == {"r2"}
    session = heldout[0]
    pred = evaluation.arrays[f"co_smoothing/{session}/pred"]
    target = evaluation.arrays[f"co_smoothing/{session}/target"]
    assert pred.shape == target.shape
    held_out = [int(i[1:]) for i in inputs.splits.neuron_group("spikes", session, "held_out")]
    held_in = sorted(set(range(pred.shape[2])) - set(held_out))
    # Rates only for held-out neurons, NaN where nothing is scored.
    assert np.isfinite(pred[:, :, held_out]).all() and (pred[:, :, held_out] > 0).all()
    assert np.isnan(pred[:, :, held_in]).all()
    _, saved = load_model(fine.model)
    assert saved["modality"] == "spikes" and saved["finetune_neurons"] == "all"
    if pretrained is not None:
        _, pre = load_model(pretrained)
        # Pretraining read only the predictable units of the pretraining sessions.
        expected = [
            f"{s}/{n}"
            for s in inputs.splits.pretrain_sessions
            for n in inputs.splits.neuron_group("spikes", s, "predictable")
        ]
        assert pre["unit_keys"] == expected
    log = pd.read_csv(fine.train_log)
    assert list(log["phase"].unique()) == ["unit_id", "heads", "full"]


def test_untrained_readout_predicts_each_units_mean_rate(data, tmp_path):
    """The log-mean offset: an untrained readout's co-smoothing scores bits/spike near 0.

    (Forecasting is not: the null there is each neuron's mean over the last bins of
    trial-aligned windows, which differs from its mean over whole windows.)"""
    torch.set_num_threads(1)
    hp = {"unit_id_steps": 1, "head_steps": 0, "full_steps": 0, "lr": 1e-9, "unit_id_lr": 1e-9}
    _, _, _, evaluation = _evaluate(data, tmp_path, "scratch_perceiver", hp, ("co_smoothing",))
    bps = [r.value for r in evaluation.rows if r.metric == "bps"]
    assert bps and all(-0.1 < v < 0.05 for v in bps), bps


def test_spiking_defaults_and_population_check(data):
    assert read_hparams("poyo_ssl", {}, "spikes").finetune_neurons == "all"
    assert read_hparams("poyo_ssl", {}, "calcium").finetune_neurons == "unpredictable"
    inputs = _inputs(data, "scratch_perceiver", {"finetune_neurons": "unpredictable"})
    with pytest.raises(ValueError, match="finetune_neurons is 'unpredictable'"):
        get_method("scratch_perceiver").finetune(inputs, None, StageOutputs())
