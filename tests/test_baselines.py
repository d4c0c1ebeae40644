"""Simple baselines and the oracle end to end: finetune on train windows, score test windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurossl.baselines.forecasting import sliding_pairs
from neurossl.contract import StageInputs, StageOutputs
from neurossl.data.session import Session, write_session
from neurossl.data.splits import Splits, Windows
from neurossl.methods.registry import get_method
from neurossl.names import is_metric

BIN = 0.02
FRAME = 0.1
SPIKE_TASKS = (
    "co_smoothing",
    "inter_region",
    "intra_region",
    "forecasting",
    "choice",
    "stimulus_class",
    "behavior_wheel_speed",
)
TINY = {"hidden": 16, "steps": 40, "batch_size": 16, "context": 12, "horizon": 4, "ar_order": 4}
META = dict.fromkeys(
    ("dataset", "session", "subject", "source_path", "source_sha256", "software_version"), "test"
)


def _split_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[: n // 10]] = "valid"
    split[order[n // 10 : n // 10 + 3 * n // 10]] = "test"
    return split


def _neuron_table(regions: list[str]) -> pd.DataFrame:
    n = len(regions)
    return pd.DataFrame(
        {"id": [f"u{i}" for i in range(n)], "region": regions, "depth": np.arange(n, dtype=float),
         "cre_line": ["none"] * n}
    )  # fmt: skip


def spiking_session(path: Path, seed: int, truth: bool = True) -> Windows:
    """Latent-driven Poisson counts with trial labels in the rates and a behaviour readout."""
    rng = np.random.default_rng(seed)
    regions = ["VISp"] * 6 + ["CA1"] * 6 + ["LP"] * 2
    n, n_trials, trial_bins, gap = len(regions), 40, 40, 45
    t = n_trials * gap
    latent = np.zeros((t, 2))
    for k in range(1, t):
        latent[k] = 0.95 * latent[k - 1] + 0.3 * rng.normal(size=2)
    choice = rng.choice([-1, 1], n_trials)
    stimulus = rng.integers(0, 2, n_trials)
    drive = np.zeros((t, n))
    for k in range(n_trials):
        rows = slice(k * gap, k * gap + trial_bins)
        drive[rows, :4] += 0.8 * choice[k]
        drive[rows, 6:10] += 0.8 * (2 * stimulus[k] - 1)
    rates = np.exp(np.log(0.3) + latent @ rng.normal(0, 0.7, (2, n)) + drive)
    starts = np.arange(n_trials) * gap * BIN
    trials = pd.DataFrame(
        {"start": starts, "stop": starts + trial_bins * BIN, "align": starts, "choice": choice,
         "stimulus_class": stimulus}
    )  # fmt: skip
    behavior = (latent[:, :1] + 0.1 * rng.normal(size=(t, 1))).astype(np.float32)
    session = Session(
        rng.poisson(rates).astype(np.float32), "spikes", BIN, 0.0, _neuron_table(regions),
        trials, behavior, ["wheel_speed"], META,
        truth={"rates": rates.astype(np.float32)} if truth else {},
    )  # fmt: skip
    write_session(session, path)
    return Windows(starts, starts + trial_bins * BIN, _split_labels(rng, n_trials), np.arange(40))


def calcium_session(path: Path, seed: int) -> Windows:
    """AR(1) traces (phi = 0.8) around per-neuron baselines plus observation noise."""
    rng = np.random.default_rng(seed)
    n, n_windows, frames = 10, 50, 20
    t = n_windows * frames
    signal = np.zeros((t, n))
    for k in range(1, t):
        signal[k] = 0.8 * signal[k - 1] + rng.normal(size=n)
    signal = signal + rng.uniform(0, 2, n)
    activity = (signal + 0.2 * rng.normal(size=signal.shape)).astype(np.float32)
    trials = pd.DataFrame({"start": [], "stop": [], "align": []})
    session = Session(
        activity, "calcium", FRAME, 0.0, _neuron_table(["VISp"] * 5 + ["VISl"] * 5), trials,
        np.zeros((t, 0), np.float32), [], META, truth={"signal": signal.astype(np.float32)},
    )  # fmt: skip
    write_session(session, path)
    starts = np.arange(n_windows) * frames * FRAME
    return Windows(
        starts, starts + frames * FRAME, _split_labels(rng, n_windows), np.full(n_windows, -1)
    )


def make_inputs(root: Path, modality: str, method: str, tasks: tuple[str, ...], **kw):
    """A held-out and a pretraining session of one modality, with hand-built splits."""
    root.mkdir(parents=True, exist_ok=True)
    paths, windows, neurons = {}, {}, {}
    for seed, session in enumerate(("sub-01_ses-01", "sub-02_ses-01")):
        path = root / f"{session}.{modality}.h5"
        if modality == "spikes":
            windows[session] = spiking_session(path, seed, truth=kw.get("truth", True))
        else:
            windows[session] = calcium_session(path, seed)
        paths[session] = path
        held_out = ["u0", "u3", "u7"]
        held_in = [f"u{i}" for i in range(10) if f"u{i}" not in held_out]
        neurons[session] = {"held_in": held_in, "held_out": held_out}
        neurons[session] |= kw.get("groups", {})
    splits = Splits(
        "toy", 0, ["sub-01_ses-01"], ["sub-02_ses-01"], windows, {modality: neurons}, {}
    )
    hparams = {**TINY, **kw.get("hparams", {})}
    return StageInputs("toy", method, "base", 0, paths, splits, tasks, hparams, "cpu")


def run(inputs: StageInputs, root: Path) -> dict[tuple[str, str], float]:
    method = get_method(inputs.method)
    model = root / f"{inputs.method}.pt"
    method.finetune(inputs, None, StageOutputs(model=model))
    evaluation = method.evaluate(inputs, model)
    assert all(is_metric(r.metric) for r in evaluation.rows)
    assert {r.session for r in evaluation.rows} == {"sub-02_ses-01"}
    assert all(k.split("/")[1] == "sub-02_ses-01" for k in evaluation.arrays)
    return {(r.task, r.metric): r.value for r in evaluation.rows}


@pytest.fixture(scope="module")
def spikes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spikes")


def test_interface_and_task_support():
    linear, ar, oracle = get_method("linear"), get_method("linear_ar"), get_method("oracle")
    assert linear.pretrains is False and linear.modality == "any"
    assert linear.supported_tasks(SPIKE_TASKS) == SPIKE_TASKS
    assert ar.supported_tasks(SPIKE_TASKS) == ("forecasting",)
    assert oracle.supported_tasks(SPIKE_TASKS) == SPIKE_TASKS[:4]
    with pytest.raises(RuntimeError, match="no pretraining"):
        linear.pretrain(None, StageOutputs())


def test_linear_and_oracle_on_spikes(spikes_root):
    torch.set_num_threads(1)
    linear = run(make_inputs(spikes_root, "spikes", "linear", SPIKE_TASKS), spikes_root)
    tasks = {task for task, _ in linear}
    assert tasks == set(SPIKE_TASKS)
    for task in SPIKE_TASKS[:4]:
        assert np.isfinite(linear[(task, "bps")]) and np.isfinite(linear[(task, "poisson_d2")])
    assert linear[("co_smoothing", "bps")] > 0  # the latent is shared: held-in predicts held-out
    assert linear[("choice", "bacc")] > 0.7
    assert linear[("stimulus_class", "bacc")] > 0.7
    assert linear[("behavior_wheel_speed", "r2")] > 0.3
    oracle = run(make_inputs(spikes_root, "spikes", "oracle", SPIKE_TASKS[:4]), spikes_root)
    for task in SPIKE_TASKS[:4]:
        assert oracle[(task, "bps")] > linear[(task, "bps")], task


def test_model_file_is_weights_only(spikes_root):
    inputs = make_inputs(spikes_root, "spikes", "linear", ("co_smoothing",))
    model = spikes_root / "weights.pt"
    get_method("linear").finetune(inputs, None, StageOutputs(model=model))
    payload = torch.load(model, weights_only=True)
    assert payload["method"] == "linear" and payload["hparams"]["ar_order"] == 4
    assert set(payload["sessions"]) == {"sub-02_ses-01"}
    with pytest.raises(ValueError, match="a 'linear' model, expected 'mean'"):
        get_method("mean").evaluate(inputs, model)


def test_forecasters_on_spikes_use_the_forecasting_query(spikes_root):
    inputs = make_inputs(spikes_root, "spikes", "persistence", ("forecasting", "choice"))
    values = run(inputs, spikes_root)
    assert set(values) == {
        ("forecasting", "bps"),
        ("forecasting", "poisson_d2"),
        ("forecasting", "poisson_d2_pooled"),
    }


def test_calcium_forecasters(tmp_path):
    torch.set_num_threads(1)
    scores = {}
    for method in ("mean", "persistence", "linear_ar", "linear", "rnn", "poco", "oracle"):
        inputs = make_inputs(tmp_path, "calcium", method, ("forecasting",))
        scores[method] = run(inputs, tmp_path)
        # The mean predicts one value per neuron: no correlation is defined (NaN).
        correlations = {k: v for k, v in scores[method].items() if k[1].startswith("pearson")}
        others = [v for k, v in scores[method].items() if k not in correlations]
        assert np.isfinite(others).all(), method
        if method == "mean":
            assert correlations and np.isnan(list(correlations.values())).all()
        else:
            assert np.isfinite(list(correlations.values())).all(), method
    assert {m for _, m in scores["mean"]} >= {"mae_h1", "mse_h4", "r2_h4", "mae", "mse", "r2"}
    for step in ("mse_h2", "mse_h4", "mse"):
        best_naive = min(
            scores["mean"][("forecasting", step)], scores["persistence"][("forecasting", step)]
        )
        assert scores["linear_ar"][("forecasting", step)] < best_naive, step
    assert scores["oracle"][("forecasting", "mse")] < scores["linear_ar"][("forecasting", "mse")]
    # trained forecasters beat the mean on an AR(1) signal and are deterministic
    for method in ("rnn", "poco"):
        for metric in ("mse_h1", "mse"):
            naive = min(scores[m][("forecasting", metric)] for m in ("mean", "persistence"))
            assert scores[method][("forecasting", metric)] < naive, (method, metric)
    again = run(make_inputs(tmp_path, "calcium", "poco", ("forecasting",)), tmp_path)
    assert again == scores["poco"]


def test_linear_unpredictable_decodes_from_its_neuron_group_only(tmp_path):
    # spiking_session drives u0-u3 with the choice and u6-u9 with the stimulus class, so
    # a decoder that really reads only its group decodes the task of that group alone.
    method = get_method("linear_unpredictable")
    assert method.modality == "calcium" and not method.pretrains
    assert method.supported_tasks(SPIKE_TASKS) == (
        "choice",
        "stimulus_class",
        "behavior_wheel_speed",
    )
    tasks = ("choice", "stimulus_class")
    scores = {}
    for name, ids in {"choice_cells": [0, 1, 2, 3], "stimulus_cells": [6, 7, 8, 9]}.items():
        groups = {"unpredictable": [f"u{i}" for i in ids]}
        root = tmp_path / name
        scores[name] = run(
            make_inputs(root, "spikes", "linear_unpredictable", tasks, groups=groups), root
        )
    assert scores["choice_cells"][("choice", "bacc")] > 0.8
    assert scores["choice_cells"][("stimulus_class", "bacc")] < 0.7
    assert scores["stimulus_cells"][("stimulus_class", "bacc")] > 0.8
    assert scores["stimulus_cells"][("choice", "bacc")] < 0.7


def test_linear_unpredictable_without_the_group_names_file_and_group(tmp_path):
    inputs = make_inputs(tmp_path, "spikes", "linear_unpredictable", ("choice",))
    with pytest.raises(KeyError, match=r"sub-02_ses-01\.spikes\.h5.*no 'unpredictable' spikes"):
        run(inputs, tmp_path)


def test_oracle_without_truth_names_the_file(tmp_path):
    inputs = make_inputs(tmp_path, "spikes", "oracle", ("co_smoothing",), truth=False)
    with pytest.raises(ValueError, match=r"sub-02_ses-01\.spikes\.h5.*ground truth 'rates'"):
        run(inputs, tmp_path)


def test_missing_label_column_is_a_clear_error(tmp_path):
    inputs = make_inputs(tmp_path, "spikes", "linear", ("stimulus_orientation",))
    with pytest.raises(KeyError, match=r"stimulus_orientation.*trial columns"):
        run(inputs, tmp_path)


def test_bad_hparam_type(tmp_path):
    inputs = make_inputs(tmp_path, "calcium", "mean", ("forecasting",), hparams={"context": "x"})
    with pytest.raises(ValueError, match=r"hparams\.mean: key 'context'"):
        run(inputs, tmp_path)


def test_sliding_pairs_cover_every_offset_and_bound_the_count():
    activity = np.arange(2 * 7 * 1, dtype=float).reshape(2, 7, 1)
    context, future = sliding_pairs(activity, 3, 2)
    assert context.shape == (6, 3, 1) and future.shape == (6, 2, 1)  # 3 offsets x 2 windows
    assert context[1, :, 0].tolist() == [1, 2, 3] and future[1, :, 0].tolist() == [4, 5]
    assert context[3, 0, 0] == 7  # the second window's pairs follow the first's
    assert sliding_pairs(activity, 3, 2, max_pairs=2)[0].shape[0] == 2  # stride 3: offset 0
    with pytest.raises(ValueError, match="context 5 \\+ horizon 3"):
        sliding_pairs(activity, 5, 3)
