"""Every metrics.json of a dataset in one tidy table, checked against the expected runs.

A benchmark table that silently averages whatever files happen to exist can show a
method as "best" because its worst seed crashed. So collection starts from the grid of
runs the workflow was asked for (the metrics.json paths the rule expects) and reports
what is absent at two levels:

- a *run* is missing when its expected metrics.json does not exist;
- a *task* is missing from a run when the run's file exists but has no row for a task
  that the same method reported in another run of that modality (so the method does
  support it). A task no run of a method ever reported is "not run / not supported".

The modality of a run comes from its path (``eval/{method}/{modality}/{size}/seed{s}``),
not from the row, because simple baselines run on both modalities of a dataset.

Seed-independent baselines (:data:`neurossl.names.SEED_INDEPENDENT_METHODS`) run once;
:func:`repeat_seed_independent` gives their rows to every configured seed before
per-seed statistics, so paired comparisons against them keep all seeds. metrics.csv
keeps the rows as they were written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurossl.atomic import atomic_path
from neurossl.names import EVAL_SPLITS, MODALITIES, SEED_INDEPENDENT_METHODS, check_method

#: metrics.csv columns, in this order (README.md, "What you get").
TIDY_COLUMNS = ("dataset", "session", "method", "size", "task", "metric", "seed", "value")
#: Columns of the missing-runs table.
MISSING_COLUMNS = ("method", "modality", "size", "seed", "task", "reason")

_RUN_PATH = re.compile(
    r"eval/(?P<method>[a-z0-9_]+)/(?P<modality>[a-z]+)/(?P<size>[a-z0-9_]+)/"
    r"seed(?P<seed>[0-9]+)/metrics\.json$"
)


@dataclass(frozen=True, order=True)
class RunKey:
    """One (method, modality, size, seed) training run of a dataset."""

    method: str
    modality: str
    size: str
    seed: int

    def relative_dir(self) -> Path:
        """The run's folder below a stage directory (eval/, finetune/, pretrain/)."""
        return Path(self.method, self.modality, self.size, f"seed{self.seed}")


@dataclass(frozen=True)
class Collection:
    """The tidy metrics of a dataset plus what was expected but is not there."""

    #: TIDY_COLUMNS plus ``modality`` (from the run path), one metric value per row.
    metrics: pd.DataFrame
    #: MISSING_COLUMNS; ``task`` is "" for a run whose whole file is absent.
    missing: pd.DataFrame
    #: Every expected run, present or not.
    expected: tuple[RunKey, ...]
    #: The tasks configured per modality, in config order.
    tasks: dict[str, tuple[str, ...]]
    #: The windows every present metrics.json was scored on ("test", or "valid" for a
    #: hyper-parameter selection run; "" when none is present).
    split: str = ""


def parse_run_path(path: str | Path) -> RunKey:
    """The run a metrics.json path belongs to; a path off the layout is an error."""
    match = _RUN_PATH.search(Path(path).as_posix())
    if match is None:
        raise ValueError(
            f"{path}: not a metrics.json of the layout "
            "eval/{method}/{modality}/{size}/seed{seed}/metrics.json"
        )
    modality = match["modality"]
    if modality not in MODALITIES:
        raise ValueError(f"{path}: unknown modality {modality!r}; expected {MODALITIES}")
    return RunKey(check_method(match["method"]), modality, match["size"], int(match["seed"]))


def read_metrics_file(path: str | Path, run: RunKey, dataset: str) -> tuple[pd.DataFrame, str]:
    """The rows of one metrics.json as a tidy frame, and the split they were scored on.

    A file without ``split`` predates the field, when every evaluation scored test windows.
    A malformed file names the fault.
    """
    try:
        payload = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f'{path}: expected {{"rows": [...]}}, got {type(payload).__name__}')
    split = payload.get("split", "test")
    if split not in EVAL_SPLITS:
        raise ValueError(f"{path}: split is {split!r}; expected one of {EVAL_SPLITS}")
    for i, row in enumerate(rows):
        absent = [c for c in TIDY_COLUMNS if not isinstance(row, dict) or c not in row]
        if absent:
            raise ValueError(f"{path}: rows[{i}] lacks field(s) {absent}")
        for field, want in (("method", run.method), ("size", run.size), ("dataset", dataset)):
            if row[field] != want:
                raise ValueError(f"{path}: rows[{i}].{field} is {row[field]!r}, path says {want!r}")
        if int(row["seed"]) != run.seed:
            raise ValueError(f"{path}: rows[{i}].seed is {row['seed']!r}, path says {run.seed}")
        if row["value"] is None:  # json has no NaN literal in strict writers
            row["value"] = math.nan
    frame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    frame["modality"] = run.modality
    return frame, split


