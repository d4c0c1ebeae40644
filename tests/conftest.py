"""Make tests/ importable (shared helpers), skip GPU tests without a GPU, bring up the
test SLURM cluster where its client is installed, and run the embedded default workflow
once per test session for every test file that reads it."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Importable once the folder is on the path (above).
from slurm_cluster import ClusterUnavailable, start_cluster
from workflow_helpers import REPO, run_snakemake


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests, with a reason, where no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def slurm_controller_answers() -> None:
    """Where SLURM's client is installed, its controller is up before any workflow runs.

    snakemake-executor-plugin-slurm runs ``scontrol show config`` at every Snakemake start;
    with the client installed and no controller reachable (the test cluster's daemons
    not running), that call waits 9 s before failing, in each of the suite's workflow runs.
    Starting tests/slurm_cluster.py's cluster, which the SLURM tests start anyway, takes
    about a second. Hosts without the client are left alone, and so are hosts where the
    cluster cannot be started here (no root, a SLURM set-up of their own); test_slurm.py
    reports those.
    """
    if shutil.which("sinfo") is None:
        return
    try:
        start_cluster()
    except ClusterUnavailable:
        return
    except Exception as error:  # a speed-up only: test_slurm.py shows the fault itself
        warnings.warn(f"test SLURM cluster not started: {error}", stacklevel=1)


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
