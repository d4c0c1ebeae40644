"""The report as one self-contained HTML file: inline CSS, images as data URIs, no scripts.

Self-contained because reports are mailed, attached to papers' supplements and opened on
machines without the results folder or network; a single file cannot lose its images.
Every string from data or config is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neurossl.eval.glossary import METRIC_GLOSSARY
from neurossl.names import ORACLE
from neurossl.report.provenance import Provenance
from neurossl.report.tables import (
    MISSING,
    NOT_SUPPORTED,
    Cell,
    Difference,
    DifferenceTable,
    Table,
)

#: DESIGN.md's evaluation protocol: every reported number is over at least this many seeds.
PROTOCOL_SEEDS = 3

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td.label, th.label { text-align: left; }
td.best { background: #dff3df; font-weight: bold; }
td.missing { background: #fde2e2; color: #a00; font-weight: bold; }
td.na { color: #999; text-align: center; }
tr.oracle td { font-style: italic; background: #f6f6ff; }
.ci { color: #555; font-size: 0.85em; } .note { color: #555; font-size: 0.9em; }
.rel { font-size: 0.85em; }
.alert { background: #fde2e2; border: 1px solid #a00; padding: 0.5em 1em; }
.okbox { background: #e6f4e6; border: 1px solid #393; padding: 0.5em 1em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
nav a { margin-right: 1em; }
"""


@dataclass(frozen=True)
class FigureEntry:
    key: str
    title: str
    png: Path
    caption: str


@dataclass
class ReportContent:
    """Everything the page shows, already computed."""

    dataset: str
    generated: str
    confidence: float
    tables: Sequence[Table]
    differences: Sequence[DifferenceTable]
    missing: pd.DataFrame
    figures: Sequence[FigureEntry]
    provenance: Provenance
    n_expected_runs: int
    #: Windows the scores come from: "test", or "valid" for a selection run.
    split: str = "test"
    #: Training seeds configured; under PROTOCOL_SEEDS the page says it is a smoke run.
    n_seeds: int = PROTOCOL_SEEDS
    summary: dict[str, Any] | None = None
    summary_images: dict[str, Path] = field(default_factory=dict)
    tokenizer: dict[str, Any] | None = None
    #: BrainWideBench-convention scores section (neurossl.report.bwb); "" when none.
    bwb: str = ""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "nan"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _cell_html(cell: Cell) -> str:
    if cell.state == NOT_SUPPORTED:
        return '<td class="na" title="not run / not supported">—</td>'
    if cell.state == MISSING:
        return (
            f'<td class="missing">missing ({cell.n_missing} run{"s" * (cell.n_missing != 1)})</td>'
        )
    ci = f"[{_num(cell.lo)}, {_num(cell.hi)}]" if math.isfinite(cell.lo) else "[no CI: n=1]"
    extra = f"; {cell.n_missing} missing" if cell.n_missing else ""
    css = ' class="best"' if cell.best else (' class="missing"' if cell.n_missing else "")
    mark = " ▲" if cell.best else ""
    return (
        f"<td{css}>{_num(cell.mean)}{mark}<br><span class='ci'>{ci} "
        f"n={cell.n_seeds}{extra}</span></td>"
    )


