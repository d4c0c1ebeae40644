"""POYO-SSL family: pretrain -> fine-tune -> evaluate on a tiny in-memory dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.session import Session, read_session, write_session
from neurossl.data.splits import Splits, Windows
from neurossl.methods.poyo_family import load_model, make_method, read_hparams
from neurossl.methods.registry import get_method
from neurossl.methods.task_heads import TaskHead, fit_task_head
from neurossl.models.perceiver import CLASSIFICATION, count_parameters

BIN = 0.1
WINDOW_BINS = 12
N_TRIALS = 12
N_NEURONS = 6
SESSIONS = ("sub-01_ses-01", "sub-02_ses-01", "sub-03_ses-01")
TASKS = ("forecasting", "stimulus_class", "choice", "behavior_running_speed")
#: Written into valid/test windows of pretraining sessions where a test wants them unread.
EXTREME = 1.0e6


def _split_of(trial: int) -> str:
    return "train" if trial < 8 else ("valid" if trial < 10 else "test")


def _session(session: str, rng: np.random.Generator, extreme_splits: tuple[str, ...]) -> Session:
    n_bins = N_TRIALS * WINDOW_BINS
    stimulus = rng.integers(0, 2, N_TRIALS)
    choice = np.where(rng.random(N_TRIALS) < 0.5, -1, 1)
    activity = rng.normal(0.0, 0.1, (n_bins, N_NEURONS)).astype(np.float32)
    for trial in range(N_TRIALS):
        rows = slice(trial * WINDOW_BINS, (trial + 1) * WINDOW_BINS)
        activity[rows, stimulus[trial] * 3 : stimulus[trial] * 3 + 3] += 1.0
        if _split_of(trial) in extreme_splits:
            activity[rows] = EXTREME
    behavior = np.stack(
        [activity[:, :3].mean(axis=1), np.zeros(n_bins, dtype=np.float32)], axis=1
    ).astype(np.float32)
    return Session(
        activity=activity,
        modality="calcium",
        bin_size=BIN,
        t0=0.0,
        neurons=pd.DataFrame(
            {
                "id": [f"roi{i}" for i in range(N_NEURONS)],
                "region": ["VISp"] * N_NEURONS,
                "depth": np.full(N_NEURONS, 175.0),
                "cre_line": ["Sst-IRES-Cre"] * N_NEURONS,
            }
        ),
        trials=pd.DataFrame(
            {
                "start": np.arange(N_TRIALS) * WINDOW_BINS * BIN,
                "stop": (np.arange(N_TRIALS) + 1) * WINDOW_BINS * BIN,
                "align": np.arange(N_TRIALS) * WINDOW_BINS * BIN,
                "stimulus_class": stimulus,
                "choice": choice,
            }
        ),
        behavior=behavior,
        behavior_names=["running_speed", "wheel_speed"],
        meta={
            "dataset": "tiny",
            "session": session,
            "subject": session.split("_")[0],
            "source_path": "memory",
            "source_sha256": "0",
            "software_version": "test",
        },
    )


def build_dataset(root: Path, extreme_splits: tuple[str, ...] = ()) -> tuple[dict, Splits]:
    """Three sessions (two pretraining, one held out) and hand-built splits.

    Neurons roi0..roi2 are "predictable", roi3..roi5 "unpredictable" (a fixed partition,
    so tests know exactly which ids each diet must use). ``extreme_splits`` fills those
    splits' windows of the *pretraining* sessions with ``EXTREME``.
    """
    rng = np.random.default_rng(0)
    paths, windows, neurons = {}, {}, {}
    for session in SESSIONS:
        heldout = session == SESSIONS[-1]
        path = root / f"{session}.calcium.h5"
        write_session(_session(session, rng, () if heldout else extreme_splits), path)
        paths[session] = path
        trials = np.arange(N_TRIALS)
        windows[session] = Windows(
            start=trials * WINDOW_BINS * BIN,
            stop=(trials + 1) * WINDOW_BINS * BIN,
            split=np.array([_split_of(t) for t in trials], dtype=object),
            trial=trials,
        )
        ids = [f"roi{i}" for i in range(N_NEURONS)]
        neurons[session] = {
            "held_in": ids[:4],
            "held_out": ids[4:],
            "predictable": ids[:3],
            "unpredictable": ids[3:],
        }
    splits = Splits(
        dataset="tiny",
        seed=0,
        pretrain_sessions=list(SESSIONS[:2]),
        heldout_sessions=[SESSIONS[2]],
        windows=windows,
        neurons={"calcium": neurons},
        predictability={"calcium": {}},
    )
    return paths, splits


FAST = {
    "max_steps": 4,
    "unit_id_steps": 3,
    "head_steps": 3,
    "full_steps": 3,
    "batch_size": 4,
    "eval_every": 2,
    "warmup_steps": 1,
    # Forecasting windows that fit 12-bin windows; 7 mod 3 frames per token drops one frame.
    "context": 7,
    "horizon": 4,
    "forecast_steps": 3,
}
DECODING = ("stimulus_class", "choice", "behavior_running_speed")
#: Rows of one forecast: mae/mse/r2/pearson per horizon step and pooled.
FORECAST_ROWS = 4 * (FAST["horizon"] + 1)


def _inputs(paths: dict, splits: Splits, method: str, hparams: dict) -> StageInputs:
    return StageInputs("tiny", method, "tiny", 0, paths, splits, TASKS, hparams, "cpu")


def _outputs(root: Path, stage: str) -> StageOutputs:
    return StageOutputs(
        model=root / stage / "model.pt",
        train_log=root / stage / "train_log.csv",
        checkpoint_dir=root / stage / "checkpoints",
    )


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pretrain_finetune_evaluate(tmp_path: Path) -> None:
    paths, splits = build_dataset(tmp_path / "data")
    method = get_method("poyo_ssl")
    inputs = _inputs(paths, splits, "poyo_ssl", FAST | {"unit_id_steps": 0})
    assert method.pretrains and method.modality == "any"  # the Session picks it
    assert method.supported_tasks(TASKS) == ("forecasting", *DECODING)

    method.pretrain(inputs, _outputs(tmp_path, "pretrain"))
    _, saved = load_model(tmp_path / "pretrain" / "model.pt")
    # The predictable diet: exactly the predictable ids of the pretraining sessions.
    assert saved["unit_keys"] == [f"{s}/roi{i}" for s in SESSIONS[:2] for i in range(3)]
    assert saved["n_parameters"] == count_parameters("tiny")

    method.finetune(inputs, tmp_path / "pretrain" / "model.pt", _outputs(tmp_path, "finetune"))
    log = pd.read_csv(tmp_path / "finetune" / "train_log.csv")
    assert list(dict.fromkeys(log["phase"])) == ["heads", "full", "forecast"]
    _, saved = load_model(tmp_path / "finetune" / "model.pt")
    assert saved["unit_keys"][-3:] == [f"{SESSIONS[2]}/roi{i}" for i in (3, 4, 5)]

    evaluation = method.evaluate(inputs, tmp_path / "finetune" / "model.pt")
    got = {(r.session, r.task, r.metric) for r in evaluation.rows if r.task != "forecasting"}
    assert got == {
        (SESSIONS[2], "stimulus_class", "acc"),
        (SESSIONS[2], "stimulus_class", "bacc"),
        (SESSIONS[2], "choice", "acc"),
        (SESSIONS[2], "choice", "bacc"),
        (SESSIONS[2], "behavior_running_speed", "r2"),
    }
    assert all(r.method == "poyo_ssl" and r.size == "tiny" for r in evaluation.rows)
    target = evaluation.arrays[f"stimulus_class/{SESSIONS[2]}/target"]
    assert target.shape == (2,)  # the two test trials
    behavior = evaluation.arrays[f"behavior_running_speed/{SESSIONS[2]}/pred"]
    assert behavior.shape == (2, WINDOW_BINS) and np.isfinite(behavior).all()
    forecast = {r.metric for r in evaluation.rows if r.task == "forecasting"}
    assert {"mae", "mse", "r2", "pearson", "mae_h1", "mae_h4", "pearson_h4"} <= forecast
    assert len(forecast) == FORECAST_ROWS


def test_unit_identification_trains_only_new_rows(tmp_path: Path) -> None:
    paths, splits = build_dataset(tmp_path / "data")
    method = make_method("poyo_ssl")
    only_unit_id = FAST | {"head_steps": 0, "full_steps": 0}
    inputs = _inputs(paths, splits, "poyo_ssl", only_unit_id)
    method.pretrain(inputs, _outputs(tmp_path, "pretrain"))
    method.finetune(inputs, tmp_path / "pretrain" / "model.pt", _outputs(tmp_path, "finetune"))
    before = load_model(tmp_path / "pretrain" / "model.pt")[0].state_dict()
    after = load_model(tmp_path / "finetune" / "model.pt")[0].state_dict()
    new = {"unit_embed.blocks.1", "session_embed.blocks.1"}
    for name, value in before.items():
        assert torch.equal(value, after[name]), f"{name} changed during unit identification"
    added = set(after) - set(before)
    assert new <= added
    assert all(n.startswith(("heads.", "task_embed.")) for n in added - new)
    log = pd.read_csv(tmp_path / "finetune" / "train_log.csv")
    assert set(log["phase"]) == {"unit_id", "forecast"}
    # The phase ran its steps (and was checkpointed, so a rerun resumes instead of retraining).
    unit_id = torch.load(
        tmp_path / "finetune" / "checkpoints" / "unit_id" / "last.pt", weights_only=False
    )
    assert unit_id["state"]["step"] == 3


def test_auxiliary_pretraining_heads_serve_unit_identification(tmp_path: Path) -> None:
    """aux_weight trains decoding heads on the pretraining sessions; fine-tuning keeps
    them, and task-loss unit identification changes nothing but the new rows."""
    paths, splits = build_dataset(tmp_path / "data")
    method = make_method("poyo_ssl")
    hparams = FAST | {"aux_weight": 0.5, "unit_id_loss": "task", "unit_id_lr": 0.1}
    inputs = _inputs(paths, splits, "poyo_ssl", hparams | {"head_steps": 0, "full_steps": 0})
    method.pretrain(inputs, _outputs(tmp_path, "pretrain"))
    pretrained = load_model(tmp_path / "pretrain" / "model.pt")[0]
    assert set(pretrained.heads) == {"reconstruction", *DECODING}
    log = pd.read_csv(tmp_path / "pretrain" / "train_log.csv")
    assert {"reconstruction", "loss_stimulus_class", "loss_choice"} <= set(log.columns)
    torch.testing.assert_close(
        torch.tensor(log["loss"].values),
        torch.tensor((log["reconstruction"] + 0.5 * log.filter(like="loss_").sum(axis=1)).values),
    )
    method.finetune(inputs, tmp_path / "pretrain" / "model.pt", _outputs(tmp_path, "finetune"))
    before, after = pretrained.state_dict(), load_model(tmp_path / "finetune" / "model.pt")[0]
    after = after.state_dict()
    for name, value in before.items():
        assert torch.equal(value, after[name]), f"{name} changed during unit identification"
    log = pd.read_csv(tmp_path / "finetune" / "train_log.csv")
    assert set(log["phase"]) == {"unit_id", "forecast"}  # the read-out phase comes after
    unit_id = log[log["phase"] == "unit_id"]
    assert unit_id["loss_stimulus_class"].notna().all()
    assert unit_id["lr"].max() == pytest.approx(0.1)


def test_pretraining_reads_train_windows_only(tmp_path: Path) -> None:
    # Test windows of pretraining sessions hold 1e6: any read would blow up the loss.
    paths, splits = build_dataset(tmp_path / "data", extreme_splits=("test",))
    method = make_method("poyo_ssl_mixed")
    method.pretrain(_inputs(paths, splits, "poyo_ssl_mixed", FAST), _outputs(tmp_path, "pre"))
    log = pd.read_csv(tmp_path / "pre" / "train_log.csv")
    assert (log["loss"] < 100).all() and (log["valid_loss"].dropna() < 100).all()
    _, saved = load_model(tmp_path / "pre" / "model.pt")
    assert saved["neuron_diet"] == "all"
    assert len(saved["unit_keys"]) == 2 * N_NEURONS


def test_scratch_perceiver_finetunes_from_random_init(tmp_path: Path) -> None:
    paths, splits = build_dataset(tmp_path / "data")
    method = make_method("scratch_perceiver")
    assert not method.pretrains
    inputs = _inputs(paths, splits, "scratch_perceiver", FAST | {"head_steps": 0})
    with pytest.raises(RuntimeError, match="no pretraining"):
        method.pretrain(inputs, _outputs(tmp_path, "pre"))
    method.finetune(inputs, None, _outputs(tmp_path, "finetune"))
    _, saved = load_model(tmp_path / "finetune" / "model.pt")
    assert saved["unit_keys"] == [f"{SESSIONS[2]}/roi{i}" for i in (3, 4, 5)]
    rows = method.evaluate(inputs, tmp_path / "finetune" / "model.pt").rows
    assert len(rows) == 5 + FORECAST_ROWS
    # finetune_neurons "all": every held-out neuron is fine-tuned and scored.
    inputs = _inputs(paths, splits, "scratch_perceiver", FAST | {"finetune_neurons": "all"})
    method.finetune(inputs, None, _outputs(tmp_path, "all"))
    _, saved = load_model(tmp_path / "all" / "model.pt")
    assert saved["unit_keys"] == [f"{SESSIONS[2]}/roi{i}" for i in range(6)]
    assert saved["forecaster"]["unit_keys"] == []  # every ROI already has a row
    assert len(method.evaluate(inputs, tmp_path / "all" / "model.pt").rows) == 5 + FORECAST_ROWS


def test_diets_per_method_and_bad_hparams() -> None:
    assert read_hparams("poyo_ssl", {}).neuron_diet == "predictable"
    assert read_hparams("poyo_ssl_mixed", {}).neuron_diet == "all"
    assert read_hparams("poyo_ssl_reverse", {}).neuron_diet == "unpredictable"
    with pytest.raises(ValueError, match=r"unknown key .lr_typo."):
        read_hparams("poyo_ssl", {"lr_typo": 1})
    with pytest.raises(ValueError, match="neuron_diet"):
        read_hparams("poyo_ssl", {"neuron_diet": "some"})
    with pytest.raises(ValueError, match="unit_id_loss"):
        read_hparams("poyo_ssl", {"unit_id_loss": "labels"})
    with pytest.raises(ValueError, match="aux_weight"):
        read_hparams("poyo_ssl", {"aux_weight": -0.1})
    with pytest.raises(ValueError, match="reconstruction_weight"):
        read_hparams("poyo_ssl", {"reconstruction_weight": 0.0})  # no loss left
    assert read_hparams("poyo_ssl", {"reconstruction_weight": 0.0, "aux_weight": 1.0})
    with pytest.raises(ValueError, match="not a Perceiver-family method"):
        make_method("mtm")


def test_task_heads_encode_and_score() -> None:
    head = fit_task_head("choice", np.array([-1, 1, 1, -1]), None, -1)
    assert head.kind == CLASSIFICATION and head.classes == (-1.0, 1.0)
    batch = {"label/choice": torch.tensor([1, -1, 1])}
    assert head.target(batch).tolist() == [1, 0, 1]
    assert TaskHead.from_json(head.to_json()) == head
    with pytest.raises(ValueError, match="at least 2"):
        fit_task_head("stimulus_class", np.array([2, 2, 2]), None, -1)
    with pytest.raises(KeyError, match="label/stimulus_class"):
        TaskHead("stimulus_class", CLASSIFICATION, classes=(0.0, 1.0)).raw_target(batch)
    # Movie frames: acc is within-delta, bacc stays exact.
    movie = TaskHead("stimulus_natural_movie_frame", CLASSIFICATION, classes=(0.0, 1.0, 2.0))
    pred, true = np.array([0.0, 2.0, 2.0]), np.array([1.0, 2.0, 0.0])
    assert movie.score(pred, true, frame_delta=1) == {"acc": 2 / 3, "bacc": 1 / 3}
    assert movie.score(pred, true, frame_delta=0)["acc"] == 1 / 3


def test_inputs_are_standardised_with_train_window_statistics(tmp_path: Path) -> None:
    # Valid/test windows of the pretraining sessions hold 1e6: statistics that read
    # them would be far from the train windows' mean and std.
    paths, splits = build_dataset(tmp_path / "data", extreme_splits=("valid", "test"))
    method = make_method("poyo_ssl_mixed")
    inputs = _inputs(paths, splits, "poyo_ssl_mixed", FAST | {"unit_id_steps": 0})
    method.pretrain(inputs, _outputs(tmp_path, "pre"))
    _, saved = load_model(tmp_path / "pre" / "model.pt")
    assert len(saved["unit_norm"]) == len(saved["unit_keys"])
    session = SESSIONS[0]
    train_rows = np.concatenate(
        [np.arange(t * WINDOW_BINS, (t + 1) * WINDOW_BINS) for t in range(8)]
    )
    activity = _session(session, np.random.default_rng(0), ()).activity  # same draw as build
    expected = activity[train_rows, 0]
    mean, std = saved["unit_norm"][saved["unit_keys"].index(f"{session}/roi0")]
    assert mean == pytest.approx(float(expected.mean()), rel=1e-4)
    assert std == pytest.approx(float(expected.std()), rel=1e-4)
    # Fine-tuning keeps the pretrained rows' statistics and appends the new units'.
    method.finetune(inputs, tmp_path / "pre" / "model.pt", _outputs(tmp_path, "ft"))
    _, tuned = load_model(tmp_path / "ft" / "model.pt")
    assert tuned["unit_norm"][: len(saved["unit_norm"])] == saved["unit_norm"]
    assert len(tuned["unit_norm"]) == len(tuned["unit_keys"])


def test_pretraining_ignores_the_finetune_only_hparams(tmp_path: Path) -> None:
    """The pretrain rule drops these keys from its params; pretraining must not read them."""
    paths, splits = build_dataset(tmp_path / "data")
    method = make_method("poyo_ssl")
    other = {"finetune_neurons": "all", "unit_id_loss": "task", "unit_id_lr": 0.5,
             "unit_id_steps": 7, "head_steps": 9, "full_steps": 2, "unfreeze_layers": 2,
             "full_lr_scale": 0.1, "frame_delta": 3, "context": 5, "horizon": 2,
             "forecast_steps": 4}  # fmt: skip
    assert set(other) == method.finetune_only_hparams
    states = []
    for run, extra in (("a", {}), ("b", other)):
        out = _outputs(tmp_path / run, "pretrain")
        method.pretrain(_inputs(paths, splits, "poyo_ssl", FAST | extra), out)
        states.append(load_model(out.model)[0].state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


FAMILY = ("poyo_ssl", "poyo_ssl_mixed", "poyo_ssl_reverse", "scratch_perceiver")


def _finetuned(root: Path, paths: dict, splits: Splits, name: str, tasks=TASKS) -> StageInputs:
    """Pretrain (when the method does) and fine-tune ``name`` under ``root``."""
    method = make_method(name)
    inputs = dataclasses.replace(_inputs(paths, splits, name, FAST), tasks=tasks)
    pretrained = None
    if method.pretrains:
        method.pretrain(inputs, _outputs(root, "pre"))
        pretrained = root / "pre" / "model.pt"
    method.finetune(inputs, pretrained, _outputs(root, "ft"))
    return inputs


@pytest.mark.parametrize("name", FAMILY)
def test_calcium_forecasting_by_a_frozen_trunk_read_out(tmp_path: Path, name: str) -> None:
    """Every family member: a forecasting read-out phase after fine-tuning, on a frozen
    copy of the trunk, with rows for every ROI (also those fine-tuning never saw), per
    horizon step, in dF/F, recomputable from the saved arrays; the model file
    round-trips."""
    from recompute import recompute

    paths, splits = build_dataset(tmp_path / "data")
    method = make_method(name)
    inputs = _finetuned(tmp_path, paths, splits, name)
    log = pd.read_csv(tmp_path / "ft" / "train_log.csv")
    assert list(dict.fromkeys(log["phase"])) == ["unit_id", "heads", "full", "forecast"]
    assert (log["phase"] == "forecast").sum() == FAST["forecast_steps"]
    model_path = tmp_path / "ft" / "model.pt"
    model, saved = load_model(model_path)
    entry = saved["forecaster"]
    # Fine-tuning saw the unpredictable ROIs; the read-out learnt rows for the others.
    assert entry["unit_keys"] == [f"{SESSIONS[2]}/roi{i}" for i in (0, 1, 2)]
    assert len(entry["unit_norm"]) == 3
    # Only the new rows and the reconstruction query path were trained and saved.
    trained = set(entry["state_dict"])
    assert any(k.startswith("decoder.") for k in trained)
    assert {"task_embed.reconstruction", "heads.reconstruction.weight"} <= trained
    assert not any(k.startswith(("encoder.", "latent_layers.", "value_embed.")) for k in trained)
    new_block = f"unit_embed.blocks.{len(model.unit_embed.block_sizes)}"
    assert {k for k in trained if k.startswith("unit_embed.")} == {new_block}
    # The fine-tuned state beside it is the decoding model, untouched by the read-out.
    assert "unit_embed.blocks.0" in model.state_dict()

    evaluation = method.evaluate(inputs, model_path)
    rows = [r for r in evaluation.rows if r.task == "forecasting"]
    assert len(rows) == FORECAST_ROWS
    held = SESSIONS[2]
    pred = evaluation.arrays[f"forecasting/{held}/pred"]
    target = evaluation.arrays[f"forecasting/{held}/target"]
    assert pred.shape == target.shape == (2, FAST["horizon"], N_NEURONS)  # every ROI
    assert np.isfinite(pred).all()
    # dF/F, not z-scores: the forecast sits near the ROIs' train means (0 to 1 here).
    assert 0.0 < float(np.abs(pred).mean()) < 2.0
    for row in rows:
        assert recompute(evaluation.arrays, vars(row), paths[held]) == pytest.approx(
            row.value, rel=1e-6, abs=1e-6
        ), row
    again = method.evaluate(inputs, model_path).arrays[f"forecasting/{held}/pred"]
    np.testing.assert_array_equal(again, pred)


def test_calcium_forecasting_reads_the_context_only(tmp_path: Path) -> None:
    """No horizon value reaches a token: changing them leaves the forecast unchanged,
    changing the last context frames moves it."""
    name = "poyo_ssl"
    paths, splits = build_dataset(tmp_path / "data")
    method = make_method(name)
    inputs = _finetuned(tmp_path, paths, splits, name)
    model = tmp_path / "ft" / "model.pt"
    held = SESSIONS[2]
    pred = method.evaluate(inputs, model).arrays[f"forecasting/{held}/pred"]

    def forecast_with(frames: slice, value: float) -> np.ndarray:
        """The forecast after setting ``frames`` of every window of the held-out session."""
        session = read_session(paths[held])
        activity = np.array(session.activity, dtype=np.float32)
        for trial in range(N_TRIALS):
            activity[np.arange(trial * WINDOW_BINS, (trial + 1) * WINDOW_BINS)[frames]] = value
        changed = tmp_path / f"changed_{frames.start}" / paths[held].name
        changed.parent.mkdir()
        write_session(dataclasses.replace(session, activity=activity), changed)
        moved = _inputs(dict(paths) | {held: changed}, splits, name, inputs.hparams)
        return method.evaluate(moved, model).arrays[f"forecasting/{held}/pred"]

    context, horizon = FAST["context"], FAST["horizon"]
    np.testing.assert_array_equal(forecast_with(slice(context, context + horizon), 50.0), pred)
    np.testing.assert_array_equal(forecast_with(slice(context + horizon, None), -50.0), pred)
    assert not np.allclose(forecast_with(slice(context - 2, context), 5.0), pred)


@pytest.mark.parametrize("name", ["poyo_ssl", "scratch_perceiver"])
def test_decoding_is_the_same_with_and_without_forecasting(tmp_path: Path, name: str) -> None:
    """Fine-tuning phases 1-3 and the decoding rows do not depend on whether forecasting
    is configured: the read-out trains on a copy, after them."""
    paths, splits = build_dataset(tmp_path / "data")
    method = make_method(name)
    results = []
    for run, tasks in (("with", TASKS), ("without", DECODING)):
        inputs = _finetuned(tmp_path / run, paths, splits, name, tasks)
        model, saved = load_model(tmp_path / run / "ft" / "model.pt")
        evaluation = method.evaluate(inputs, tmp_path / run / "ft" / "model.pt")
        rows = [vars(r) for r in evaluation.rows if r.task != "forecasting"]
        results.append((model.state_dict(), saved, rows, evaluation.arrays))
    (with_state, with_saved, with_rows, with_arrays), (state, saved, rows, arrays) = results
    assert "forecaster" in with_saved and "forecaster" not in saved
    assert with_state.keys() == state.keys()
    assert all(torch.equal(with_state[k], state[k]) for k in state)
    assert with_rows == rows and len(rows) == 5
    for key, value in arrays.items():
        np.testing.assert_array_equal(with_arrays[key], value)
    # A model fine-tuned without forecasting says so when asked to forecast.
    asked = _inputs(paths, splits, name, FAST)
    with pytest.raises(ValueError, match="no forecasting read-out"):
        method.evaluate(asked, tmp_path / "without" / "ft" / "model.pt")
