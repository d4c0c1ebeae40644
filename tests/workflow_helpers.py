"""Run the real workflow through the snakemake CLI on tiny configs in temp dirs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"


def tiny_dataset(**overrides: Any) -> dict[str, Any]:
    """A synthetic dataset small enough for a whole-DAG run: 2 animals of one session,
    30 trials, 16 units and 16 ROIs; ``overrides`` replace top-level keys."""
    spec: dict[str, Any] = {
        "source": "synthetic",
        "modalities": ["spikes", "calcium"],
        "synthetic": {
            "seed": 0,
            "n_subjects": 2,
            "sessions_per_subject": 1,
            "n_trials": 30,
            "n_units": 16,
            "n_rois": 16,
        },
        "split": {"seed": 0, "n_heldout_subjects": 1},
        "tasks": {"spikes": ["co_smoothing"], "calcium": ["forecasting"]},
    }
    return spec | overrides


def tiny_config(tmp_path: Path, **overrides: Any) -> Path:
    """A config small enough for a whole-DAG run in a test; returns its path."""
    config: dict[str, Any] = {
        "results": "results",
        "resources": "resources",
        "device": "cpu",
        "seeds": [0],
        "sizes": ["tiny"],
        "methods": [],
        "hparams": {},
        "compute": {"gpus": 0},
        "datasets": {"synthetic": tiny_dataset()},
    }
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    configfile: Path | Sequence[Path] | None = None,
    snakefile: Path = SNAKEFILE,
    python_flags: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``snakemake -s <repo>/workflow/Snakefile --directory workdir ...`` via this Python.

    ``snakefile`` runs another copy of the workflow on the same results.

    Several config files are merged in order, as ``--configfile a b`` does; they go last
    so that the option's list of values cannot swallow a target given in ``args``.
    ``python_flags`` go to the interpreter (``-X importtime``).
    """
    command = [
        sys.executable,
        *python_flags,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "--directory",
        str(workdir),
        "--cores",
        "2",
    ]
    command += args
    if configfile is not None:
        files = [configfile] if isinstance(configfile, Path) else list(configfile)
        command += ["--configfile", *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode})\nstdout:\n{result.stdout[-4000:]}\n"
            f"stderr:\n{result.stderr[-8000:]}"
        )
    return result
