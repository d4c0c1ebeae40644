"""Choose fine-tuning hyper-parameters on validation windows of seeds no report uses.

Reported numbers come from the test windows of the configured seeds, so settings must be
chosen elsewhere: this runs each candidate fine-tuning setting ("variant") on training
seeds outside the report (default 3 and 4), scores it on the *validation* windows of the
held-out sessions, and picks, per method, the variant with the best mean score. Each
method is tuned on its own scores, so no method gets settings chosen for another.

Pretraining runs once per (method, seed) with the method's base hparams; variants only
change fine-tuning and evaluation, so a variant must not touch pretraining keys.

Usage (on a finished workflow run, which provides the Session files and splits)::

    python -m neurossl.selection --dataset-dir results/synthetic \\
        --methods mtm ndt scratch_ndt --modality spikes --tasks co_smoothing inter_region \\
        --metric bps --variants '{"a": {"stitch_steps": 40}, "b": {"stitch_steps": 120}}' \\
        --out results/selection

Every stage is the rule's own entry point (``python -m neurossl.stages``), one process per
stage, two at a time, so a selection run trains exactly what the workflow would. A run
already scored with the same settings is not repeated, so a second call with more
variants (or after an interruption) trains only what is new.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurossl.atomic import write_text
from neurossl.job_env import one_thread_per_job
from neurossl.methods.registry import method_traits

#: Folder (beside the variants') of each (method, seed)'s shared pretraining.
PRETRAIN_DIR = "pretrain"


@dataclass(frozen=True)
class Run:
    """Where one (method, variant, seed) of a selection writes."""

    method: str
    variant: str
    seed: int
    out: Path
    size: str = "tiny"

    @property
    def directory(self) -> Path:
        return self.out / self.method / self.size / self.variant / f"seed{self.seed}"

    @property
    def pretrained(self) -> Path:
        return self.out / self.method / self.size / PRETRAIN_DIR / f"seed{self.seed}" / "model.pt"


def stage_command(
    stage: str,
    run: Run,
    dataset_dir: Path,
    modality: str,
    tasks: Sequence[str],
    hparams: dict,
) -> list[str]:
    """The ``neurossl.stages`` command line of one stage of one run."""
    sessions = sorted(str(p) for p in (dataset_dir / "sessions").glob(f"*.{modality}.h5"))
    if not sessions:
        raise FileNotFoundError(f"{dataset_dir / 'sessions'}: no *.{modality}.h5 Session files")
    command = [
        sys.executable, "-m", "neurossl.stages", stage,
        "--dataset", dataset_dir.name, "--method", run.method, "--modality", modality,
        "--size", run.size, "--seed", str(run.seed), "--device", "auto",
        "--tasks", *tasks, "--hparams", json.dumps(hparams),
        "--splits", str(dataset_dir / "splits.json"), "--sessions", *sessions,
    ]  # fmt: skip
    if stage == "pretrain":
        home = run.pretrained.parent
        extra = ["--model", str(run.pretrained), "--train-log", str(home / "train_log.csv"),
                 "--checkpoint-dir", str(home / "checkpoints")]  # fmt: skip
    elif stage == "finetune":
        extra = ["--pretrained", str(run.pretrained)] if method_traits(run.method).pretrains else []
        extra += ["--model", str(run.directory / "model.pt"),
                  "--train-log", str(run.directory / "train_log.csv"),
                  "--checkpoint-dir", str(run.directory / "checkpoints")]  # fmt: skip
    else:
        extra = ["--eval-split", "valid", "--finetuned", str(run.directory / "model.pt"),
                 "--metrics", str(run.directory / "metrics.json"),
                 "--predictions", str(run.directory / "predictions.npz")]  # fmt: skip
    return [*command, *extra]


def _execute(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    one_thread_per_job(env)  # one core per stage, as the workflow runs them
    with log.open("w") as handle:
        done = subprocess.run(
            command, stdout=handle, stderr=subprocess.STDOUT, check=False, env=env
        )
    if done.returncode:
        raise RuntimeError(f"stage failed (exit {done.returncode}); see {log}")


def run_selection(
    dataset_dir: Path,
    methods: Sequence[str],
    modality: str,
    tasks: Sequence[str],
    seeds: Sequence[int],
    base: dict[str, dict],
    variants: dict[str, dict],
    out: Path,
    size: str = "tiny",
    jobs: int = 2,
) -> pd.DataFrame:
    """Train and score every (method, variant, seed); the validation rows of all of them."""
    if PRETRAIN_DIR in variants:
        raise ValueError(f"variant {PRETRAIN_DIR!r} would share the pretraining folder")
    runs = [Run(m, v, s, out, size) for m in methods for v in variants for s in seeds]

    def pretrain(method: str, seed: int) -> None:
        run = Run(method, PRETRAIN_DIR, seed, out, size)
        if method_traits(method).pretrains and not run.pretrained.exists():
            command = stage_command("pretrain", run, dataset_dir, modality, tasks, base[method])
            _execute(command, run.pretrained.parent / "pretrain.log")

    def finetune_and_score(run: Run) -> None:
        hparams = base[run.method] | variants[run.variant]
        record = run.directory / "hparams.json"
        scored = (run.directory / "metrics.json").exists() and record.exists()
        if scored and json.loads(record.read_text()) == hparams:
            return  # scored in an earlier call with the same settings
        record.unlink(missing_ok=True)
        for stage in ("finetune", "evaluate"):
            command = stage_command(stage, run, dataset_dir, modality, tasks, hparams)
            _execute(command, run.directory / f"{stage}.log")
        write_text(record, json.dumps(hparams, sort_keys=True))

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda ms: pretrain(*ms), [(m, s) for m in methods for s in seeds]))
        list(pool.map(finetune_and_score, runs))
    frames = []
    for run in runs:
        payload = json.loads((run.directory / "metrics.json").read_text())
        if payload.get("split") != "valid":
            raise ValueError(f"{run.directory / 'metrics.json'}: not scored on validation windows")
        frames.append(pd.DataFrame(payload["rows"]).assign(variant=run.variant))
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--modality", required=True, choices=("spikes", "calcium"))
    parser.add_argument("--tasks", nargs="+", required=True, help="tasks the stages train")
    parser.add_argument("--score-tasks", nargs="+", help="tasks whose --metric is the score "
                        "(default: --tasks)")  # fmt: skip
    parser.add_argument("--metric", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--base", default="{}", help="JSON: method -> base hparams")
    parser.add_argument("--variants", required=True, help="JSON: variant -> hparam overrides")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    base = json.loads(args.base)
    variants = json.loads(args.variants)
    if not isinstance(variants, dict) or not variants:
        raise ValueError("--variants must be a non-empty JSON object of variant -> hparams")
    base = {m: dict(base.get(m, {})) for m in args.methods}
    rows = run_selection(
        args.dataset_dir, args.methods, args.modality, args.tasks, args.seeds, base,
        variants, args.out, args.size, args.jobs,
    )  # fmt: skip
    table = summarise(rows, args.score_tasks or args.tasks, args.metric)
    write_text(args.out / "validation_rows.csv", rows.to_csv(index=False))
    write_text(args.out / "selection.csv", table.to_csv(index=False, float_format="%.4f"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
