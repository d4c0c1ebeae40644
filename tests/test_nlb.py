"""NLB source and submission export on small files in NLB's layout (tests/nlb_layout.py)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from nlb_layout import write_nlb_file
from pynwb import NWBHDF5IO
from snakemake.utils import validate

from neurossl.data.make_splits import SplitConfig, compute_splits
from neurossl.data.nwb_fields import NWBFormatError
from neurossl.data.preprocess import preprocess_to_session, reader_of
from neurossl.data.session import read_session
from neurossl.data.sources.nlb import HELDOUT_COLUMN, SPLIT_COLUMN
from neurossl.eval import nlb_export
from neurossl.eval.metrics import bits_per_spike
from workflow_helpers import REPO, run_snakemake, tiny_config

BIN = 0.005
#: make_tensors.PARAMS["mc_maze"]["eval_make_params"]["align_range"] = (-250, 450) ms.
SPLIT = SplitConfig(pre=0.25, post=0.45, fractions={"train": 0.8, "valid": 0.2, "test": 0.0})


@pytest.fixture(scope="module")
def nlb_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("nlb")
    out = {}
    for seed, session in enumerate(("full", "other")):
        nwb = root / f"sub-Jenkins_ses-{session}_desc-train_behavior+ecephys.nwb"
        truth = write_nlb_file(nwb, seed=seed)
        path = root / f"{session}.spikes.h5"
        preprocess_to_session(
            nwb_path=nwb,
            out_path=path,
            dataset="nlb",
            session=session,
            modality="spikes",
            reader=reader_of({"nlb": {}}),
            spike_bin_size=BIN,
            options={},
        )
        out[session] = (nwb, path, truth)
    return out


def test_the_session_keeps_nlbs_units_flags_splits_and_spikes(nlb_files):
    nwb, path, truth = nlb_files["full"]
    session = read_session(path)
    with NWBHDF5IO(str(nwb), "r") as io:
        nwbfile = io.read()
        units = nwbfile.units.to_dataframe()
        trials = nwbfile.trials.to_dataframe()
    # Held-in units first, then held-out, each in the file's unit order (NLB's order).
    expected = np.r_[units.index[~units.heldout], units.index[units.heldout]].astype(str)
    assert session.neurons["id"].tolist() == expected.tolist()
    flags = units.loc[session.neurons["id"].astype(int), "heldout"].to_numpy(dtype=bool)
    assert np.array_equal(session.neurons[HELDOUT_COLUMN].to_numpy(dtype=bool), flags)
    assert session.trials[SPLIT_COLUMN].tolist() == truth["split"].tolist()
    assert np.allclose(session.trials["align"], trials["move_onset_time"])
    assert np.allclose(session.trials["stop"], trials["stop_time"])
    # Every spike of every unit is in one 5 ms bin.
    totals = [len(units.loc[int(u), "spike_times"]) for u in session.neurons["id"]]
    assert np.array_equal(session.activity.sum(axis=0), totals)
    assert session.bin_size == BIN
    assert session.behavior_names == ["hand_vel_x", "hand_vel_y"]
    assert session.meta["subject"] == "Jenkins"


def test_the_split_step_takes_nlbs_held_out_units_and_trial_splits(nlb_files):
    paths = {(s, "spikes"): p for s, (_, p, _) in nlb_files.items()}
    splits, _ = compute_splits(
        "nlb", paths, SplitConfig(**{**SPLIT.__dict__, "heldout_sessions": ("full",)})
    )
    session = read_session(nlb_files["full"][1])
    windows = splits.windows["full"]
    nlb_split = session.trials[SPLIT_COLUMN].to_numpy()[windows.trial]
    assert set(windows.split[nlb_split == "val"]) == {"test"}
    assert set(windows.split[nlb_split == "train"]) == {"train", "valid"}
    assert (windows.split == "valid").sum() == int(0.2 * (nlb_split == "train").sum())
    held_out = session.neurons["id"][session.neurons[HELDOUT_COLUMN]].tolist()
    assert splits.neuron_group("spikes", "full", "held_out") == held_out


def test_one_nlb_recording_is_both_pretraining_and_held_out_session(nlb_files):
    _, path, _ = nlb_files["full"]
    splits, _ = compute_splits("nlb", {("full", "spikes"): path}, SPLIT)
    assert splits.pretrain_sessions == splits.heldout_sessions == ["full"]


def _expected_counts(truth, session, windows):
    """True expected counts per 5 ms bin of each window [W, bins, N]."""
    per_ms = truth["rates_hz"] / 1000.0
    per_bin = per_ms.reshape(-1, 5, per_ms.shape[1]).sum(axis=1)
    heldout = truth["heldout"]
    per_bin = np.concatenate([per_bin[:, ~heldout], per_bin[:, heldout]], axis=1)
    first = session.bin_index(windows.start)
    n = round((windows.stop[0] - windows.start[0]) / session.bin_size)
    return per_bin[first[:, None] + np.arange(n)[None, :]], session.activity[
        first[:, None] + np.arange(n)[None, :]
    ]


@pytest.mark.parametrize("prediction", ["true_rates", "train_mean"])
def test_nlb_tools_co_bps_equals_neurossl_bits_per_spike(nlb_files, prediction, tmp_path):
    nwb, path, truth = nlb_files["full"]
    session = read_session(path)
    paths = {(s, "spikes"): p for s, (_, p, _) in nlb_files.items()}
    splits, _ = compute_splits(
        "nlb", paths, SplitConfig(**{**SPLIT.__dict__, "heldout_sessions": ("full",)})
    )
    windows = splits.windows["full"]
    rates, counts = _expected_counts(truth, session, windows)
    if prediction == "train_mean":
        train = windows.split != "test"
        rates = np.broadcast_to(counts[train].mean(axis=(0, 1)), rates.shape).copy()
    val_in, val_out = nlb_export.to_nlb_order(rates, windows.trial, session, "val")
    train_in, train_out = nlb_export.to_nlb_order(rates, windows.trial, session, "train")
    data = nlb_export.submission(
        "mc_maze",
        5,
        {
            "eval_rates_heldin": val_in,
            "eval_rates_heldout": val_out,
            "train_rates_heldin": train_in,
            "train_rates_heldout": train_out,
        },
    )
    out = tmp_path / "submission.h5"
    nlb_export.write_submission(data, out)
    targets = nlb_export.eval_targets(nwb, "mc_maze", 5)
    scores = nlb_export.score(targets, str(out))
    # neurossl's own score of the same rates on its own test windows (= NLB val trials).
    test = windows.split == "test"
    held_out = session.neurons[HELDOUT_COLUMN].to_numpy(dtype=bool)
    _, val_counts_out = nlb_export.to_nlb_order(counts, windows.trial, session, "val")
    # The Session's bins are the bins nlb_tools scores.
    assert np.array_equal(val_counts_out, targets["mc_maze"]["eval_spikes_heldout"])
    ours = bits_per_spike(
        rates[test][:, :, held_out].reshape(-1, held_out.sum()),
        counts[test][:, :, held_out].reshape(-1, held_out.sum()),
    )
    assert abs(scores["co-bps"] - ours) < 1e-6
    if prediction == "true_rates":
        assert scores["co-bps"] > 0.05
    assert set(scores) >= {"co-bps", "vel R2"}


def test_a_file_without_nlb_fields_is_named(tmp_path):
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    nwbfile.add_unit(spike_times=[0.1, 0.2])
    path = tmp_path / "plain.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    with pytest.raises((NWBFormatError, ValueError), match=r"plain\.nwb"):
        preprocess_to_session(
            nwb_path=path,
            out_path=tmp_path / "s.h5",
            dataset="nlb",
            session="x",
            modality="spikes",
            reader="nlb",
            spike_bin_size=BIN,
            options={},
        )
    assert not (tmp_path / "s.h5").exists()


def test_a_bin_size_nlb_does_not_score_is_refused(nlb_files, tmp_path):
    with pytest.raises(ValueError, match=r"0\.005 or 0\.02"):
        preprocess_to_session(
            nwb_path=nlb_files["full"][0],
            out_path=tmp_path / "s.h5",
            dataset="nlb",
            session="x",
            modality="spikes",
            reader="nlb",
            spike_bin_size=0.01,
            options={},
        )


def test_the_mc_maze_config_is_valid():
    config = yaml.safe_load((REPO / "config" / "nlb_mc_maze.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert reader_of(config["datasets"]["nlb_mc_maze"]) == "nlb"


def test_the_workflow_scores_its_co_smoothing_runs_with_nlb_tools(tmp_path):
    """A real Snakemake run on one NLB-layout recording: split, linear + NDT, export."""
    data = tmp_path / "data"
    data.mkdir()
    write_nlb_file(data / "sub-Jenkins_ses-full_desc-train_behavior+ecephys.nwb", n_trials=30)
    small = {"pretrain_steps": 20, "stitch_steps": 5, "max_steps": 10, "decode_steps": 5}
    config = tiny_config(
        tmp_path,
        methods=["linear", "ndt", "mean"],
        # NLB's 700 ms window is 140 bins of 5 ms.
        hparams={"ndt": {"max_bins": 140, **small}},
        datasets={
            "nlb": {
                "source": "local",
                "modalities": ["spikes"],
                "local": {"path": str(data)},
                "nlb": {"benchmark": "mc_maze"},
                "preprocess": {"spike_bin_size": BIN},
                "split": {"seed": 0, "pre": 0.25, "post": 0.45, "fractions": SPLIT.fractions},
                "tasks": {"spikes": ["co_smoothing"]},
            }
        },
    )
    run_snakemake(tmp_path, configfile=config)
    scores = pd.read_csv(tmp_path / "results" / "nlb" / "nlb" / "scores.csv")
    assert sorted(scores["method"]) == ["linear", "ndt"]
    assert (scores["metric"] == "co-bps").all() and (scores["n_trials"] == 10).all()
    # nlb_tools' co-bps of the saved rates is neurossl's own bits/spike (float32 rates).
    assert np.allclose(scores["value"], scores["neurossl_value"], atol=1e-6, rtol=0)
    files = tmp_path / "results" / "nlb" / "nlb" / "files"
    with h5py.File(files / scores["submission"][0], "r") as f:
        assert list(f) == ["mc_maze"] and list(f["mc_maze"]) == ["eval_rates_heldout"]
