"""Report figures, each written as PNG (for the HTML) and SVG (for papers).

The set of figures is fixed (``neurossl.names.FIGURES``), so the report rule can declare
its outputs before it knows which results exist; a figure whose data a dataset lacks is
still written, as a panel that says what is absent. Colours are fixed per method across
all figures.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neurossl import catalog
from neurossl.atomic import atomic_path
from neurossl.eval.metrics import bits_per_spike_per_neuron
from neurossl.eval.stats import mean_ci
from neurossl.names import ORACLE, higher_is_better, is_horizon_metric
from neurossl.report.collect import RunKey
from neurossl.report.dataset_summary import plot_predictability
from neurossl.report.matrix import NOT_RUN, Matrix
from neurossl.report.tables import method_order
from neurossl.train_logs import step_gaps

#: Backbone module per neural method, for parameter counts on the scaling figure.
BACKBONE_MODULE = {s.name: s.backbone for s in catalog.methods() if s.backbone}


def method_colour(method: str) -> tuple[float, ...]:
    if method == ORACLE:
        return (0.0, 0.0, 0.0, 1.0)
    return plt.get_cmap("tab20")(method_order(method) % 20)


def save_figure(fig: plt.Figure, png: str | Path, svg: str | Path) -> None:
    """Write both formats atomically and release the figure.

    Every figure here is laid out by its builder (``tight_layout`` or the constrained
    layout), which fits it to its canvas, so the files are the whole canvas: measuring a
    tight bounding box as well lays the figure out once more (0.9 s of the 22-panel
    training-curves figure's 5.2 s on a 2.8 GHz Xeon).
    """
    for path, fmt in ((png, "png"), (svg, "svg")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110)
    plt.close(fig)


def no_data_figure(title: str, reason: str) -> plt.Figure:
    """A panel standing in for a figure whose data this dataset does not have."""
    fig, ax = plt.subplots(figsize=(6, 2.2), layout="constrained")
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", wrap=True)
    return fig


def panel_row(n: int, width: float, height: float) -> tuple[plt.Figure, np.ndarray]:
    """``n`` panels side by side ([1, n] axes) under the constrained layout.

    The layout makes room for a figure title and a :func:`figure_legend` beside the
    panels, and keeps each panel's y label clear of its neighbour.
    """
    return plt.subplots(1, n, figsize=(width * n, height), squeeze=False, layout="constrained")


def figure_legend(fig: plt.Figure, axes: np.ndarray) -> None:
    """One legend right of the panels, with every label of every panel once.

    Needs a figure from :func:`panel_row`: only the constrained layout places an
    "outside" legend.
    """
    entries = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(
            entries.values(),
            entries.keys(),
            fontsize=7,
            loc="outside right center",
        )


def _at_main_size(frame: pd.DataFrame, main_size: str) -> pd.DataFrame:
    """Neural methods at the headline size, size-less baselines ('na') as they are."""
    return frame[(frame["size"] == main_size) | (frame["size"] == "na")]


def horizon_figure(per_seed: pd.DataFrame, main_size: str, confidence: float) -> plt.Figure:
    """Forecasting error and R^2 vs horizon step: mean over seeds with CI band."""
    data = per_seed[(per_seed["task"] == "forecasting") & per_seed["metric"].map(is_horizon_metric)]
    data = _at_main_size(data, main_size)
    if data.empty:
        return no_data_figure("Forecasting vs horizon", "no per-horizon forecasting metrics")
    data = data.assign(
        base=data["metric"].str.split("_h").str[0],
        step=data["metric"].str.split("_h").str[1].astype(int),
    )
    panels = sorted({(m, b) for m, b in zip(data["modality"], data["base"], strict=True)})
    fig, axes = panel_row(len(panels), width=4.2, height=3.4)
    for ax, (modality, base) in zip(axes[0], panels, strict=True):
        part = data[(data["modality"] == modality) & (data["base"] == base)]
        for (method, _), run in sorted(
            part.groupby(["method", "size"]), key=lambda kv: method_order(kv[0][0])
        ):
            steps, means, los, his = [], [], [], []
            for step, values in sorted(run.groupby("step")):
                mean, lo, hi = mean_ci(values["value"].to_numpy(), confidence)
                steps.append(step), means.append(mean), los.append(lo), his.append(hi)
            colour = method_colour(method)
            style = "--" if method == ORACLE else "-"
            ax.plot(steps, means, style, marker="o", ms=3, color=colour, label=method)
            ax.fill_between(steps, los, his, color=colour, alpha=0.15, lw=0)
        arrow = "higher is better" if higher_is_better(base) else "lower is better"
        ax.set_title(f"{modality} forecasting: {base} ({arrow})", fontsize=9)
        ax.set_xlabel("horizon step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(base)
    figure_legend(fig, axes)
    fig.suptitle(f"Forecasting vs horizon (size {main_size}; band = {confidence:.0%} CI)")
    return fig


def parameter_count(method: str, size: str) -> int | None:
    """Backbone parameters of a size preset when the backbone module can count them."""
    module_name = BACKBONE_MODULE.get(method)
    if module_name is None:
        return None
    try:
        counter = getattr(importlib.import_module(module_name), "count_parameters", None)
        return int(counter(size)) if counter is not None else None
    except (ImportError, ValueError, KeyError):
        return None


def scaling_figure(
    per_seed: pd.DataFrame,
    headline: Sequence[tuple[str, str, str]],
    sizes: Sequence[str],
    confidence: float,
) -> plt.Figure:
    """Headline metric vs model size (in config order), baselines as horizontal lines.

    The x axis is the size preset; each point is annotated with its backbone parameter
    count where the backbone module provides ``count_parameters(size)``, because presets
    of different backbones differ in parameters.
    """
    panels = [
        h
        for h in headline
        if not per_seed[
            (per_seed["modality"] == h[0])
            & (per_seed["task"] == h[1])
            & (per_seed["metric"] == h[2])
        ].empty
    ]
    if not panels:
        wanted = ", ".join("/".join(h) for h in headline)
        return no_data_figure("Scaling", f"none of the headline metrics ({wanted}) was reported")
    fig, axes = panel_row(len(panels), width=4.8, height=3.6)
    for ax, (modality, task, metric) in zip(axes[0], panels, strict=True):
        part = per_seed[
            (per_seed["modality"] == modality)
            & (per_seed["task"] == task)
            & (per_seed["metric"] == metric)
        ]
        for method, run in sorted(part.groupby("method"), key=lambda kv: method_order(kv[0])):
            summary = {
                s: mean_ci(v["value"].to_numpy(), confidence) for s, v in run.groupby("size")
            }
            colour = method_colour(method)
            if "na" in summary:
                ax.axhline(summary["na"][0], color=colour, ls=":", lw=1, label=f"{method}")
                continue
            order = [s for s in sizes if s in summary] + sorted(set(summary) - set(sizes))
            x = [sizes.index(s) if s in sizes else len(sizes) + i for i, s in enumerate(order)]
            mean = np.array([summary[s][0] for s in order])
            err = np.array(
                [[summary[s][0] - summary[s][1], summary[s][2] - summary[s][0]] for s in order]
            ).T
            ax.errorbar(
                x, mean, yerr=np.nan_to_num(err), marker="o", color=colour, label=method, capsize=3
            )
            for xi, s, m in zip(x, order, mean, strict=True):
                count = parameter_count(method, s)
                if count is not None and math.isfinite(m):
                    ax.annotate(
                        f"{count / 1e6:.2g}M",
                        (xi, m),
                        fontsize=6,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
        ax.set_xticks(range(len(sizes)), list(sizes))
        ax.set_xlabel("model size preset (annotation: backbone parameters)")
        ax.set_ylabel(metric)
        ax.set_title(f"{modality} {task}: {metric}", fontsize=9)
    figure_legend(fig, axes)
    fig.suptitle(f"Accuracy vs model size (error bars = {confidence:.0%} CI over seeds)")
    return fig


def per_neuron_bps(predictions: Sequence[Path], task: str = "co_smoothing") -> pd.Series:
    """Bits/spike of every scored neuron, averaged over the runs (seeds) given.

    Uses predictions.npz (``{task}/{session}/pred`` NaN off target, ``.../target``), so
    the per-neuron numbers come from the same arrays the metric rows came from. Index:
    (session, neuron index); neurons never scored are absent.
    """
    per_run = []
    for path in predictions:
        with np.load(path) as arrays:
            values = {}
            for key in arrays.files:
                parts = key.split("/")
                if len(parts) != 3 or parts[0] != task or parts[2] != "pred":
                    continue
                target_key = f"{task}/{parts[1]}/target"
                if target_key not in arrays.files:
                    raise KeyError(f"{path}: {key} has no matching {target_key}")
                pred, target = arrays[key], arrays[target_key]
                n = pred.shape[-1]
                observed = np.where(np.isnan(pred), np.nan, target).reshape(-1, n)
                bps = bits_per_spike_per_neuron(pred.reshape(-1, n), observed)
                for neuron in np.flatnonzero(np.isfinite(bps)):
                    values[(parts[1], int(neuron))] = float(bps[neuron])
        per_run.append(pd.Series(values, dtype=float))
    if not per_run:
        return pd.Series(dtype=float)
    return pd.concat(per_run, axis=1).mean(axis=1)


def per_neuron_figure(
    predictions: dict[RunKey, Path], reference: str, main_size: str
) -> plt.Figure:
    """Per-neuron co-smoothing bits/spike of each spiking method against a baseline."""
    title = f"Per-neuron co-smoothing bits/spike vs {reference}"
    spiking = {k: p for k, p in predictions.items() if k.modality == "spikes"}
    ref = per_neuron_bps([p for k, p in spiking.items() if k.method == reference])
    if ref.empty:
        return no_data_figure(title, f"no co_smoothing predictions.npz for {reference!r}")
    methods = sorted(
        {k.method for k in spiking if k.method != reference and k.size in (main_size, "na")},
        key=method_order,
    )
    panels = []
    for method in methods:
        runs = [p for k, p in spiking.items() if k.method == method and k.size in (main_size, "na")]
        values = per_neuron_bps(runs)
        shared = values.index.intersection(ref.index)
        if len(shared):
            panels.append((method, ref[shared].to_numpy(), values[shared].to_numpy()))
    if not panels:
        return no_data_figure(title, "no other method has co_smoothing predictions")
    fig, axes = panel_row(len(panels), width=3.4, height=3.4)
    for ax, (method, x, y) in zip(axes[0], panels, strict=True):
        ax.scatter(x, y, s=8, color=method_colour(method), alpha=0.8)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"{reference} bits/spike")
        ax.set_ylabel(f"{method} bits/spike")
        ax.set_title(f"{method}: above diagonal {np.mean(y > x):.0%} of {len(x)}", fontsize=9)
    fig.suptitle(f"{title} (size {main_size}; mean over seeds)")
    return fig


def predictability_figure(
    neuron_stats: Path | None, thresholds: dict | None, png: Path, svg: Path
) -> None:
    """The skewness-kurtosis scatter of the split step, redrawn in both formats."""
    if neuron_stats is None or not thresholds:
        save_figure(
            no_data_figure("Predictability", "neuron_stats.csv or thresholds absent"), png, svg
        )
        return
    stats = pd.read_csv(neuron_stats)
    for path in (png, svg):
        plot_predictability(stats, thresholds, path)


def run_on_steps(log: pd.DataFrame) -> tuple[pd.Series, list[tuple[int, str]]]:
    """Steps that run on across the phases of a log, and where each later phase starts.

    Fine-tuning logs restart ``step`` at 1 in every phase (unit identification, readout,
    full); plotted as they are, a phase's curve draws back over the previous one. Each
    phase is shifted by the steps of the phases before it, in the order they ran.
    """
    if "phase" not in log:
        return log["step"], []
    ends = log.groupby("phase", sort=False)["step"].max()
    starts = ends.cumsum() - ends
    boundaries = [(int(at), str(phase)) for phase, at in starts.items() if at]
    return log["step"] + log["phase"].map(starts), boundaries


def check_complete(log: pd.DataFrame, path: Path) -> None:
    """Refuse a log (or a phase of one) that is not steps 1..N: a curve drawn from it
    would silently start mid-run (e.g. a log of a resumed job that lost its history)."""
    groups = log.groupby("phase", sort=False) if "phase" in log else [(None, log)]
    for phase, rows in groups:
        gaps = step_gaps(rows["step"].astype(int).tolist())
        if gaps or rows.empty:
            where = f"phase {phase!r} of " if phase is not None else ""
            raise ValueError(
                f"{where}{path}: incomplete training log ({gaps or 'no rows'}); delete it "
                "and rerun the workflow to publish it again from the run's checkpoints"
            )


def training_curves_figure(logs: dict[tuple[str, RunKey], Path], main_size: str) -> plt.Figure:
    """Loss columns of every pretrain/finetune log vs step; one line per seed."""
    logs = {k: p for k, p in logs.items() if k[1].size == main_size}
    if not logs:
        return no_data_figure("Training curves", f"no train_log.csv at size {main_size!r}")
    panels = sorted(
        {(stage, run.method, run.modality) for stage, run in logs},
        key=lambda p: (p[0] != "pretrain", method_order(p[1]), p),
    )
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax, (stage, method, modality) in zip(axes.ravel(), panels, strict=False):
        runs = sorted(
            (run.seed, path)
            for (s, run), path in logs.items()
            if (s, run.method, run.modality) == (stage, method, modality)
        )
        labelled = set()
        for _, path in runs:
            log = pd.read_csv(path)
            if "step" not in log:
                raise ValueError(f"{path}: training log has no 'step' column")
            check_complete(log, path)
            numeric = [
                c for c in log.columns if c != "step" and pd.api.types.is_numeric_dtype(log[c])
            ]
            columns = [c for c in numeric if "loss" in c] or numeric
            step, boundaries = run_on_steps(log)
            for i, column in enumerate(columns):
                kept = log[column].notna()
                label = column if column not in labelled else None
                labelled.add(column)
                ax.plot(
                    step[kept], log[column][kept], color=f"C{i}", lw=0.9, alpha=0.7, label=label
                )
            for at, phase in boundaries:
                ax.axvline(at, color="0.5", ls="--", lw=0.6)
                ax.annotate(
                    phase,
                    (at, 1.0),
                    xycoords=("data", "axes fraction"),
                    fontsize=6,
                    xytext=(2, -8),
                    textcoords="offset points",
                    color="0.4",
                )
        seeds = f"{len(runs)} seed" + ("s" if len(runs) != 1 else "")
        ax.set_title(f"{stage}: {method} ({modality}, {seeds})", fontsize=8)
        ax.set_xlabel("step")
        ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(f"Training curves (size {main_size})")
    fig.tight_layout()
    return fig


#: What a matrix cell without a gain says, by its state (tables.MISSING etc. are strings).
_NO_GAIN_TEXT = {NOT_RUN: "not run", "missing": "missing", "not_supported": "not supported"}


def objective_matrix_figure(matrix: Matrix) -> plt.Figure:
    """Heatmap of each objective's paired gain over its scratch backbone per column.

    Columns carry different units (bits/spike, balanced accuracy, MAE), so the colour is
    the gain divided by the largest |gain| of its column (-1..1, green = better than
    scratch); the cell text gives the gain itself with its CI, and ``*`` where the CI
    excludes 0. Cells without a gain say why (not run, missing, no shared scratch seed).
    """
    if not matrix.rows or not matrix.columns:
        return no_data_figure("Objective x modality", "no pretraining objective or no column")
    shape = (len(matrix.rows), len(matrix.columns))
    colour = np.full(shape, np.nan)
    fig, ax = plt.subplots(
        figsize=(1.25 * shape[1] + 2.5, 0.8 * shape[0] + 1.8), layout="constrained"
    )
    for j, column in enumerate(matrix.columns):
        gains = [matrix.cells[(r.method, column)].gain for r in matrix.rows]
        scale = max((abs(g.mean) for g in gains if g and math.isfinite(g.mean)), default=0.0)
        for i, gain in enumerate(gains):
            cell = matrix.cells[(matrix.rows[i].method, column)]
            if gain is None or not math.isfinite(gain.mean):
                text = _NO_GAIN_TEXT.get(cell.state, "no scratch pair")
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color="0.35")
                continue
            colour[i, j] = gain.mean / scale if scale > 0 else 0.0
            sure = math.isfinite(gain.lo) and (gain.lo > 0 or gain.hi < 0)
            ci = f"[{gain.lo:+.2g}, {gain.hi:+.2g}]" if math.isfinite(gain.lo) else "[n=1]"
            mark = " ▲" if cell.best else ""
            ax.text(
                j, i, f"{gain.mean:+.3g}{'*' if sure else ''}{mark}\n{ci}",
                ha="center", va="center", fontsize=6.5,
            )  # fmt: skip
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="0.92")
    image = ax.imshow(np.ma.masked_invalid(colour), cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(
        range(shape[1]),
        [f"{c.modality}\n{c.task}\n{c.metric}" for c in matrix.columns],
        fontsize=7,
    )
    ax.set_yticks(range(shape[0]), [r.method for r in matrix.rows], fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="gain over scratch / column max |gain|")
    fig.suptitle(
        f"Objective x modality: paired gain over the same backbone from scratch "
        f"(size {matrix.size}; * = CI excludes 0; ▲ = best objective in the column)",
        fontsize=9,
    )
    return fig
