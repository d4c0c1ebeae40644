"""Rebuild the report of a finished demo run and print what the report job costs.

    python benchmarks/report_build.py RESULTS_DATASET_DIR [--workers 2] [--out DIR]

RESULTS_DATASET_DIR is a finished run's ``results/<dataset>`` (the default workflow's is
``results/synthetic``); the config is ``config/config.yaml`` beside it. The report is the
workflow's last job and runs alone, so its wall time adds to the workflow's one for one.
Prints the wall time, the CPU time of this process and of its worker processes, and
whether this process imported torch.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

from neurossl.report.build import ReportInputs, build_report


def report_inputs(dataset_dir: Path, config_path: Path) -> ReportInputs:
    """The inputs the report rule passes, found by their place in the results tree."""
    summary = dataset_dir / "report" / "summary"
    bwb = dataset_dir / "bwb" / "scores.csv"
    return ReportInputs(
        dataset=dataset_dir.name,
        config=yaml.safe_load(config_path.read_text()),
        metrics_paths=tuple(sorted(dataset_dir.glob("eval/*/*/*/*/metrics.json"))),
        dataset_dir=dataset_dir,
        workflow_dir=Path(__file__).resolve().parents[1] / "workflow",
        splits=dataset_dir / "splits.json",
        neuron_stats=dataset_dir / "neuron_stats.csv",
        summary_json=summary / "dataset_summary.json",
        summary_images={
            "Neurons per region": summary / "regions.png",
            "Activity distributions": summary / "activity_distributions.png",
        },
        tokenizer_reports=tuple(sorted(dataset_dir.glob("tokenizer/*/tokenizer_report.json"))),
        bwb_scores=bwb if bwb.exists() else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="the report rule's threads")
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="report_build_"))
    started = time.perf_counter()
    build_report(report_inputs(args.dataset_dir, args.config), out, workers=args.workers)
    wall = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"report of {args.dataset_dir} in {out}: wall {wall:.2f} s (imports excluded) | "
        f"this process {own.ru_utime + own.ru_stime:.2f} CPU-s | "
        f"workers {workers.ru_utime + workers.ru_stime:.2f} CPU-s | "
        f"torch imported here: {'torch' in sys.modules}"
    )


if __name__ == "__main__":
    main()
