"""The whole DAG through the real snakemake CLI on a tiny config in a temp dir."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from workflow_helpers import REPO, run_snakemake, tiny_config

pytestmark = pytest.mark.slow


def test_lint_is_clean(tmp_path):
    config = tiny_config(tmp_path)
    result = run_snakemake(tmp_path, "--lint", configfile=config, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typo_in_config_key_is_named(tmp_path):
    config = tiny_config(tmp_path, seedz=[0])
    result = run_snakemake(tmp_path, "-n", configfile=config, check=False)
    assert result.returncode != 0
    assert "seedz" in result.stdout + result.stderr


def test_wrong_type_in_config_is_named(tmp_path):
    path = tiny_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["datasets"]["synthetic"]["synthetic"]["n_units"] = "many"
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "-n", configfile=path, check=False)
    assert result.returncode != 0
    assert "n_units" in result.stdout + result.stderr or "many" in result.stdout + result.stderr


def test_default_config_dry_run_plans_without_importing_torch(tmp_path):
    """Every snakemake call and every SLURM job reads the workflow; torch would add ~3 s,
    scipy.stats or scipy.signal about 1 s each."""
    config = REPO / "config" / "config.yaml"
    result = run_snakemake(tmp_path, "-n", configfile=config, python_flags=("-X", "importtime"))
    imported = re.findall(r"^import time:.*\|\s*([\w.]+)$", result.stderr, re.MULTILINE)
    assert "snakemake" in imported
    for heavy in ("torch", "scipy.stats", "scipy.signal", "sklearn", "matplotlib"):
        assert heavy not in imported, f"planning the workflow imported {heavy}"


def test_data_slice_runs_and_rerun_does_nothing(tmp_path):
    config = tiny_config(tmp_path)
    run_snakemake(tmp_path, configfile=config)
    results = tmp_path / "results" / "synthetic"
    sessions = sorted(p.name for p in (results / "sessions").glob("*.h5"))
    assert sessions == [
        "sub-01_ses-01.calcium.h5",
        "sub-01_ses-01.spikes.h5",
        "sub-02_ses-01.calcium.h5",
        "sub-02_ses-01.spikes.h5",
    ]
    splits = json.loads((results / "splits.json").read_text())
    assert splits["sessions"] == {"pretrain": ["sub-01_ses-01"], "heldout": ["sub-02_ses-01"]}
    summary = json.loads((results / "report" / "summary" / "dataset_summary.json").read_text())
    assert summary["subjects"] == ["sub-01", "sub-02"]
    for name in ("regions.png", "activity_distributions.png", "predictability.png"):
        assert (results / "report" / "summary" / name).read_bytes()[:4] == b"\x89PNG"
    for stage in ("synthesize", "preprocess", "split"):
        assert any((results / "benchmarks" / stage).iterdir())
        assert any((results / "logs" / stage).iterdir())
    again = run_snakemake(tmp_path, configfile=config)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("name", ["ibl_repeated_site", "allen_visual_coding"])
def test_real_dataset_configs_parse_and_validate_offline(tmp_path, name):
    result = run_snakemake(tmp_path, "-n", configfile=REPO / "config" / f"{name}.yaml")
    assert "dandi_manifest" in result.stdout
