"""Hyper-parameter selection: scored on validation windows, chosen per method, kept out of
reports that show test scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_loader import make_dataset

from neurossl.contract import Evaluation, MetricRow, StageInputs, StageOutputs
from neurossl.data.loader import WindowDataset
from neurossl.data.splits import write_splits
from neurossl.eval.rows import write_evaluation
from neurossl.methods.registry import get_method
from neurossl.report.collect import collect
from neurossl.selection import run_selection, summarise
from workflow_helpers import SNAKEFILE, tiny_config

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


@pytest.mark.slow
def test_selection_runs_the_workflow_once_per_variant_on_validation_windows(tmp_path):
    """Each variant is a Snakemake run of an overlay; pretraining is shared, and a second
    call with one more variant runs only that one."""
    config = yaml.safe_load(tiny_config(tmp_path).read_text())
    config["datasets"]["synthetic"]["modalities"] = ["spikes"]
    config |= {"methods": ["ndt"], "hparams": {"ndt": {**FAST, "pretrain_steps": 5}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    config = tmp_path / "config.yaml"
    out = tmp_path / "selection"
    variants = {"short": {"stitch_steps": 2}, "long": {"stitch_steps": 8}}
    extra = ["--directory", str(tmp_path), "--cores", "2"]
    rows = run_selection([config], ["ndt"], [3], variants, out, SNAKEFILE, extra)
    assert set(rows["variant"]) == set(variants) and set(rows["method"]) == {"ndt"}
    assert set(rows["seed"]) == {3}
    evaluation = out / "runs" / "synthetic" / "eval" / "ndt"
    assert [json.loads(p.read_text())["split"] for p in evaluation.rglob("metrics.json")] == [
        "valid"
    ]
    by_variant = rows[rows["metric"] == "bps"].groupby("variant")["value"].mean()
    assert by_variant["short"] != by_variant["long"]
    log = (out / "variants" / "long" / "snakemake.log").read_text()
    assert "rule finetune:" in log and "rule pretrain:" not in log  # shared pretraining
    stamps = {v: (out / "variants" / v / "metrics.csv").stat().st_mtime_ns for v in variants}
    again = run_selection(
        [config], ["ndt"], [3], variants | {"mid": {"stitch_steps": 4}}, out, SNAKEFILE, extra
    )
    assert {v: (out / "variants" / v / "metrics.csv").stat().st_mtime_ns for v in variants} == (
        stamps
    )
    assert set(again["variant"]) == {*variants, "mid"}
    table = summarise(again, ["co_smoothing"], "bps")
    assert table["chosen"].sum() == 1


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
