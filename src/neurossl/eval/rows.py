"""Metric rows and their files: the one place evaluation output is shaped and written.

Rows are checked against the vocabulary of :mod:`neurossl.names` when they are made, so
a misspelt task or metric fails in the job that produced it, not in the report.
``metrics.json`` is ``{"rows": [MetricRow as dict, ...]}``; a metric that is undefined on
the data (e.g. bits/spike when nothing spiked) is kept as NaN rather than dropped, so
the report can show that it was attempted. ``predictions.npz`` holds the arrays the
rows were computed from, so results can be re-scored without retraining.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from neurossl.atomic import atomic_path, write_json
from neurossl.contract import Evaluation, MetricRow, StageInputs
from neurossl.names import check_task, is_metric


def make_rows(
    inputs: StageInputs, session: str, task: str, values: dict[str, float]
) -> list[MetricRow]:
    """One row per metric of one (session, task), labelled with the stage's run."""
    check_task(task)
    unknown = [m for m in values if not is_metric(m)]
    if unknown:
        raise ValueError(f"task {task!r}: unknown metric name(s) {unknown}; see neurossl.names")
    rows = []
    for metric, value in values.items():
        value = float(value)
        if math.isinf(value):
            raise ValueError(f"task {task!r}, session {session!r}: metric {metric!r} is {value}")
        rows.append(
            MetricRow(
                dataset=inputs.dataset,
                session=session,
                method=inputs.method,
                size=inputs.size,
                task=task,
                metric=metric,
                seed=inputs.seed,
                value=value,
            )
        )
    return rows


def write_evaluation(
    evaluation: Evaluation,
    metrics_path: str | Path,
    predictions_path: str | Path,
    split: str = "test",
) -> None:
    """Write metrics.json and predictions.npz, each atomically.

    metrics.json names the ``split`` its windows came from, so a report can refuse to mix
    validation scores (hyper-parameter selection) with test scores.
    """
    for key, array in evaluation.arrays.items():
        if not isinstance(array, np.ndarray):
            raise TypeError(f"evaluation array {key!r} is {type(array).__name__}, not ndarray")
    write_json(metrics_path, {"split": split, "rows": [asdict(row) for row in evaluation.rows]})
    # A file handle, not a name: np.savez would append ".npz" to the temporary name.
    with atomic_path(predictions_path) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, **evaluation.arrays)
