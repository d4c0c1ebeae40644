"""A dataset at a glance: what was recorded, and which neurons count as predictable.

Shown before any model result so a reader can judge the data a benchmark rests on:
sessions per subject, neurons per region and modality, rate / dF/F distributions, and
the skewness-kurtosis scatter with the thresholds the split step chose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from neurossl.atomic import atomic_path, write_json
from neurossl.data.splits import read_splits
from neurossl.names import session_key


def _bin_sizes(session_files: list[str]) -> dict[tuple[str, str], float]:
    sizes = {}
    for path in session_files:
        with h5py.File(path, "r") as f:
            sizes[session_key(path)] = float(f["activity"].attrs["bin_size"])
    return sizes


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_regions(stats: pd.DataFrame, path: str | Path) -> None:
    counts = stats.groupby(["region", "modality"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    counts.plot.bar(ax=ax)
    ax.set_ylabel("neurons (all sessions)")
    ax.set_title("Neurons per region and modality")
    _save(fig, path)


def plot_distributions(stats: pd.DataFrame, path: str | Path) -> None:
    modalities = sorted(stats["modality"].unique())
    fig, axes = plt.subplots(1, len(modalities), figsize=(5 * len(modalities), 3.5), squeeze=False)
    for ax, modality in zip(axes[0], modalities, strict=True):
        part = stats[stats["modality"] == modality]
        if modality == "spikes":
            ax.hist(part["rate_hz"], bins=30, color="tab:blue")
            ax.set_xlabel("mean firing rate (Hz, training windows)")
        else:
            ax.hist(part["mean"], bins=30, color="tab:green")
            ax.set_xlabel("mean dF/F (training windows)")
        ax.set_ylabel("neurons")
        ax.set_title(modality)
    _save(fig, path)


def plot_predictability(stats: pd.DataFrame, thresholds: dict[str, Any], path: str | Path) -> None:
    modalities = sorted(stats["modality"].unique())
    fig, axes = plt.subplots(1, len(modalities), figsize=(5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities, strict=True):
        part = stats[stats["modality"] == modality]
        for flag, colour, label in (
            (True, "tab:blue", "predictable"),
            (False, "tab:red", "unpredictable"),
        ):
            sel = part[part["predictable"] == flag]
            ax.scatter(
                sel["skewness"], sel["kurtosis"], s=8, c=colour, label=f"{label} ({len(sel)})"
            )
        chosen = thresholds[modality]
        ax.axvline(chosen["skewness_threshold"], color="k", ls="--", lw=1)
        ax.axhline(chosen["kurtosis_threshold"], color="k", ls=":", lw=1)
        ax.set_xlabel("skewness (training windows)")
        ax.set_ylabel("excess kurtosis")
        title = f"{modality}: thresholds from {chosen['threshold_source']}"
        if chosen.get("precision") is not None:
            title += f"\nprecision {chosen['precision']:.2f}, recall {chosen['recall']:.2f}"
        ax.set_title(title, fontsize=9)
        ax.set_yscale("symlog")
        ax.legend(fontsize=8)
    _save(fig, path)


def write_dataset_summary(
    *,
    splits_path: str | Path,
    stats_path: str | Path,
    session_files: list[str],
    summary_path: str | Path,
    regions_png: str | Path,
    distributions_png: str | Path,
    predictability_png: str | Path,
) -> dict[str, Any]:
    splits = read_splits(splits_path)
    stats = pd.read_csv(stats_path)
    bin_sizes = _bin_sizes(session_files)
    stats["rate_hz"] = [
        m / bin_sizes[(s, mod)]
        for m, s, mod in zip(stats["mean"], stats["session"], stats["modality"], strict=True)
    ]
    plot_regions(stats, regions_png)
    plot_distributions(stats, distributions_png)
    plot_predictability(stats, splits.predictability, predictability_png)
    subjects = {}
    for path in session_files:
        with h5py.File(path, "r") as f:
            subjects[session_key(path)[0]] = str(f["meta"].attrs["subject"])
    summary = {
        "dataset": splits.dataset,
        "sessions": sorted(subjects),
        "subjects": sorted(set(subjects.values())),
        "pretrain_sessions": splits.pretrain_sessions,
        "heldout_sessions": splits.heldout_sessions,
        "neurons": {
            modality: {
                "total": len(part),
                "per_region": {str(k): int(v) for k, v in part.groupby("region").size().items()},
                "median_rate_hz" if modality == "spikes" else "median_mean_dff": float(
                    np.median(part["rate_hz"] if modality == "spikes" else part["mean"])
                ),
            }
            for modality, part in stats.groupby("modality")
        },
        "windows": {
            session: {split: int((w.split == split).sum()) for split in ("train", "valid", "test")}
            for session, w in splits.windows.items()
        },
        "predictability": splits.predictability,
    }
    write_json(summary_path, summary)
    return summary
