"""The report's section of BrainWideBench-convention scores (neurossl.eval.bwb_export)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from neurossl.eval.bwb_export import DIFFERENCES


def bwb_html(scores_csv: Path | None) -> str:
    """Mean over seeds and sessions of each BrainWideBench score, neurossl's beside it."""
    if scores_csv is None or not Path(scores_csv).exists():
        return ""
    scores = pd.read_csv(scores_csv)
    intro = (
        "<p class='note'>neurossl's own predictions, written in IBL BrainWideBench's "
        "submission format (<code>bwb/files</code>) and scored by <code>ibl_bwb_eval</code>'s "
        "scorers: <b>BrainWideBench-convention scores of neurossl's tasks, not leaderboard "
        "entries</b>. Mean over seeds and held-out sessions; <i>neurossl</i> is the same "
        "run's metrics.csv value of the same metric name (— where neurossl has none). "
        "Where the task definitions differ:</p><ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in DIFFERENCES)
        + "</ul>"
    )
    if scores.empty:
        return intro + "<p class='note'>No task of this run maps to BrainWideBench.</p>"
    keys = ["method", "size", "task", "bwb_task", "metric"]
    table = (
        scores.groupby(keys, sort=True)
        .agg(
            bwb=("value", "mean"),
            neurossl=("neurossl_value", "mean"),
            silent_units=("silent_units", "max"),
        )
        .reset_index()
    )
    header = "".join(f"<th class='label'>{html.escape(k)}</th>" for k in keys)
    header += "<th>BrainWideBench convention</th><th>neurossl</th><th>silent units</th>"
    rows = []
    for record in table.to_dict("records"):
        cells = "".join(f"<td class='label'>{html.escape(str(record[k]))}</td>" for k in keys)
        for value in (record["bwb"], record["neurossl"]):
            cells += "<td>—</td>" if pd.isna(value) else f"<td>{value:.4f}</td>"
        cells += f"<td>{int(record['silent_units'])}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return intro + f"<table><tr>{header}</tr>{''.join(rows)}</table>"
