"""The method table is the one declaration: schema, docs and planning follow it, and a
method added from outside the package runs through planning, training and the report."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pandas as pd
import pytest
import yaml

from neurossl import catalog, names
from neurossl.config_schema import vocabulary_defs
from neurossl.methods import hparam_models
from neurossl.methods.registry import get_method, method_traits
from workflow_helpers import REPO, SNAKEFILE, tiny_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_the_schema_file_names_the_built_in_vocabulary():
    assert os.environ.get(catalog.METHOD_MODULES_ENV, "") == ""
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"] == vocabulary_defs()


def test_docs_hparams_md_is_generated_from_the_models():
    current = (REPO / "docs" / "hparams.md").read_text()
    assert current == hparam_models.docs(), (
        "docs/hparams.md is stale: python -m neurossl.methods.hparam_models > docs/hparams.md"
    )


def test_the_models_choices_are_the_torch_modules_constants():
    from neurossl.models import ndt, quantizers
    from neurossl.models.tokenizer import TokenizerConfig
    from neurossl.objectives import calm, poyo_ssl

    def choices(model, key):
        return {a for arg in get_args(model.model_fields[key].annotation) for a in get_args(arg)}

    assert choices(hparam_models.NDTHParams, "preset") == set(ndt.PRESETS)
    assert set(get_args(hparam_models.Diet)) == set(poyo_ssl.DIETS)
    assert set(get_args(hparam_models.CalmHParams.model_fields["forecast_mode"].annotation)) == set(
        calm.FORECAST_MODES
    )
    assert set(get_args(hparam_models.CalmHParams.model_fields["feedback"].annotation)) == set(
        calm.FEEDBACKS
    )
    quantizer = hparam_models.TokenizerHParams.model_fields["quantizer"].annotation
    assert set(get_args(quantizer)) == set(quantizers.QUANTIZERS)
    tokenizer_keys = set(hparam_models.TokenizerHParams.model_fields)
    assert {f for f in TokenizerConfig.__dataclass_fields__} <= tokenizer_keys


def test_every_method_is_declared_once_and_its_family_agrees():
    assert len(set(names.METHODS)) == len(names.METHODS)
    for spec in catalog.BUILTIN_METHODS:
        method = get_method(spec.name)
        assert method.pretrains == spec.pretrains, spec.name
        assert method.finetune_only_hparams == method_traits(spec.name).finetune_only_hparams
        if spec.scratch:
            assert catalog.method(spec.scratch).backbone == spec.backbone
        for ablation in spec.ablations:
            assert catalog.method(ablation).module == spec.module


@pytest.mark.parametrize(
    ("hparams", "words"),
    [
        ({"mtm": {"pretrain_stepz": 10}}, ["hparams.mtm", "pretrain_stepz"]),
        ({"calm": {"pretrain_steps": "many"}}, ["hparams.calm", "pretrain_steps"]),
        ({"tokenizer": {"vocab_size": 1}}, ["hparams.tokenizer", "vocab_size"]),
    ],
)
def test_a_dry_run_refuses_a_bad_hparam_naming_method_and_key(tmp_path, hparams, words):
    config = tiny_config(tmp_path, methods=["linear"], hparams=hparams)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(tmp_path),
         "--cores", "1", "-n", "--configfile", str(config)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    for word in words:
        assert word in result.stdout + result.stderr, result.stderr[-3000:]


TOY_MODULE = '''
"""A method from outside the package: pretrains a per-neuron mean by gradient steps,
then fine-tunes and scores like the ``mean`` baseline."""

import csv
import json
from dataclasses import replace

import numpy as np

from neurossl.catalog import MethodSpec
from neurossl.hparams import HParams, check, hparam


class ToyHParams(HParams):
    steps: int = hparam(5, "gradient steps of the toy pretraining", ge=1)
    lr: float = hparam(0.5, "step size", gt=0)


METHODS = (
    MethodSpec("toy_mean", __name__, ("calcium",), f"{__name__}:ToyHParams",
               objective="per-neuron mean", pretrains=True, uses_device=False),
)


class Toy:
    name = "toy_mean"
    modality = "calcium"
    pretrains = True
    finetune_only_hparams = frozenset()

    def supported_tasks(self, tasks):
        return self._mean().supported_tasks(tasks)

    def _mean(self):
        from neurossl.methods.registry import get_method

        return get_method("mean")

    def _as_mean(self, inputs):
        return replace(inputs, method="mean", hparams={})

    def pretrain(self, inputs, outputs):
        from neurossl.data.session import read_session

        hp = check(self.name, ToyHParams, inputs.hparams)
        sessions = inputs.splits.pretrain_sessions
        x = np.concatenate([read_session(inputs.session_paths[s]).activity for s in sessions])
        mean, rows = np.zeros(x.shape[1]), []
        for step in range(1, hp.steps + 1):
            mean -= hp.lr * 2 * (mean - x.mean(axis=0))
            rows.append({"step": step, "loss": float(((x - mean) ** 2).mean())})
        with open(outputs.train_log, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "loss"])
            writer.writeheader()
            writer.writerows(rows)
        outputs.model.write_text(json.dumps({"mean": mean.tolist()}))

    def finetune(self, inputs, pretrained, outputs):
        assert json.loads(pretrained.read_text())["mean"]
        self._mean().finetune(self._as_mean(inputs), None, outputs)
        outputs.train_log.write_text("step,loss\\n1,0.0\\n")

    def evaluate(self, inputs, finetuned):
        evaluation = self._mean().evaluate(self._as_mean(inputs), finetuned)
        evaluation.rows = [replace(row, method=self.name) for row in evaluation.rows]
        return evaluation


def make_method(name):
    return Toy()
'''


@pytest.mark.slow
def test_a_toy_method_from_a_temporary_module_runs_through_planning_training_and_report(
    tmp_path: Path,
):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "toy_method.py").write_text(textwrap.dedent(TOY_MODULE))
    config = tiny_config(
        tmp_path,
        methods=["toy_mean", "mean"],
        method_modules=["toy_method"],
        hparams={"toy_mean": {"steps": 3}},
    )
    spec = yaml.safe_load(config.read_text())
    spec["datasets"]["synthetic"]["modalities"] = ["calcium"]
    config.write_text(yaml.safe_dump(spec))
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), env.get("PYTHONPATH", "")])
    base = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory",
            str(tmp_path), "--cores", "2", "--configfile", str(config)]  # fmt: skip

    def snakemake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env)

    bad = tmp_path / "bad.yaml"
    bad_spec = {**spec, "hparams": {"toy_mean": {"stepz": 3}}, "results": "bad"}
    bad.write_text(yaml.safe_dump(bad_spec))
    refused = subprocess.run([*base[:-1], str(bad), "-n"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "hparams.toy_mean" in refused.stderr + refused.stdout
    assert "stepz" in refused.stderr + refused.stdout

    plan = snakemake("-n")
    assert plan.returncode == 0, plan.stderr[-4000:]
    for rule in ("pretrain", "finetune", "evaluate_baseline", "report"):
        assert f"rule {rule}:" in plan.stdout, rule
    run = snakemake()
    assert run.returncode == 0, run.stderr[-6000:]
    results = tmp_path / "results" / "synthetic"
    toy_run = "toy_mean/calcium/tiny/seed0"
    log = pd.read_csv(results / "pretrain" / toy_run / "train_log.csv")
    assert len(log) == 3 and log["loss"].is_monotonic_decreasing
    assert (results / "eval" / toy_run / "metrics.json").exists()
    metrics = pd.read_csv(results / "report" / "metrics.csv")
    toy = metrics[metrics["method"] == "toy_mean"]
    mean = metrics[metrics["method"] == "mean"]
    assert len(toy) > 0 and set(toy["task"]) == {"forecasting"}
    merged = toy.merge(mean, on=["session", "task", "metric"], suffixes=("_toy", "_mean"))
    assert len(merged) == len(toy)
    assert (merged["value_toy"] - merged["value_mean"]).abs().max() < 1e-9
    assert "toy_mean" in (results / "report" / "index.html").read_text()


def test_a_method_module_that_freezes_the_vocabulary_is_named(tmp_path):
    (tmp_path / "eager_method.py").write_text(
        "from neurossl import names  # noqa: F401  (too early: the vocabulary freezes)\n"
        "from neurossl.catalog import MethodSpec\n"
        "METHODS = (MethodSpec('eager', __name__, ('calcium',),\n"
        "           'neurossl.methods.hparam_models:BaselineHParams', fitted=True),)\n"
    )
    code = "from neurossl import catalog; catalog.load_method_modules(['eager_method'])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "methods ['eager'] were declared after neurossl.names was imported" in result.stderr
