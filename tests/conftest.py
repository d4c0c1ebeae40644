"""Make tests/ importable (shared helpers), skip GPU tests without a GPU, and run the
embedded default workflow once per test session for every test file that reads it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Importable once the folder is on the path (above).
from workflow_helpers import REPO, run_snakemake


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests, with a reason, where no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``config/config.yaml`` run to the end, as ``make run`` runs it; its results folder.

    Session-scoped: the demo's own tests (test_default_workflow.py) and the
    recomputation of every metrics row (test_recompute.py) read the same run, which is
    the suite's longest single workflow run after the protocol's.
    """
    workdir = tmp_path_factory.mktemp("default_workflow")
    run_snakemake(workdir, configfile=REPO / "config" / "config.yaml")
    return workdir / "results" / "synthetic"
