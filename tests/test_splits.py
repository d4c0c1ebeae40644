"""Splits: deterministic, no train/test leakage, predictability on training data only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurossl.data import predictability as pred
from neurossl.data.make_splits import SplitConfig, compute_splits, write_split_outputs
from neurossl.data.session import Session, write_session
from neurossl.data.splits import read_splits
from neurossl.data.windows import block_windows

BIN = 0.05


def make_session(
    session: str, subject: str, n_neurons: int = 30, n_trials: int = 40, seed: int = 0
) -> Session:
    """Trials of 2 s every 2.5 s; the first 20 neurons Gaussian, the last 10 bursty."""
    rng = np.random.default_rng(seed)
    duration = n_trials * 2.5 + 1.0
    n_bins = int(duration / BIN)
    activity = rng.normal(1.0, 0.3, size=(n_bins, n_neurons))
    bursts = rng.random((n_bins, 10)) < 0.01
    activity[:, 20:] = 0.05 * rng.random((n_bins, 10)) + 8.0 * bursts
    starts = 0.5 + 2.5 * np.arange(n_trials)
    truth = np.zeros(n_neurons, dtype=bool)
    truth[:20] = True
    return Session(
        activity=activity.astype(np.float32),
        modality="calcium",
        bin_size=BIN,
        t0=0.0,
        neurons=pd.DataFrame(
            {
                "id": [f"n{i}" for i in range(n_neurons)],
                "region": ["VISp" if i % 2 else "VISl" for i in range(n_neurons)],
                "depth": np.full(n_neurons, 175.0),
                "cre_line": ["Sst-IRES-Cre"] * 20 + ["Cux2-CreERT2"] * 10,
            }
        ),
        trials=pd.DataFrame({"start": starts, "stop": starts + 2.0, "align": starts + 0.5}),
        behavior=np.zeros((n_bins, 0), dtype=np.float32),
        behavior_names=[],
        meta={
            "dataset": "toy",
            "session": session,
            "subject": subject,
            "source_path": f"{session}.nwb",
            "source_sha256": "0" * 64,
            "software_version": "test",
        },
        truth={"predictable": truth},
    )


@pytest.fixture
def session_files(tmp_path: Path) -> dict[tuple[str, str], Path]:
    files = {}
    for i, (session, subject) in enumerate([("s1", "A"), ("s2", "A"), ("s3", "B"), ("s4", "C")]):
        path = tmp_path / f"{session}.calcium.h5"
        write_session(make_session(session, subject, seed=i), path)
        files[(session, "calcium")] = path
    return files


def test_splits_are_deterministic_and_saved_exactly(session_files, tmp_path):
    config = SplitConfig(seed=3)
    first, table = compute_splits("toy", session_files, config)
    second, _ = compute_splits("toy", session_files, config)
    assert first.to_json() == second.to_json()
    other, _ = compute_splits("toy", session_files, SplitConfig(seed=4))
    assert other.to_json()["windows"] != first.to_json()["windows"]
    write_split_outputs(
        "toy",
        [str(p) for p in session_files.values()],
        config,
        tmp_path / "splits.json",
        tmp_path / "stats.csv",
    )
    assert read_splits(tmp_path / "splits.json").to_json() == first.to_json()
    assert len(pd.read_csv(tmp_path / "stats.csv")) == len(table)


def test_windows_partition_trials_with_mtm_fractions(session_files):
    splits, _ = compute_splits("toy", session_files, SplitConfig())
    for windows in splits.windows.values():
        assert len(np.unique(windows.trial)) == len(windows) == 40
        counts = {s: int((windows.split == s).sum()) for s in ("train", "valid", "test")}
        assert counts == {"train": 28, "valid": 4, "test": 8}
        np.testing.assert_allclose(windows.stop - windows.start, 2.0)


def test_heldout_sessions_are_whole_new_subjects(session_files):
    splits, _ = compute_splits("toy", session_files, SplitConfig(n_heldout_subjects=1))
    assert splits.heldout_sessions == ["s4"] and splits.pretrain_sessions == ["s1", "s2", "s3"]
    chosen, _ = compute_splits("toy", session_files, SplitConfig(heldout_subjects=("A",)))
    assert chosen.heldout_sessions == ["s1", "s2"]
    with pytest.raises(ValueError, match="not among subjects"):
        compute_splits("toy", session_files, SplitConfig(heldout_subjects=("Z",)))


def test_heldout_fractions_split_only_the_heldout_sessions(session_files):
    """Held-out recordings can give most windows to evaluation; the pretraining sessions'
    windows stay exactly as ``fractions`` alone makes them."""
    plain, _ = compute_splits("toy", session_files, SplitConfig())
    few_labels = {"train": 0.25, "valid": 0.25, "test": 0.5}
    splits, _ = compute_splits("toy", session_files, SplitConfig(heldout_fractions=few_labels))
    for session, windows in splits.windows.items():
        counts = {s: int((windows.split == s).sum()) for s in ("train", "valid", "test")}
        if session in splits.heldout_sessions:
            assert counts == {"train": 10, "valid": 10, "test": 20}, session
        else:
            np.testing.assert_array_equal(windows.split, plain.windows[session].split)
    with pytest.raises(ValueError, match="sum to 1"):
        compute_splits(
            "toy",
            session_files,
            SplitConfig(heldout_fractions={"train": 0.5, "valid": 0.1, "test": 0.1}),
        )


def test_held_in_and_held_out_neurons_partition_each_session(session_files):
    splits, _ = compute_splits("toy", session_files, SplitConfig(held_out_neuron_fraction=0.2))
    for session in ("s1", "s2", "s3", "s4"):
        held_in = splits.neuron_group("calcium", session, "held_in")
        held_out = splits.neuron_group("calcium", session, "held_out")
        assert not set(held_in) & set(held_out)
        assert len(held_in) + len(held_out) == 30 and len(held_out) == 6


def test_predictability_recovers_planted_group(session_files):
    splits, _ = compute_splits("toy", session_files, SplitConfig())
    summary = splits.predictability["calcium"]
    assert summary["threshold_source"] == "knee"
    assert summary["precision"] >= 0.95 and summary["recall"] >= 0.95


def test_predictability_never_reads_valid_or_test_windows(session_files, tmp_path):
    """Poisoning every non-training bin must not change the scores or the selection."""
    config = SplitConfig()
    clean, clean_table = compute_splits("toy", session_files, config)
    poisoned_files = {}
    for (session, modality), path in session_files.items():
        from neurossl.data.session import read_session

        s = read_session(path)
        train = clean.windows[session].select("train")
        keep = np.zeros(s.n_bins, dtype=bool)
        for start in s.bin_index(train.start):
            keep[start : start + 40] = True
        s.activity[~keep] = 1000.0 * np.random.default_rng(0).random(
            (int((~keep).sum()), s.n_neurons)
        )
        poisoned = tmp_path / "poisoned" / f"{session}.{modality}.h5"
        write_session(s, poisoned)
        poisoned_files[(session, modality)] = poisoned
    dirty, dirty_table = compute_splits("toy", poisoned_files, config)
    np.testing.assert_allclose(dirty_table["skewness"], clean_table["skewness"])
    np.testing.assert_allclose(dirty_table["kurtosis"], clean_table["kurtosis"])
    assert dirty.neurons == clean.neurons


def test_threshold_override_from_config(session_files):
    splits, _ = compute_splits(
        "toy", session_files, SplitConfig(skewness_threshold=1e9, kurtosis_threshold=1e9)
    )
    assert splits.predictability["calcium"]["threshold_source"] == "config"
    assert splits.predictability["calcium"]["n_predictable"] == 120
    with pytest.raises(ValueError, match="both"):
        pred.choose_thresholds(np.zeros(3), np.zeros(3), 1.0, None)


def test_knee_sits_at_the_bend_of_sorted_scores():
    scores = np.concatenate([np.linspace(0.0, 0.5, 60), np.linspace(5.0, 40.0, 40)])
    assert 0.4 <= pred.knee_threshold(scores) <= 0.5


def test_block_windows_never_straddle_splits():
    rng = np.random.default_rng(0)
    windows = block_windows(
        (0.0, 600.0),
        window=2.0,
        block=30.0,
        fractions={"train": 0.7, "valid": 0.1, "test": 0.2},
        rng=rng,
    )
    assert len(windows) == 300
    block = np.floor(windows.start / 30.0).astype(int)
    for b in np.unique(block):
        assert len(set(windows.split[block == b])) == 1
    assert (windows.stop <= (block + 1) * 30.0 + 1e-9).all()
    with pytest.raises(ValueError, match="at least 3"):
        block_windows((0.0, 50.0), 2.0, 30.0, {"train": 0.7, "valid": 0.1, "test": 0.2}, rng)


def test_unknown_split_key_is_named():
    with pytest.raises(ValueError, match="hold_out"):
        SplitConfig.from_dict({"hold_out": 0.2})


def test_heldout_sessions_by_id(session_files):
    splits, _ = compute_splits("toy", session_files, SplitConfig(heldout_sessions=("s2", "s3")))
    assert splits.heldout_sessions == ["s2", "s3"] and splits.pretrain_sessions == ["s1", "s4"]
    with pytest.raises(ValueError, match="not among sessions"):
        compute_splits("toy", session_files, SplitConfig(heldout_sessions=("s9",)))


def test_continuous_windows_take_the_label_of_the_trial_at_their_midpoint():
    from neurossl.data.make_splits import label_windows
    from neurossl.data.splits import Windows

    trials = pd.DataFrame({"start": [10.0, 0.0, 4.0], "stop": [12.0, 2.0, 6.0]})
    windows = Windows(
        start=np.array([0.0, 2.0, 4.5, 10.0]),
        stop=np.array([2.0, 4.0, 6.5, 12.0]),
        split=np.array(["train"] * 4, dtype=object),
        trial=np.full(4, -1),
    )
    assert label_windows(windows, trials).trial.tolist() == [1, -1, 2, 0]
