"""The report as one self-contained HTML file: inline CSS, images as data URIs, no scripts.

Self-contained because reports are mailed, attached to papers' supplements and opened on
machines without the results folder or network; a single file cannot lose its images.
The page is rendered from the jinja2 templates in ``templates/`` with autoescaping on,
so every string from data or config is escaped.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from neurossl.eval.glossary import METRIC_GLOSSARY
from neurossl.names import ORACLE
from neurossl.report.budget import Budget
from neurossl.report.matrix import NOT_RUN, Matrix
from neurossl.report.provenance import Provenance
from neurossl.report.shared_backbone import Spread
from neurossl.report.tables import MISSING, NOT_SUPPORTED, DifferenceTable, Table

#: The evaluation protocol reports every number over at least this many seeds.
PROTOCOL_SEEDS = 3


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
    #: The headline objective x modality matrix (neurossl.report.matrix); None: not built.
    matrix: Matrix | None = None
    #: The objectives on one shared backbone (neurossl.report.shared_backbone) and, per
    #: column, their spread there against the spread on their own backbones.
    shared_backbone: Matrix | None = None
    backbone_spreads: Sequence[Spread] = ()
    #: Pretraining budget per objective (neurossl.report.budget) and, per modality, the
    #: largest over smallest tokens seen.
    budgets: Sequence[Budget] = ()
    budget_parity: dict[str, float] = field(default_factory=dict)
    #: The same factor among the shared-backbone objectives (one token unit).
    shared_budget_parity: dict[str, float] = field(default_factory=dict)


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "nan"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("neurossl.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        num=_num,
        data_uri=data_uri,
        percent=lambda x: f"{x:.0%}",
        signed_percent=lambda x, digits: f"{x:+.{digits}%}",
    )
    env.tests["finite"] = math.isfinite
    env.globals.update(
        ORACLE=ORACLE,
        MISSING=MISSING,
        NOT_SUPPORTED=NOT_SUPPORTED,
        NOT_RUN=NOT_RUN,
        PROTOCOL_SEEDS=PROTOCOL_SEEDS,
    )
    return env


def _macros() -> Any:
    return _environment().get_template("macros.html.j2").module


def table_html(table: Table) -> str:
    """One results table (a family of tasks on one modality)."""
    return str(_macros().table(table))


def matrix_html(matrix: Matrix) -> str:
    """The headline objective x modality table."""
    return str(_macros().matrix(matrix))


def differences_html(table: DifferenceTable) -> str:
    """One table of paired improvements over scratch, baselines and ablations."""
    return str(_macros().differences(table))


def _provenance_facts(p: Provenance) -> pd.DataFrame:
    return pd.DataFrame(
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


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, indent=2, sort_keys=True)


def render(content: ReportContent) -> str:
    """The whole page."""
    missing = content.missing
    whole_run = missing["task"] == "" if not missing.empty else pd.Series(dtype=bool)
    if not missing.empty:
        missing = missing.assign(task=missing["task"].mask(whole_run, "(whole run)"))
    summary = content.summary
    if summary is not None:
        summary = {k: v for k, v in summary.items() if k != "windows"}
    benchmarks = content.provenance.benchmarks
    page = _environment().get_template("report.html.j2")
    return page.render(
        c=content,
        missing=missing,
        missing_runs=int(whole_run.sum()),
        missing_tasks=int((~whole_run).sum()),
        summary_json=_json(summary),
        summary_figures=[
            FigureEntry(f"summary-{title}", title, path, "")
            for title, path in content.summary_images.items()
        ],
        tokenizer_json=_json(content.tokenizer),
        facts=_provenance_facts(content.provenance),
        total_seconds=benchmarks["seconds"].sum() if not benchmarks.empty else math.nan,
        glossary=METRIC_GLOSSARY,
    )