def collect(
    dataset: str,
    metrics_paths: Iterable[str | Path],
    tasks: dict[str, Sequence[str]],
) -> Collection:
    """Read every expected metrics.json that exists and list what is missing.

    ``metrics_paths`` is the full expected grid (the rule's input list), whether or not
    each file exists; ``tasks`` maps modality -> tasks configured for the dataset.
    """
    expected = {parse_run_path(path): Path(path) for path in metrics_paths}
    frames, missing, present, splits = [], [], [], {}
    for run, path in sorted(expected.items()):
        if path.exists():
            frame, split = read_metrics_file(path, run, dataset)
            frames.append(frame)
            splits.setdefault(split, path)
            present.append(run)
        else:
            missing.append((*_run_fields(run), "", f"metrics.json absent: {path}"))
    metrics = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*TIDY_COLUMNS, "modality"])
    )
    if len(splits) > 1:
        raise ValueError(
            "metrics files were scored on different splits, which a report must not mix: "
            + "; ".join(f"{split} (e.g. {path})" for split, path in sorted(splits.items()))
        )
    metrics = tidy_dtypes(metrics)
    missing += _missing_tasks(metrics, present)
    return Collection(
        metrics=metrics,
        missing=pd.DataFrame(missing, columns=list(MISSING_COLUMNS)),
        expected=tuple(sorted(expected)),
        tasks={m: tuple(t) for m, t in tasks.items()},
        split=next(iter(splits), ""),
    )


def repeat_seed_independent(metrics: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """Rows of seed-independent methods copied to every seed in ``seeds`` they lack."""
    fixed = metrics["method"].isin(SEED_INDEPENDENT_METHODS)
    copies = []
    for (_method, _modality, _size), part in metrics[fixed].groupby(["method", "modality", "size"]):
        source = part[part["seed"] == part["seed"].min()]
        for seed in sorted(set(seeds) - set(part["seed"])):
            copies.append(source.assign(seed=seed))
    return tidy_dtypes(pd.concat([metrics, *copies], ignore_index=True)) if copies else metrics


def _run_fields(run: RunKey) -> tuple[str, str, str, int]:
    return run.method, run.modality, run.size, run.seed


def _missing_tasks(metrics: pd.DataFrame, present: list[RunKey]) -> list[tuple]:
    """Tasks a method reported in some run of a modality but not in this (existing) run."""
    if metrics.empty:
        return []
    supported = metrics.groupby(["method", "modality"])["task"].agg(lambda s: sorted(set(s)))
    reported = metrics.groupby(["method", "modality", "size", "seed"])["task"].agg(set)
    out = []
    for run in present:
        have = reported.get(_run_fields(run), set())
        for task in supported.get((run.method, run.modality), []):
            if task not in have:
                out.append(
                    (*_run_fields(run), task, "task absent from metrics.json; other runs have it")
                )
    return out


def tidy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Strings as str, seed as int64, value as float64: one schema whatever the input."""
    frame = frame.copy()
    for column in ("dataset", "session", "method", "size", "task", "metric", "modality"):
        if column in frame:
            frame[column] = frame[column].astype(str)
    frame["seed"] = frame["seed"].astype("int64")
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype("float64")
    return frame


def write_tidy_csv(metrics: pd.DataFrame, path: str | Path) -> None:
    """metrics.csv: exactly TIDY_COLUMNS, sorted, NaN written as "nan" (never dropped)."""
    ordered = metrics.loc[:, list(TIDY_COLUMNS)].sort_values(
        ["method", "size", "task", "metric", "seed", "session"], kind="stable"
    )
    with atomic_path(path) as tmp:
        ordered.to_csv(tmp, index=False, na_rep="nan")
