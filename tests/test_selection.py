"""Hyper-parameter selection: scored on validation windows, chosen per method, kept out of
reports that show test scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_loader import make_dataset

from neurossl.data.loader import WindowDataset
from neurossl.data.splits import write_splits
from neurossl.eval.rows import write_evaluation
from neurossl.methods.base import Evaluation, MetricRow, StageInputs, StageOutputs
from neurossl.methods.registry import get_method
from neurossl.report.collect import collect
from neurossl.selection import run_selection, summarise

FAST = {"max_steps": 10, "stitch_steps": 5, "decode_steps": 0, "eval_every": 10}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """A dataset folder laid out as the workflow writes it: sessions/ and splits.json."""
    root = tmp_path_factory.mktemp("selection") / "toy"
    paths, splits = make_dataset(root / "sessions", n_trials=40)
    write_splits(splits, root / "splits.json")
    return root, paths, splits


def test_evaluation_scores_the_requested_split(dataset_dir, tmp_path):
    torch.set_num_threads(1)
    _, paths, splits = dataset_dir
    method = get_method("scratch_ndt")
    inputs = StageInputs("toy", "scratch_ndt", "tiny", 0, paths, splits, ("co_smoothing",), FAST)
    outputs = StageOutputs(model=tmp_path / "model.pt", checkpoint_dir=tmp_path / "ck")
    method.finetune(inputs, None, outputs)
    session = splits.heldout_sessions[0]
    key = f"co_smoothing/{session}/target"
    for split in ("valid", "test"):
        evaluation = method.evaluate(
            StageInputs(**{**vars(inputs), "eval_split": split}), outputs.model
        )
        windows = WindowDataset(paths, splits, split, [session])
        assert evaluation.arrays[key].shape[0] == len(windows) > 0
        expected = np.stack([windows[i]["activity"] for i in range(len(windows))])
        np.testing.assert_array_equal(evaluation.arrays[key], expected)


def _row(method: str, seed: int, value: float, task: str = "co_smoothing") -> MetricRow:
    return MetricRow("toy", "s1.spikes", method, "tiny", task, "bps", seed, value)


def test_summary_chooses_each_methods_own_best_variant():
    rows = pd.DataFrame(
        [vars(_row("mtm", s, v)) | {"variant": name} for name, v in (("a", 0.3), ("b", 0.2))
         for s in (3, 4)]
        + [vars(_row("ndt", s, v)) | {"variant": name} for name, v in (("a", 0.1), ("b", 0.4))
           for s in (3, 4)]
    )  # fmt: skip
    table = summarise(rows, ["co_smoothing"], "bps").set_index(["method", "variant"])
    assert table.loc[("mtm", "a"), "chosen"] and not table.loc[("mtm", "b"), "chosen"]
    assert table.loc[("ndt", "b"), "chosen"] and not table.loc[("ndt", "a"), "chosen"]
    assert table.loc[("ndt", "b"), "score"] == pytest.approx(0.4)


def test_selection_runs_the_stages_on_validation_windows(dataset_dir, tmp_path):
    root, _, splits = dataset_dir
    variants = {"short": {"stitch_steps": 2}, "long": {"stitch_steps": 8}}
    rows = run_selection(
        root, ["scratch_ndt"], "spikes", ["co_smoothing"], [3], {"scratch_ndt": FAST},
        variants, tmp_path / "selection", jobs=2,
    )  # fmt: skip
    assert set(rows["variant"]) == set(variants)
    assert set(rows["seed"]) == {3}
    assert set(rows["session"]) == {f"{s}.spikes" for s in splits.heldout_sessions}
    for variant in variants:
        metrics = tmp_path / "selection" / "scratch_ndt" / "tiny" / variant / "seed3"
        assert json.loads((metrics / "metrics.json").read_text())["split"] == "valid"
    by_variant = rows[rows["metric"] == "bps"].groupby("variant")["value"].mean()
    assert by_variant["short"] != by_variant["long"]
    # A second call with one more variant trains only that one.
    models = {v: tmp_path / "selection" / "scratch_ndt" / "tiny" / v / "seed3" / "model.pt"
              for v in variants}  # fmt: skip
    stamps = {v: path.stat().st_mtime_ns for v, path in models.items()}
    again = run_selection(
        root, ["scratch_ndt"], "spikes", ["co_smoothing"], [3], {"scratch_ndt": FAST},
        variants | {"mid": {"stitch_steps": 4}}, tmp_path / "selection", jobs=2,
    )  # fmt: skip
    assert {v: path.stat().st_mtime_ns for v, path in models.items()} == stamps
    assert set(again["variant"]) == {*variants, "mid"}
    pd.testing.assert_frame_equal(again[again["variant"] != "mid"].reset_index(drop=True), rows)


def test_report_refuses_to_mix_validation_and_test_scores(tmp_path):
    paths = []
    for seed, split in ((0, "test"), (1, "valid")):
        path = tmp_path / "eval" / "mtm" / "spikes" / "tiny" / f"seed{seed}" / "metrics.json"
        path.parent.mkdir(parents=True)
        evaluation = Evaluation(rows=[_row("mtm", seed, 0.1)])
        write_evaluation(evaluation, path, path.with_name("predictions.npz"), split)
        paths.append(path)
    assert collect("toy", paths[:1], {"spikes": ["co_smoothing"]}).split == "test"
    assert collect("toy", paths[1:], {"spikes": ["co_smoothing"]}).split == "valid"
    with pytest.raises(ValueError, match="different splits"):
        collect("toy", paths, {"spikes": ["co_smoothing"]})


def test_summary_names_a_task_without_the_metric():
    rows = pd.DataFrame([vars(_row("mtm", 3, 0.3)) | {"variant": "a"}])
    with pytest.raises(ValueError, match="inter_region"):
        summarise(rows, ["co_smoothing", "inter_region"], "bps")


def test_a_variant_may_not_take_the_pretraining_folder(tmp_path):
    from neurossl.selection import main

    with pytest.raises(ValueError, match="pretraining folder"):
        main(["--dataset-dir", str(tmp_path), "--methods", "mtm", "--modality", "spikes",
              "--tasks", "co_smoothing", "--metric", "bps", "--variants",
              '{"pretrain": {}}', "--out", str(tmp_path / "out")])  # fmt: skip
