"""Where a report's numbers came from: config and its hash, code, software, machine, cost.

A benchmark number is only comparable to another when both were produced by the same
config, code and software; the report carries all of them so a reader can check that
without access to the machine that ran it. Cost (wall time, peak memory) per job comes
from the files Snakemake writes for every rule's ``benchmark:`` directive.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

#: Distributions whose versions change results or their speed.
PACKAGES = (
    "neurossl",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "h5py",
    "pynwb",
    "snakemake",
    "matplotlib",
)
BENCHMARK_COLUMNS = ("stage", "job", "seconds", "max_rss_mb", "mean_load", "cpu_time_s")


@dataclass(frozen=True)
class Provenance:
    config_yaml: str
    config_sha256: str
    git_commit: str
    packages: dict[str, str]
    device: str
    python: str
    platform: str
    #: BENCHMARK_COLUMNS, one row per job with a benchmark file.
    benchmarks: pd.DataFrame


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys), so key order is irrelevant."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def git_commit(directory: str | Path) -> str:
    """HEAD of the checkout holding ``directory``, "+dirty" when it has local edits."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if status else head


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_name() -> str:
    """The GPU torch would use, else the CPU model (what the timings were measured on)."""
    try:
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            return f"{torch.cuda.get_device_name(0)} (x{count})"
    except ImportError:
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()}"
    return f"CPU: {platform.processor() or platform.machine()}"


def read_benchmarks(benchmarks_dir: str | Path) -> pd.DataFrame:
    """One row per job from ``{stage}/{job}.tsv`` Snakemake benchmark files.

    Snakemake writes one line per repeat; the time is the mean and the memory the
    maximum over repeats. "NA"/"-" entries (e.g. memory on macOS) become NaN.
    """
    rows = []
    for path in sorted(Path(benchmarks_dir).glob("*/*.tsv")):
        table = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
        if "s" not in table or "max_rss" not in table:
            raise ValueError(f"{path}: not a Snakemake benchmark file (needs 's' and 'max_rss')")
        rows.append(
            (
                path.parent.name,
                path.stem,
                float(pd.to_numeric(table["s"], errors="coerce").mean()),
                float(pd.to_numeric(table["max_rss"], errors="coerce").max()),
                float(pd.to_numeric(table.get("mean_load"), errors="coerce").mean())
                if "mean_load" in table
                else float("nan"),
                float(pd.to_numeric(table.get("cpu_time"), errors="coerce").mean())
                if "cpu_time" in table
                else float("nan"),
            )
        )
    return pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))


def gather(
    config: dict[str, Any], workflow_dir: str | Path, benchmarks_dir: str | Path
) -> Provenance:
    """Provenance of a report; the config is normalised to plain JSON types first."""
    config = json.loads(json.dumps(config, default=str))
    return Provenance(
        config_yaml=yaml.safe_dump(config, sort_keys=True, default_flow_style=False),
        config_sha256=config_hash(config),
        git_commit=git_commit(workflow_dir),
        packages=package_versions(),
        device=device_name(),
        python=platform.python_version(),
        platform=platform.platform(),
        benchmarks=read_benchmarks(benchmarks_dir),
    )
