"""Choose fine-tuning hyper-parameters on validation windows of seeds no report uses.

Reported numbers come from the test windows of the configured seeds, so settings must be
chosen elsewhere. Each candidate setting ("variant") is a config overlay on top of the
user's configs: seeds outside the report (default 3 and 4), ``evaluation_split: valid``,
the variant's keys under ``hparams.<method>``, and its own results root. Snakemake runs
the workflow once per variant; the methods' scores in the report's ``metrics.csv`` are
kept per variant, and per method the variant with the best mean score is chosen. Each
method is tuned on its own scores, so no method gets settings chosen for another.

The variants share one results root, so Snakemake reruns only what a variant changes:
a variant of fine-tuning keys retrains fine-tuning and evaluation, never pretraining
(a variant must therefore not change pretraining keys if that sharing is wanted).

Usage::

    python -m neurossl.selection --configfile config/config.yaml config/protocol.yaml \\
        --methods mtm ndt scratch_ndt --metric bps --tasks co_smoothing inter_region \\
        --variants '{"a": {"stitch_steps": 40}, "b": {"stitch_steps": 120}}' \\
        --out results/selection -- --cores all

A variant already scored with the same overlay is not run again, so a second call with
more variants (or after an interruption) runs only what is new.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from neurossl.atomic import write_text

#: Subfolder of ``--out`` holding the workflow's outputs, shared by every variant.
RUNS_DIR = "runs"


def overlay(
    methods: Sequence[str], seeds: Sequence[int], variant: dict, out: Path
) -> dict[str, object]:
    """The config overlay that runs ``variant`` of every method on validation windows."""
    return {
        "results": str((out / RUNS_DIR).resolve()),
        "seeds": [int(s) for s in seeds],
        "methods": list(methods),
        "evaluation_split": "valid",
        "hparams": {method: dict(variant) for method in methods},
    }


def snakemake_command(
    configfiles: Sequence[Path], overlay_file: Path, snakefile: Path, extra: Sequence[str]
) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
        "--configfile", *map(str, configfiles), str(overlay_file), *extra,
    ]  # fmt: skip


def run_variant(
    name: str,
    settings: dict[str, object],
    configfiles: Sequence[Path],
    out: Path,
    snakefile: Path,
    extra: Sequence[str],
) -> pd.DataFrame:
    """Run the workflow with one variant's overlay; its validation rows (``metrics.csv``)."""
    home = out / "variants" / name
    scored, record = home / "metrics.csv", home / "overlay.yaml"
    text = yaml.safe_dump(settings, sort_keys=True)
    if not (scored.exists() and record.exists() and record.read_text() == text):
        write_text(home / "run.yaml", text)
        command = snakemake_command(configfiles, home / "run.yaml", snakefile, extra)
        log = home / "snakemake.log"
        with log.open("w") as handle:
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
        if done.returncode:
            raise RuntimeError(
                f"variant {name!r}: snakemake failed (exit {done.returncode}); see {log}"
            )
        _check_validation_split(out / RUNS_DIR, name)
        reports = sorted((out / RUNS_DIR).glob("*/report/metrics.csv"))
        if not reports:
            raise FileNotFoundError(
                f"variant {name!r}: no report/metrics.csv under {out / RUNS_DIR}"
            )
        frames = [pd.read_csv(path) for path in reports]
        write_text(scored, pd.concat(frames, ignore_index=True).to_csv(index=False))
        write_text(record, text)
    rows = pd.read_csv(scored)
    return rows[rows["method"].isin(settings["methods"])].assign(variant=name)  # type: ignore[arg-type]


def _check_validation_split(runs: Path, variant: str) -> None:
    """Selection must never see test windows: every evaluation says which split it scored."""
    for path in sorted(runs.glob("*/eval/**/metrics.json")):
        split = json.loads(path.read_text()).get("split")
        if split != "valid":
            raise ValueError(f"variant {variant!r}: {path} scored {split!r} windows, not 'valid'")


def run_selection(
    configfiles: Sequence[Path],
    methods: Sequence[str],
    seeds: Sequence[int],
    variants: dict[str, dict],
    out: Path,
    snakefile: Path = Path("workflow/Snakefile"),
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    """Run every variant (one Snakemake call each); the validation rows of all of them."""
    frames = [
        run_variant(name, overlay(methods, seeds, variant, out), configfiles, out, snakefile, extra)
        for name, variant in variants.items()
    ]
    return pd.concat(frames, ignore_index=True)


def summarise(rows: pd.DataFrame, tasks: Sequence[str], metric: str) -> pd.DataFrame:
    """Mean validation score per (method, variant, task) over seeds and sessions, the mean
    over tasks (``score``), and whether the variant is the method's choice."""
    chosen = rows[(rows["metric"] == metric) & rows["task"].isin(tasks)]
    absent = sorted(set(tasks) - set(chosen["task"]))
    if absent:
        raise ValueError(f"no {metric!r} rows for task(s) {absent}; pick tasks that report it")
    per_seed = chosen.groupby(["method", "variant", "task", "seed"])["value"].mean()
    table = per_seed.groupby(["method", "variant", "task"]).mean().unstack("task")
    table["score"] = table[list(tasks)].mean(axis=1)
    best = table.groupby(level="method")["score"].transform("max")
    table["chosen"] = table["score"] == best
    return table.reset_index()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Arguments after -- go to snakemake (e.g. --cores all).",
    )
    parser.add_argument("--configfile", nargs="+", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--tasks", nargs="+", required=True, help="tasks whose --metric scores")
    parser.add_argument("--metric", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--variants", required=True, help="JSON: variant -> hparam overrides")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--snakefile", type=Path, default=Path("workflow/Snakefile"))
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    variants = json.loads(args.variants)
    if not isinstance(variants, dict) or not variants:
        raise ValueError("--variants must be a non-empty JSON object of variant -> hparams")
    extra = [a for a in args.snakemake_args if a != "--"]
    rows = run_selection(
        args.configfile, args.methods, args.seeds, variants, args.out, args.snakefile, extra
    )
    table = summarise(rows, args.tasks, args.metric)
    write_text(args.out / "validation_rows.csv", rows.to_csv(index=False))
    write_text(args.out / "selection.csv", table.to_csv(index=False, float_format="%.4f"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
