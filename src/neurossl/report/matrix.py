"""The report's headline: every pretraining objective on every modality, per task.

Rows are the objectives, read from the method table (:mod:`neurossl.catalog`): methods
that pretrain and are not another method's ablation, each with its ``objective`` text and
its ``scratch`` control. Columns are (modality, task, metric): a fixed core per modality
(the tasks every objective is compared on) followed by any other task the dataset
configures. Each cell is the mean and CI over seeds at the headline size, plus the paired
difference against the same backbone trained from scratch (positive = better).

Nothing is generic over what happens to exist: a cell with no value says why, so the
matrix keeps its shape as objectives gain modalities. States, in the order checked:

- ``not run``: the objective has no pairing with the modality in the catalog, the config
  does not run it on this dataset, or the task is not configured;
- ``missing``: runs or task rows were expected and are absent;
- ``not supported``: the runs exist but the method never reported the task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from neurossl import catalog
from neurossl.eval.stats import mean_ci
from neurossl.names import ACTIVITY_TASKS, BEHAVIOR_PREFIX, higher_is_better
from neurossl.report.collect import Collection
from neurossl.report.tables import (
    MISSING,
    NOT_SUPPORTED,
    OK,
    Cell,
    Difference,
    paired_difference,
)

NOT_RUN = "not_run"

#: The tasks every objective is compared on, per modality.
#: Calcium forecasting is scored by ``mae`` over the whole forecast window, i.e. the mean
#: over horizon steps (every step has the same number of frames and neurons).
CORE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "spikes": (
        ("co_smoothing", "bps"),
        ("forecasting", "bps"),
        ("inter_region", "bps"),
        ("intra_region", "bps"),
        ("choice", "bacc"),
    ),
    "calcium": (("forecasting", "mae"),),
}
#: Words under a column header where the metric needs them.
COLUMN_NOTES = {("calcium", "forecasting", "mae"): "mean over horizons"}


def headline_metric(modality: str, task: str) -> str:
    """The one metric a configured task outside the core is shown with."""
    if task in ACTIVITY_TASKS:
        if modality == "spikes":
            return "bps"
        return "mae" if task == "forecasting" else "r2"
    return "r2" if task.startswith(BEHAVIOR_PREFIX) else "bacc"


@dataclass(frozen=True)
class Objective:
    """A row: a pretraining method, its objective in words, its scratch control."""

    method: str
    objective: str
    scratch: str | None
    #: A control row (a scratch backbone): shown, never compared with itself or marked best.
    control: bool = False


@dataclass(frozen=True)
class Column:
    modality: str
    task: str
    metric: str

    @property
    def note(self) -> str:
        return COLUMN_NOTES.get((self.modality, self.task, self.metric), "")


@dataclass(frozen=True)
class MatrixCell(Cell):
    """A results-table cell plus its gain over scratch and, when empty, the reason."""

    #: Paired improvement over the scratch control (None: no shared seed).
    gain: Difference | None = None
    #: Why a cell without a value has none (shown in the cell).
    reason: str = ""


@dataclass(frozen=True)
class Matrix:
    size: str
    rows: tuple[Objective, ...]
    columns: tuple[Column, ...]
    cells: dict[tuple[str, Column], MatrixCell]


def objectives() -> tuple[Objective, ...]:
    """Every pretraining method of the table that is not an ablation of another, each on
    its own family's backbone (another family's objective on a shared backbone has its own
    table, :mod:`neurossl.report.shared_backbone`)."""
    specs = catalog.methods()
    ablations = {a for s in specs for a in s.ablations}
    return tuple(
        Objective(s.name, s.objective or "", s.scratch)
        for s in specs
        if s.pretrains and s.name not in ablations and s.objective_of is None
    )


def matrix_columns(modalities: list[str] | tuple[str, ...], collection: Collection) -> list[Column]:
    """The core columns of each of the dataset's modalities, then its other configured tasks."""
    columns = []
    for modality in modalities:
        core = CORE_COLUMNS.get(modality, ())
        columns += [Column(modality, t, m) for t, m in core]
        core_tasks = {t for t, _ in core}
        for task in collection.tasks.get(modality, ()):
            if task not in core_tasks:
                columns.append(Column(modality, task, headline_metric(modality, task)))
    return columns


def build_matrix(
    collection: Collection,
    per_seed: pd.DataFrame,
    modalities: list[str] | tuple[str, ...],
    size: str,
    confidence: float,
    rows: tuple[Objective, ...] | None = None,
) -> Matrix:
    """The objective x (modality, task) matrix at ``size`` from per-seed values.

    ``rows`` defaults to the headline's objectives; the shared-backbone table passes its own
    rows and gets the same columns and cells.
    """
    rows = objectives() if rows is None else rows
    columns = matrix_columns(modalities, collection)
    runs = {
        key: dict(zip(part["seed"].astype(int), part["value"].astype(float), strict=True))
        for key, part in per_seed.groupby(["method", "modality", "size", "task", "metric"])
    }
    planned = {(r.method, r.modality) for r in collection.expected if r.size == size}
    missing = collection.missing
    cells: dict[tuple[str, Column], MatrixCell] = {}
    for row in rows:
        for column in columns:
            cells[(row.method, column)] = _cell(
                row, column, runs, planned, missing, collection, size, confidence
            )
    _mark_best(cells, rows, columns)
    return Matrix(size, rows, tuple(columns), cells)


def _cell(
    row: Objective,
    column: Column,
    runs: dict,
    planned: set[tuple[str, str]],
    missing: pd.DataFrame,
    collection: Collection,
    size: str,
    confidence: float,
) -> MatrixCell:
    if column.modality not in catalog.method(row.method).modalities:
        return MatrixCell(NOT_RUN, reason=f"no {column.modality} pairing in the method table")
    if (row.method, column.modality) not in planned:
        return MatrixCell(NOT_RUN, reason="not in this config's methods/sizes")
    values = runs.get((row.method, column.modality, size, column.task, column.metric))
    hit = (
        (missing["method"] == row.method)
        & (missing["modality"] == column.modality)
        & (missing["size"] == size)
        & missing["task"].isin(["", column.task])
    )
    n_missing = int(hit.sum())
    if not values:
        if n_missing:
            return MatrixCell(MISSING, n_missing=n_missing, reason="expected, absent")
        if column.task not in collection.tasks.get(column.modality, ()):
            return MatrixCell(NOT_RUN, reason="task not configured")
        return MatrixCell(NOT_SUPPORTED, reason="the method reports no such row")
    mean, lo, hi = mean_ci(list(values.values()), confidence)
    gain = None
    if row.scratch:
        reference = runs.get((row.scratch, column.modality, size, column.task, column.metric))
        if reference and set(values) & set(reference):
            gain = paired_difference(row.scratch, values, reference, column.metric, confidence)
    return MatrixCell(OK, mean, lo, hi, len(values), n_missing, gain=gain)


def _mark_best(
    cells: dict[tuple[str, Column], MatrixCell],
    rows: tuple[Objective, ...],
    columns: list[Column],
) -> None:
    for column in columns:
        scored = [
            r.method
            for r in rows
            if not r.control
            and cells[(r.method, column)].state == OK
            and math.isfinite(cells[(r.method, column)].mean)
        ]
        if not scored:
            continue
        sign = 1.0 if higher_is_better(column.metric) else -1.0
        top = max(sign * cells[(m, column)].mean for m in scored)
        for method in scored:
            cell = cells[(method, column)]
            if sign * cell.mean == top:
                cells[(method, column)] = replace(cell, best=True)
