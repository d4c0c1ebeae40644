"""Build a dataset's benchmark report: metrics.csv, figures (PNG + SVG) and index.html.

The one function the report rule calls. It only reads finished results, so rebuilding
after a change of the ``report:`` config section (e.g. which metrics to show) costs
seconds and retrains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurossl.atomic import write_text
from neurossl.data.splits import read_splits
from neurossl.names import FIGURES, METRICS, MODALITIES, check_method, check_task
from neurossl.report import figures as fig
from neurossl.report.budget import parity, pretraining_budgets
from neurossl.report.bwb import bwb_html
from neurossl.report.collect import (
    Collection,
    RunKey,
    collect,
    parse_run_path,
    repeat_seed_independent,
    write_tidy_csv,
)
from neurossl.report.html import FigureEntry, ReportContent, render
from neurossl.report.matrix import build_matrix
from neurossl.report.provenance import gather
from neurossl.report.shared_backbone import objective_vs_backbone, shared_rows
from neurossl.report.tables import (
    FAMILIES,
    build_differences,
    build_table,
    missing_table,
    seed_values,
)

DEFAULT_HEADLINE = ("spikes/co_smoothing/bps", "calcium/forecasting/r2")

FIGURE_TEXT = {
    "objective_matrix": (
        "Objectives x modalities: gain over scratch",
        "Paired improvement of each pretraining objective over the same backbone trained "
        "from scratch, per modality and task (positive = better; for mae the error "
        "reduction); colour is scaled per column, * marks a CI that excludes 0.",
    ),
    "forecasting_horizon": (
        "Forecasting vs horizon",
        "Per-horizon-step error and R² of forecasting on the test windows of held-out "
        "sessions, mean over seeds with the confidence band.",
    ),
    "scaling": (
        "Accuracy vs model size",
        "Headline metrics per size preset; dotted lines are size-less simple baselines; "
        "points are annotated with backbone parameter counts where known.",
    ),
    "per_neuron_bps": (
        "Per-neuron bits/spike",
        "Co-smoothing bits/spike of each held-out neuron, method vs reference baseline, "
        "averaged over seeds; points above the diagonal are neurons the method predicts better.",
    ),
    "predictability": (
        "Predictability split",
        "Skewness vs excess kurtosis on training windows; lines are the thresholds that "
        "define POYO-SSL's predictable neurons.",
    ),
    "training_curves": (
        "Training curves",
        "Loss columns of every pretraining and fine-tuning log vs step, one line per seed.",
    ),
}


@dataclass(frozen=True)
class ReportSettings:
    """The ``report:`` section of the config."""

    #: Metrics shown in the tables (metrics.csv always has every row).
    metrics: tuple[str, ...] = METRICS
    confidence: float = 0.95
    #: Baseline method of the per-neuron bits/spike scatter.
    reference: str = "linear"
    #: (modality, task, metric) triples of the scaling figure.
    headline: tuple[tuple[str, str, str], ...] = tuple(
        tuple(h.split("/")) for h in DEFAULT_HEADLINE
    )

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> ReportSettings:
        section = dict(section or {})
        unknown = set(section) - {"metrics", "confidence", "reference", "headline"}
        if unknown:
            raise ValueError(f"config report: unknown key(s) {sorted(unknown)}")
        metrics = tuple(section.get("metrics", METRICS))
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise ValueError(f"config report.metrics: unknown metric(s) {bad}; expected {METRICS}")
        confidence = float(section.get("confidence", 0.95))
        if not 0 < confidence < 1:
            raise ValueError(f"config report.confidence must be in (0, 1), got {confidence}")
        headline = []
        for item in section.get("headline", DEFAULT_HEADLINE):
            parts = str(item).split("/")
            if len(parts) != 3 or parts[0] not in MODALITIES or parts[2] not in METRICS:
                raise ValueError(
                    f"config report.headline: {item!r} is not 'modality/task/metric' "
                    f"(modality in {MODALITIES}, metric in {METRICS})"
                )
            check_task(parts[1])
            headline.append((parts[0], parts[1], parts[2]))
        return cls(
            metrics=metrics,
            confidence=confidence,
            reference=check_method(section.get("reference", "linear")),
            headline=tuple(headline),
        )


@dataclass(frozen=True)
class ReportInputs:
    dataset: str
    config: dict[str, Any]
    #: Every expected metrics.json (present or not): the grid the report checks against.
    metrics_paths: tuple[Path, ...]
    #: results/{dataset}: train logs, predictions and benchmark files are found below it.
    dataset_dir: Path
    workflow_dir: Path
    splits: Path | None = None
    neuron_stats: Path | None = None
    summary_json: Path | None = None
    #: title -> PNG of the dataset summary, embedded as they are.
    summary_images: dict[str, Path] = field(default_factory=dict)
    #: CalM's tokenizer reports, ``tokenizer/{modality}/tokenizer_report.json``.
    tokenizer_reports: tuple[Path, ...] = ()
    #: bwb/scores.csv of the BrainWideBench export (spiking datasets).
    bwb_scores: Path | None = None


def figure_paths(report_dir: str | Path) -> dict[str, tuple[Path, Path]]:
    """name -> (png, svg) of every report figure; the rule declares exactly these."""
    base = Path(report_dir) / "figures"
    return {name: (base / f"{name}.png", base / f"{name}.svg") for name in FIGURES}


def build_report(inputs: ReportInputs, report_dir: str | Path, workers: int = 1) -> Collection:
    """Write metrics.csv, figures/ and index.html under ``report_dir``.

    ``workers`` > 1 runs the figures, the pretraining budgets and the provenance in that
    many processes, started before the tables are built so every core has work: the
    report is the workflow's last job, when the other cores are idle. The budgets and
    the provenance import torch (backbone parameter counts, the device's name), which
    this process then never does.
    """
    report_dir = Path(report_dir)
    settings = ReportSettings.from_config(inputs.config.get("report"))
    dataset_config = inputs.config["datasets"][inputs.dataset]
    collection = collect(inputs.dataset, inputs.metrics_paths, dataset_config.get("tasks", {}))
    seeds = [int(s) for s in inputs.config.get("seeds", [])]
    per_seed = seed_values(repeat_seed_independent(collection.metrics, seeds))
    sizes = _sizes(inputs.config)
    paths = figure_paths(report_dir)
    logs = _train_logs(inputs.dataset_dir, collection)
    # The budgets and the provenance right after the scaling figure, the first call that
    # imports torch, so the worker that imported it most likely runs them too.
    curves, scaling, *other_figures = _figure_calls(inputs, per_seed, settings, sizes, paths, logs)
    calls = [
        curves,
        scaling,
        (pretraining_budgets, (logs, sizes[0])),
        (gather, (inputs.config, inputs.workflow_dir, inputs.dataset_dir / "benchmarks")),
        *other_figures,
    ]
    with _Runner(workers) as runner:
        pending = runner.submit(calls)
        write_tidy_csv(collection.metrics, report_dir / "metrics.csv")
        tables = [
            build_table(collection, per_seed, family, settings.metrics, settings.confidence)
            for family in FAMILIES
            if family.modality in dataset_config["modalities"]
        ]
        differences = [build_differences(per_seed, t, settings.confidence) for t in tables]
        modalities = [m for m in MODALITIES if m in dataset_config["modalities"]]
        matrix = build_matrix(collection, per_seed, modalities, sizes[0], settings.confidence)
        shared = build_matrix(
            collection, per_seed, modalities, sizes[0], settings.confidence, rows=shared_rows()
        )
        matrix_figure = ("objective_matrix_figure", (matrix,), paths["objective_matrix"])
        pending += runner.submit([(_draw, matrix_figure)])
        _curves, _scaling, budgets, provenance, *_figures = runner.results(pending)
    content = ReportContent(
        dataset=inputs.dataset,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        confidence=settings.confidence,
        matrix=matrix,
        shared_backbone=shared if shared.rows else None,
        backbone_spreads=objective_vs_backbone(shared, matrix),
        budgets=budgets,
        budget_parity=parity(budgets),
        shared_budget_parity=parity(
            [b for b in budgets if b.method in {r.method for r in shared.rows}]
        ),
        tables=tables,
        differences=differences,
        missing=missing_table(collection),
        figures=[
            FigureEntry(name, FIGURE_TEXT[name][0], paths[name][0], FIGURE_TEXT[name][1])
            for name in FIGURES
        ],
        provenance=provenance,
        n_expected_runs=len(collection.expected),
        split=collection.split,
        n_seeds=len(seeds),
        summary=_read_json(inputs.summary_json),
        summary_images={k: v for k, v in inputs.summary_images.items() if v.exists()},
        tokenizer={p.parent.name: _read_json(p) for p in inputs.tokenizer_reports} or None,
        bwb=bwb_html(inputs.bwb_scores),
    )
    write_text(report_dir / "index.html", render(content))
    return collection


def _sizes(config: dict[str, Any]) -> list[str]:
    """Configured sizes then scaling sizes, in order; the first is the headline size."""
    extra = config.get("scaling", {}).get("sizes", [])
    return list(dict.fromkeys([*config["sizes"], *extra]))


Call = tuple[Callable[..., Any], tuple[Any, ...]]


def _figure_calls(
    inputs: ReportInputs,
    per_seed: Any,
    settings: ReportSettings,
    sizes: list[str],
    paths: dict[str, tuple[Path, Path]],
    logs: dict[tuple[str, RunKey], Path],
) -> list[Call]:
    """(function, arguments) per figure that needs no table, slowest first: the training
    curves, then scaling (its parameter counts import the backbones, and with them torch)."""
    main = sizes[0]
    predictions = {}
    for path in inputs.metrics_paths:
        npz = Path(path).with_name("predictions.npz")
        if npz.exists():
            predictions[parse_run_path(path)] = npz
    thresholds = read_splits(inputs.splits).predictability if inputs.splits else None
    return [
        (_draw, ("training_curves_figure", (logs, main), paths["training_curves"])),
        (
            _draw,
            (
                "scaling_figure",
                (per_seed, settings.headline, sizes, settings.confidence),
                paths["scaling"],
            ),
        ),
        (fig.predictability_figure, (inputs.neuron_stats, thresholds, *paths["predictability"])),
        (
            _draw,
            ("horizon_figure", (per_seed, main, settings.confidence), paths["forecasting_horizon"]),
        ),
        (
            _draw,
            ("per_neuron_figure", (predictions, settings.reference, main), paths["per_neuron_bps"]),
        ),
    ]


def _draw(builder: str, args: tuple[Any, ...], paths: tuple[Path, Path]) -> None:
    """Build one figure with ``figures.<builder>`` and save it (a picklable pool task)."""
    fig.save_figure(getattr(fig, builder)(*args), *paths)


class _Runner:
    """Runs calls in ``workers`` processes while this one goes on, or here, in order, when
    ``workers`` <= 1 (results are then computed at submission)."""

    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def submit(self, calls: list[Call]) -> list[Any]:
        if self.pool is None:
            return [function(*args) for function, args in calls]
        return [self.pool.submit(function, *args) for function, args in calls]

    def results(self, pending: list[Any]) -> list[Any]:
        """Each call's result, in submission order (a call's error is re-raised here)."""
        if self.pool is None:
            return pending
        return [future.result() for future in pending]


def _train_logs(dataset_dir: Path, collection: Collection) -> dict[tuple[str, RunKey], Path]:
    logs = {}
    for run in collection.expected:
        for stage in ("pretrain", "finetune"):
            path = dataset_dir / stage / run.relative_dir() / "train_log.csv"
            if path.exists():
                if path.stat().st_size == 0:
                    raise ValueError(f"{path}: empty training log; rerun its training job")
                logs[(stage, run)] = path
    return logs


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