def _column_header(columns: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<th>{_e(task)}<br>{_e(metric)}</th>" for task, metric in columns)


_NO_TASK_NOTE = "<p class='note'>No task of this family was configured or reported.</p>"


def table_html(table: Table) -> str:
    parts = [f"<h3 id='{_e(table.family.key)}'>{_e(table.family.title)}</h3>"]
    if not table.columns or not table.rows:
        parts.append(_NO_TASK_NOTE)
        return "\n".join(parts)
    parts.append(
        "<table><tr><th class='label'>method</th><th class='label'>size</th>"
        f"{_column_header(table.columns)}</tr>"
    )
    for row in table.rows:
        css = " class='oracle'" if row[0] == ORACLE else ""
        label = f"{row[0]} (ceiling)" if row[0] == ORACLE else row[0]
        cells = "".join(_cell_html(table.cells[(row, c)]) for c in table.columns)
        parts.append(
            f"<tr{css}><td class='label'>{_e(label)}</td><td class='label'>{_e(row[1])}</td>"
            f"{cells}</tr>"
        )
    parts.append("</table>")
    if table.not_supported:
        parts.append(
            "<p class='note'>Ran on this modality but reported no task of this family "
            f"(not supported): {_e(', '.join(table.not_supported))}.</p>"
        )
    return "\n".join(parts)


def differences_html(table: DifferenceTable) -> str:
    parts = [f"<h3>{_e(table.family.title)}: paired improvements</h3>"]
    if not table.columns:
        parts.append(_NO_TASK_NOTE)
        return "\n".join(parts)
    if not table.rows:
        parts.append("<p class='note'>No pretrained method shares seeds with a reference here.</p>")
        return "\n".join(parts)
    parts.append(
        "<table><tr><th class='label'>method</th><th class='label'>size</th>"
        f"<th class='label'>vs</th>{_column_header(table.columns)}</tr>"
    )
    for row in table.rows:
        cells = []
        for column in table.columns:
            diff = table.cells.get((row, column))
            if diff is None:
                cells.append("<td class='na'>—</td>")
                continue
            ci = f"[{_num(diff.lo)}, {_num(diff.hi)}]" if math.isfinite(diff.lo) else "[n=1]"
            sure = diff.lo > 0 or diff.hi < 0
            css = " class='best'" if sure and diff.lo > 0 else ""
            cells.append(
                f"<td{css}>{_num(diff.mean)}{_relative(diff)}<br><span class='ci'>{ci} "
                f"n={diff.n} vs {_e(diff.reference)}</span></td>"
            )
        parts.append(
            f"<tr><td class='label'>{_e(row[0])}</td><td class='label'>{_e(row[1])}</td>"
            f"<td class='label'>{_e(row[2])}</td>{''.join(cells)}</tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def _relative(diff: Difference) -> str:
    if not math.isfinite(diff.relative):
        return ""
    if math.isfinite(diff.relative_lo):
        ci = f" [{diff.relative_lo:+.0%}, {diff.relative_hi:+.0%}]"
    else:
        ci = ""
    return f" <span class='rel'>({diff.relative:+.1%}{ci})</span>"


def frame_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th class='label'>{_e(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f"<td>{_num(v)}</td>" if isinstance(v, float) else f"<td class='label'>{_e(v)}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def missing_html(missing: pd.DataFrame, n_expected: int) -> str:
    if missing.empty:
        return (
            f"<p class='okbox'>All {n_expected} expected runs are present and every run "
            "reported every task its method reports elsewhere.</p>"
        )
    n_runs = int((missing["task"] == "").sum())
    n_tasks = len(missing) - n_runs
    shown = missing.assign(task=missing["task"].replace("", "(whole run)"))
    return (
        f"<p class='alert'><b>{n_runs} of {n_expected} expected runs are missing</b> and "
        f"<b>{n_tasks} task results are absent</b> from runs that exist. Table cells built "
        "from fewer seeds say so; cells with no seed at all read <i>missing</i>.</p>"
        f"<div id='missing-table'>{frame_html(shown)}</div>"
    )


def figure_html(entry: FigureEntry) -> str:
    return (
        f"<figure id='fig-{_e(entry.key)}'><img alt='{_e(entry.title)}' "
        f"src='{data_uri(entry.png)}'><figcaption><b>{_e(entry.title)}.</b> "
        f"{_e(entry.caption)}</figcaption></figure>"
    )


def provenance_html(p: Provenance) -> str:
    facts = pd.DataFrame(
        [
            ("config sha256", p.config_sha256),
            ("git commit", p.git_commit),
            ("device", p.device),
            ("python", p.python),
            ("platform", p.platform),
            *((f"version: {k}", v) for k, v in p.packages.items()),
        ],
        columns=["field", "value"],
    )
    bench = (
        frame_html(p.benchmarks)
        if not p.benchmarks.empty
        else "<p class='note'>No Snakemake benchmark files found.</p>"
    )
    total = p.benchmarks["seconds"].sum() if not p.benchmarks.empty else float("nan")
    return (
        f"<div id='provenance'>{frame_html(facts)}"
        f"<h3>Wall time and peak memory per job</h3><p class='note'>From the rules' "
        f"<code>benchmark:</code> files; total wall time {_num(total)} s (sequential sum).</p>"
        f"{bench}<h3>Config</h3><pre>{_e(p.config_yaml)}</pre></div>"
    )


def render(content: ReportContent) -> str:
    """The whole page."""
    sections = [
        ("missing", "Missing runs", missing_html(content.missing, content.n_expected_runs)),
        ("tables", "Results", _results_intro(content) + "".join(map(table_html, content.tables))),
        (
            "differences",
            "Paired differences",
            _differences_intro(content) + "".join(map(differences_html, content.differences)),
        ),
        ("figures", "Figures", "".join(map(figure_html, content.figures))),
        *([("bwb", "BrainWideBench-convention scores", content.bwb)] if content.bwb else []),
        ("dataset", "Dataset", _dataset_html(content)),
        ("provenance", "Provenance", provenance_html(content.provenance)),
        ("glossary", "Metric glossary", glossary_html()),
    ]
    nav = "".join(f"<a href='#{key}'>{_e(title)}</a>" for key, title, _ in sections)
    body = "".join(f"<h2 id='{key}'>{_e(title)}</h2>{text}" for key, title, text in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>neurossl report: {_e(content.dataset)}</title><style>{_CSS}</style></head>"
        f"<body><h1>neurossl benchmark: {_e(content.dataset)}</h1>"
        f"<p class='note'>Generated {_e(content.generated)}; config sha256 "
        f"<code>{_e(content.provenance.config_sha256[:12])}</code>; commit "
        f"<code>{_e(content.provenance.git_commit)}</code>; scores on the "
        f"<b>{_e(content.split or 'test')}</b> windows of the held-out sessions.</p>"
        f"{_few_seeds_warning(content.n_seeds)}<nav>{nav}</nav>{body}"
        "</body></html>\n"
    )


def glossary_html() -> str:
    """Every metric's definition, its null and which neurons count (neurossl.eval.glossary)."""
    rows = "".join(
        f"<tr><td class='label'><code>{_e(name)}</code></td><td class='label'>{_e(text)}</td></tr>"
        for name, text in METRIC_GLOSSARY.items()
    )
    header = "<tr><th class='label'>metric</th><th class='label'>definition</th></tr>"
    return f"<table>{header}{rows}</table>"


def _few_seeds_warning(n_seeds: int) -> str:
    """Why: a one-seed demo must not be mistaken for a result (DESIGN: >= 3 seeds)."""
    if n_seeds >= PROTOCOL_SEEDS:
        return ""
    return (
        f"<p class='alert'><b>{n_seeds} training seed(s): a smoke run, not a result.</b> "
        f"Reported numbers are means with confidence intervals over at least "
        f"{PROTOCOL_SEEDS} seeds, each method at its selected training budget; for the "
        "embedded default that is the protocol run, "
        "<code>--configfile config/config.yaml config/protocol.yaml</code>.</p>"
    )


def _results_intro(content: ReportContent) -> str:
    return (
        f"<p class='note'>Each cell: mean over training seeds of the per-seed value "
        f"(itself the mean over held-out sessions), with the {content.confidence:.0%} "
        "Student-t interval and the number of seeds. ▲ / green = best in the column "
        "(higher is better for bps, poisson_d2, r2, bacc, acc; lower for mae, mse); the "
        "oracle is a ceiling and never marked best. — = not run / not supported by the "
        "method; <i>missing</i> = expected but absent.</p>"
    )


def _differences_intro(content: ReportContent) -> str:
    return (
        "<p class='note'>Paired over the seeds both runs share (per-seed values pooled over "
        f"sessions first), mean and {content.confidence:.0%} CI. Signed so that "
        "<b>positive = the pretrained method is better</b> (for mae/mse the error "
        "reduction). In brackets after the mean, for accuracies and errors: the relative "
        "gain, i.e. the per-seed improvement divided by the reference's value, with its CI "
        "(e.g. '+12% over scratch'). 'scratch' is the same backbone without pretraining; "
        "'best baseline' is, per column, the simple baseline with the best mean; "
        "poyo_ssl is also compared with its data-diet ablations (mixed, reverse). "
        "Green: CI above 0.</p>"
    )


def _dataset_html(content: ReportContent) -> str:
    parts = []
    if content.summary is not None:
        summary = {k: v for k, v in content.summary.items() if k != "windows"}
        parts.append(f"<pre>{_e(json.dumps(summary, indent=2, sort_keys=True))}</pre>")
    else:
        parts.append("<p class='note'>dataset_summary.json absent.</p>")
    for title, path in content.summary_images.items():
        parts.append(figure_html(FigureEntry(f"summary-{title}", title, path, "")))
    if content.tokenizer is not None:
        parts.append("<h3>CalM tokenizer</h3>")
        parts.append(f"<pre>{_e(json.dumps(content.tokenizer, indent=2, sort_keys=True))}</pre>")
    return "".join(parts)
