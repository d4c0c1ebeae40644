"""mtm / ndt / scratch_ndt on calcium (dF/F): pretrain -> finetune -> evaluate on tiny data,
scored like every calcium method (forecasting per horizon step, decoding)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_calm_family import _session, _windows

from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.session import write_session
from neurossl.data.splits import Splits
from neurossl.methods.registry import get_method
from neurossl.models.ndt import NDT, make_config
from neurossl.names import horizon_metric, is_metric
from neurossl.objectives.mtm import (
    MaskedModelingLoss,
    MaskRatios,
    UnitStandardizer,
    causal_start,
    forecast_readout,
)

TASKS = ("forecasting", "stimulus_class", "choice", "behavior_running_speed")
CONTEXT, HORIZON = 16, 8
FAST = {
    "d_model": 32,
    "pretrain_steps": 8,
    "max_steps": 6,
    "stitch_steps": 4,
    "decode_steps": 4,
    "eval_every": 4,
    "checkpoint_every": 4,
    "batch_size": 4,
    "finetune_batch_size": 4,
    "context": CONTEXT,
    "horizon": HORIZON,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three calcium sessions whose ROIs lie in two imaging areas (region schemes apply)."""
    root = tmp_path_factory.mktemp("ndt_calcium")
    specs = {"a-1": ("a", 6), "b-1": ("b", 5), "c-1": ("c", 7)}
    paths = {}
    for i, (name, (subject, n)) in enumerate(specs.items()):
        session = _session(name, subject, n, seed=i)
        session.neurons["region"] = ["VISp" if k % 2 else "VISl" for k in range(n)]
        paths[name] = root / f"{name}.calcium.h5"
        write_session(session, paths[name])
    splits = Splits("tiny", 0, ["a-1", "b-1"], ["c-1"], {s: _windows() for s in specs}, {}, {})
    return paths, splits


def _inputs(dataset, method: str, tasks=TASKS) -> StageInputs:
    paths, splits = dataset
    return StageInputs("tiny", method, "tiny", 0, paths, splits, tasks, dict(FAST), "cpu")


@pytest.mark.parametrize("method", ["mtm", "ndt", "scratch_ndt"])
def test_calcium_pretrain_finetune_evaluate(dataset, tmp_path, method):
    torch.set_num_threads(1)
    impl = get_method(method)
    inputs = _inputs(dataset, method)
    pre = None
    if impl.pretrains:
        pre = StageOutputs(model=tmp_path / "pre" / "model.pt")
        impl.pretrain(inputs, pre)
    fine = StageOutputs(model=tmp_path / "fine" / "model.pt")
    impl.finetune(inputs, pre.model if pre else None, fine)
    evaluation = impl.evaluate(inputs, fine.model)
    by_task: dict[str, set[str]] = {}
    for row in evaluation.rows:
        assert row.method == method and row.session == "c-1" and is_metric(row.metric)
        assert math.isfinite(row.value), row
        by_task.setdefault(row.task, set()).add(row.metric)
    # The calcium methods' forecasting rows: every horizon step and the pooled scores.
    per_step = {horizon_metric(m, k) for m in ("mae", "mse", "r2", "pearson")
                for k in range(1, HORIZON + 1)}  # fmt: skip
    assert by_task["forecasting"] == per_step | {"mae", "mse", "r2", "pearson"}
    assert by_task["stimulus_class"] == {"bacc", "acc", "frozen_bacc", "frozen_acc"}
    assert by_task["choice"] == {"bacc", "acc", "frozen_bacc", "frozen_acc"}
    assert by_task["behavior_running_speed"] == {"r2", "frozen_r2"}
    pred = evaluation.arrays["forecasting/c-1/pred"]
    target = evaluation.arrays["forecasting/c-1/target"]
    assert pred.shape == target.shape == (4, HORIZON, 7)
    # Predictions are in dF/F units, not z-scores: on the scale of the targets.
    assert np.abs(pred).mean() < 5 * np.abs(target).mean() + 1


def test_calcium_model_file_holds_the_normalisation(dataset, tmp_path):
    torch.set_num_threads(1)
    impl = get_method("scratch_ndt")
    inputs = _inputs(dataset, "scratch_ndt", tasks=("forecasting",))
    fine = StageOutputs(model=tmp_path / "model.pt")
    impl.finetune(inputs, None, fine)
    from neurossl.methods.ndt_family import _read_payload

    payload = _read_payload(fine.model)
    mean, std = payload["unit_norm"]["c-1"]
    assert len(mean) == len(std) == 7 and min(std) > 0


def test_calcium_loss_is_masked_mse_on_z_scores(dataset):
    """The calcium objective scores z-scored dF/F with MSE; spikes keep the Poisson NLL."""
    from neurossl.data.loader import WindowDataset, make_loader

    paths, splits = dataset
    data = WindowDataset(paths, splits, "train", ["a-1"])
    scaler = UnitStandardizer.fit(data)
    batch = next(iter(make_loader(data, 4, False, 0, True)))
    z = scaler("a-1", batch["activity"][:, :, :6])
    assert torch.allclose(z.mean((0, 1)), torch.zeros(6), atol=0.3)
    torch.manual_seed(0)
    model = NDT(make_config("tiny", d_model=16, n_prompts=4), {"a-1": 6})
    loss = MaskedModelingLoss(("neuron",), MaskRatios(), True, data.vocab.session_ids,
                              "calcium", scaler)  # fmt: skip
    value, _ = loss(model, batch)
    assert torch.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="UnitStandardizer"):
        MaskedModelingLoss(("neuron",), MaskRatios(), True, data.vocab.session_ids, "calcium")


def test_forecast_readout_places_the_masked_bins_where_the_causal_mask_starts():
    """One pass over the end of the context plus masked bins at the causal scheme's start;
    the future values never enter."""
    seen = []

    def predict(x, prompt, causal):
        seen.append((x.copy(), prompt, causal))
        return x + 1.0

    past = np.arange(2 * 6 * 3, dtype=np.float32).reshape(2, 6, 3)
    start = causal_start(10, 0.6)
    assert start == 4
    out = forecast_readout(predict, past, 4, start, 1, True)
    x, prompt, causal = seen[0]
    assert out.shape == (2, 4, 3) and np.all(out == 1.0)
    assert x.shape == (2, 8, 3) and np.array_equal(x[:, :4], past[:, 2:])
    assert np.all(x[:, 4:] == 0) and (prompt, causal) == (1, True)
    with pytest.raises(ValueError, match="start"):
        forecast_readout(predict, past, 4, 7, 1, True)


def test_calcium_overrides_apply_to_calcium_sessions_only(dataset, tmp_path):
    from test_loader import make_dataset

    from neurossl.hparams import HParamError
    from neurossl.methods.ndt_family import read_hparams

    hp = {"pretrain_steps": 250, "calcium": {"pretrain_steps": 100}}
    calcium = read_hparams(replace(_inputs(dataset, "mtm"), hparams=hp))
    assert calcium["pretrain_steps"] == 100
    paths, splits = make_dataset(tmp_path, n_sessions=2, n_trials=4)
    spikes = StageInputs("toy", "mtm", "tiny", 0, paths, splits, ("forecasting",), hp)
    assert read_hparams(spikes)["pretrain_steps"] == 250
    with pytest.raises(HParamError, match="pretrain_stepz"):
        read_hparams(replace(_inputs(dataset, "mtm"), hparams={"calcium": {"pretrain_stepz": 1}}))
