"""Benchmark tables: mean and CI over seeds per method and task, best marked, paired gaps.

Protocol (docs/results/README.md): a run's value for a (task, metric) is first averaged
over the held-out sessions it was scored on, then summarised over training seeds with a
Student-t interval. Sessions are pooled first because seeds, not sessions, are the
replicates of a training procedure; sessions are fixed test material shared by all.

The oracle is a ceiling, not a competitor: it is shown but never marked best. A cell is
"missing" (runs were expected and are absent) or "not supported" (no run of the method
reported the task) — the two are never merged, and a missing cell is never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from neurossl import catalog
from neurossl.eval.stats import mean_ci, paired_difference_ci, relative_gain_ci
from neurossl.names import (
    ACTIVITY_TASKS,
    BEHAVIOR_PREFIX,
    FROZEN_METRICS,
    METHODS,
    ORACLE,
    PRETRAINED_METHODS,
    SIMPLE_BASELINES,
    higher_is_better,
    is_decoding_task,
    relative_gain_meaningful,
)
from neurossl.report.collect import Collection

#: Each pretrained method is compared with the same backbone trained from scratch.
SCRATCH_OF = {s.name: s.scratch for s in catalog.methods() if s.scratch}
#: Ablations a method's claim is about (POYO-SSL: predictable-only pretraining beats
#: pretraining on all neurons and on the unpredictable ones).
ABLATIONS_OF = {s.name: s.ablations for s in catalog.methods() if s.ablations}

OK, MISSING, NOT_SUPPORTED = "ok", "missing", "not_supported"
RUN_KEYS = ["method", "modality", "size", "task", "metric"]


@dataclass(frozen=True)
class Family:
    """A group of tasks scored with the same metrics on one modality: one table."""

    key: str
    title: str
    modality: str
    includes: Callable[[str], bool]
    metrics: tuple[str, ...]

    def default_metric(self, task: str) -> str:
        """The column shown for a configured task that no run reported at all."""
        if task.startswith(BEHAVIOR_PREFIX):
            return "r2"
        return self.metrics[0]


FAMILIES = (
    Family(
        "activity_spikes",
        "Activity prediction, spiking data",
        "spikes",
        lambda t: t in ACTIVITY_TASKS,
        ("bps", "poisson_d2", "poisson_d2_pooled"),
    ),
    Family(
        "activity_calcium",
        "Activity prediction and forecasting, calcium data",
        "calcium",
        lambda t: t in ACTIVITY_TASKS,
        ("r2", "pearson", "mse", "mae"),
    ),
    Family(
        "decoding_spikes",
        "Decoding, spiking data",
        "spikes",
        is_decoding_task,
        ("bacc", "acc", "r2", *FROZEN_METRICS),
    ),
    Family(
        "decoding_calcium",
        "Decoding, calcium data",
        "calcium",
        is_decoding_task,
        ("bacc", "acc", "r2", *FROZEN_METRICS),
    ),
)


@dataclass(frozen=True)
class Cell:
    """One (method, size) x (task, metric) entry of a table."""

    state: str
    mean: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    n_seeds: int = 0
    #: Expected runs (whole file or this task) that are absent.
    n_missing: int = 0
    best: bool = False


@dataclass(frozen=True)
class Table:
    family: Family
    columns: tuple[tuple[str, str], ...]
    rows: tuple[tuple[str, str], ...]
    cells: dict[tuple[tuple[str, str], tuple[str, str]], Cell]
    #: Methods with expected runs on the modality but nothing in this family.
    not_supported: tuple[str, ...] = ()


@dataclass(frozen=True)
class Difference:
    """Paired improvement of a method over a reference on shared seeds.

    ``mean``/``lo``/``hi`` are signed so that positive always means "better than the
    reference" (a - b for higher-is-better metrics, b - a for errors).
    """

    reference: str
    mean: float
    lo: float
    hi: float
    n: int
    #: The same improvement per seed divided by the reference's |value| (mean and CI):
    #: the "x % over scratch" papers quote, for accuracies and errors only (NaN else).
    relative: float = math.nan
    relative_lo: float = math.nan
    relative_hi: float = math.nan


@dataclass(frozen=True)
class DifferenceTable:
    family: Family
    columns: tuple[tuple[str, str], ...]
    #: (method, size, "scratch" | "best baseline" | an ablation's name) rows.
    rows: tuple[tuple[str, str, str], ...]
    cells: dict[tuple[tuple[str, str, str], tuple[str, str]], Difference] = field(
        default_factory=dict
    )


def seed_values(metrics: pd.DataFrame) -> pd.DataFrame:
    """One value per (method, modality, size, task, metric, seed): mean over sessions.

    NaN in any session makes the seed's value NaN (undefined scores are not averaged
    away, they are shown).
    """
    keys = [*RUN_KEYS, "seed"]
    if metrics.empty:
        return pd.DataFrame(columns=[*keys, "value"])
    pooled = metrics.groupby(keys, sort=False)["value"].agg(lambda v: v.mean(skipna=False))
    return pooled.reset_index()


def method_order(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def build_table(
    collection: Collection,
    per_seed: pd.DataFrame,
    family: Family,
    metrics_filter: Sequence[str],
    confidence: float,
) -> Table:
    """The table of one family: every expected (method, size) of its modality."""
    data = per_seed[
        (per_seed["modality"] == family.modality)
        & per_seed["task"].map(family.includes)
        & per_seed["metric"].isin([m for m in family.metrics if m in metrics_filter])
    ]
    columns = _columns(collection, data, family, metrics_filter)
    runs = [r for r in collection.expected if r.modality == family.modality]
    row_keys = sorted({(r.method, r.size) for r in runs}, key=lambda k: (method_order(k[0]), k))
    missing = collection.missing[collection.missing["modality"] == family.modality]
    groups = {key: part for key, part in data.groupby(["method", "size", "task", "metric"])}
    cells: dict = {}
    for row in row_keys:
        for column in columns:
            part = groups.get((*row, *column))
            n_missing = _count_missing(missing, row, column[0])
            cells[(row, column)] = _cell(part, n_missing, confidence)
    rows, not_supported = [], []
    for row in row_keys:
        if all(cells[(row, c)].state == NOT_SUPPORTED for c in columns):
            not_supported.append(f"{row[0]} ({row[1]})")
            for c in columns:
                del cells[(row, c)]
        else:
            rows.append(row)
    _mark_best(cells, rows, columns)
    return Table(family, tuple(columns), tuple(rows), cells, tuple(not_supported))


def _columns(
    collection: Collection, data: pd.DataFrame, family: Family, metrics_filter: Sequence[str]
) -> list[tuple[str, str]]:
    """(task, metric) columns: configured tasks first (config order), metrics in family order."""
    configured = [t for t in collection.tasks.get(family.modality, ()) if family.includes(t)]
    reported = sorted(set(data["task"]) - set(configured))
    columns = []
    for task in [*configured, *reported]:
        present = set(data.loc[data["task"] == task, "metric"])
        chosen = [m for m in family.metrics if m in present]
        if not chosen:
            # A configured task nobody reported stays visible, as an all-missing column.
            fallback = family.default_metric(task)
            chosen = [fallback] if fallback in metrics_filter else []
        columns += [(task, m) for m in chosen]
    return columns


def _count_missing(missing: pd.DataFrame, row: tuple[str, str], task: str) -> int:
    hit = (missing["method"] == row[0]) & (missing["size"] == row[1])
    return int((hit & missing["task"].isin(["", task])).sum())


def _cell(part: pd.DataFrame | None, n_missing: int, confidence: float) -> Cell:
    if part is None or part.empty:
        return Cell(MISSING if n_missing else NOT_SUPPORTED, n_missing=n_missing)
    mean, lo, hi = mean_ci(part["value"].to_numpy(), confidence)
    return Cell(OK, mean, lo, hi, n_seeds=len(part), n_missing=n_missing)


def _mark_best(cells: dict, rows: list[tuple[str, str]], columns: list[tuple[str, str]]) -> None:
    for column in columns:
        contenders = [
            r
            for r in rows
            if r[0] != ORACLE
            and cells[(r, column)].state == OK
            and math.isfinite(cells[(r, column)].mean)
        ]
        if not contenders:
            continue
        sign = 1.0 if higher_is_better(column[1]) else -1.0
        top = max(sign * cells[(r, column)].mean for r in contenders)
        for r in contenders:
            if sign * cells[(r, column)].mean == top:
                old = cells[(r, column)]
                cells[(r, column)] = Cell(
                    old.state, old.mean, old.lo, old.hi, old.n_seeds, old.n_missing, best=True
                )


def build_differences(per_seed: pd.DataFrame, table: Table, confidence: float) -> DifferenceTable:
    """Each pretrained method vs its scratch backbone and the best simple baseline, and
    POYO-SSL also vs its data-diet ablations (:data:`ABLATIONS_OF`).

    The best simple baseline is chosen per column by its mean over seeds; differences
    use only the seeds both runs have (paired), so a missing seed shrinks n, visibly.
    """
    data = per_seed[per_seed["modality"] == table.family.modality]
    by_run = {
        key: dict(zip(part["seed"].astype(int), part["value"].astype(float), strict=True))
        for key, part in data.groupby(["method", "size", "task", "metric"])
    }
    rows: list[tuple[str, str, str]] = []
    cells: dict = {}
    for method, size in table.rows:
        if method not in PRETRAINED_METHODS:
            continue
        scratch = ("scratch",) if method in SCRATCH_OF else ()
        for label in (*scratch, "best baseline", *ABLATIONS_OF.get(method, ())):
            row = (method, size, label)
            for column in table.columns:
                if label == "scratch":
                    reference = (SCRATCH_OF[method], size)
                elif label == "best baseline":
                    reference = _best_baseline(table, column)
                else:
                    reference = (label, size)
                a = by_run.get((method, size, *column))
                b = by_run.get((*reference, *column)) if reference else None
                if a and b and set(a) & set(b):
                    cells[(row, column)] = paired_difference(
                        reference[0], a, b, column[1], confidence
                    )
            if any((row, c) in cells for c in table.columns):
                rows.append(row)
    return DifferenceTable(table.family, table.columns, tuple(rows), cells)


def _best_baseline(table: Table, column: tuple[str, str]) -> tuple[str, str] | None:
    candidates = [
        r
        for r in table.rows
        if r[0] in SIMPLE_BASELINES
        and table.cells[(r, column)].state == OK
        and math.isfinite(table.cells[(r, column)].mean)
    ]
    if not candidates:
        return None
    sign = 1.0 if higher_is_better(column[1]) else -1.0
    return max(candidates, key=lambda r: sign * table.cells[(r, column)].mean)


def paired_difference(
    reference: str, a: dict[int, float], b: dict[int, float], metric: str, confidence: float
) -> Difference:
    """``a`` (seed -> value) against ``reference``'s ``b`` on their shared seeds, signed so
    that positive means ``a`` is better."""
    mean, lo, hi, n = paired_difference_ci(a, b, confidence)
    relative = (math.nan, math.nan, math.nan)
    if relative_gain_meaningful(metric) and all(b[s] != 0 for s in a.keys() & b):
        relative = relative_gain_ci(a, b, confidence)[:3]
    if not higher_is_better(metric):
        mean, lo, hi = -mean, -hi, -lo
        relative = (-relative[0], -relative[2], -relative[1])
    return Difference(reference, mean, lo, hi, n, *relative)


def missing_table(collection: Collection) -> pd.DataFrame:
    """The missing runs and tasks, ordered by method as in the tables."""
    missing = collection.missing.copy()
    missing["_order"] = missing["method"].map(method_order)
    return missing.sort_values(["_order", "method", "modality", "size", "seed", "task"]).drop(
        columns="_order"
    )
