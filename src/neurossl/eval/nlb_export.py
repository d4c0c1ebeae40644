"""Co-smoothing rates in the Neural Latents Benchmark's submission format, scored by
``nlb_tools``.

``nlb_tools`` defines both sides: ``make_tensors.make_eval_target_tensors`` cuts the
targets (held-out spikes of the "val" trials, hand velocity of train and val trials)
from the NWB file, and ``evaluation.evaluate`` scores a submission
``{dataset: {eval_rates_heldin, eval_rates_heldout, train_rates_heldin,
train_rates_heldout}}`` (``[trials, bins, units]``, spikes per bin) with co-bps, vel R2
and, when forward rates are given, fp-bps. This module only puts a model's rates into
that layout and NLB's trial and unit order; the scores are nlb_tools' own.

neurossl's saved co-smoothing predictions (``predictions.npz``) hold the held-out
neurons' rates on its test windows only; NLB also wants held-in rates and the train
trials' rates (for its velocity decoder), so a submission is built from a model's rate
predictions for all units on NLB-binned windows (:func:`to_nlb_order`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurossl.atomic import atomic_dir, atomic_path
from neurossl.data.session import Session, read_session
from neurossl.data.sources.nlb import (
    HELDOUT_COLUMN,
    NLB_DANDISETS,
    SPLIT_COLUMN,
    load_nlb_dataset,
)
from neurossl.eval.bwb_export import Run, own_values

#: The arrays evaluate() reads from a submission for co-bps and vel R2.
SUBMISSION_KEYS = (
    "eval_rates_heldin",
    "eval_rates_heldout",
    "train_rates_heldin",
    "train_rates_heldout",
)


def dataset_key(name: str, bin_ms: int) -> str:
    """The key nlb_tools files a dataset under: ``mc_maze`` at 5 ms, ``mc_maze_20`` at 20."""
    return name if bin_ms == 5 else f"{name}_{bin_ms}"


def eval_targets(nwb_path: str | Path, name: str, bin_ms: int = 5) -> dict[str, Any]:
    """NLB's evaluation targets of the file's "val" trials, made by nlb_tools."""
    from nlb_tools.make_tensors import make_eval_target_tensors

    dataset = load_nlb_dataset(nwb_path, bin_ms)
    return make_eval_target_tensors(
        dataset, name, train_trial_split="train", eval_trial_split="val", save_file=False
    )


def submission(name: str, bin_ms: int, rates: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The submission dict; ``rates`` holds :data:`SUBMISSION_KEYS` (``[trials, bins, units]``)."""
    missing = [k for k in SUBMISSION_KEYS if k not in rates]
    if missing:
        raise KeyError(f"NLB submission lacks {missing}; expected {SUBMISSION_KEYS}")
    out = {}
    for key, value in rates.items():
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 3 or not np.isfinite(array).all() or (array < 0).any():
            raise ValueError(f"NLB submission {key}: need finite rates >= 0 [trials, bins, units]")
        out[key] = array
    return {dataset_key(name, bin_ms): out}


def write_submission(data: Mapping[str, Any], path: str | Path) -> None:
    """Write with nlb_tools' own HDF5 writer, atomically."""
    from nlb_tools.make_tensors import save_to_h5

    with atomic_path(path) as tmp:
        save_to_h5(dict(data), str(tmp), overwrite=True)


def score(
    targets: Mapping[str, Any] | str | Path, data: Mapping[str, Any] | str | Path
) -> dict[str, float]:
    """nlb_tools.evaluation.evaluate on one dataset (dicts or HDF5 paths); its metric names."""
    from nlb_tools.evaluation import evaluate

    def _arg(value: Mapping[str, Any] | str | Path) -> Any:
        return str(value) if isinstance(value, (str, Path)) else dict(value)

    results = evaluate(_arg(targets), _arg(data))
    if not results:
        raise ValueError(f"nlb_tools scored nothing: targets {targets!r} vs submission {data!r}")
    merged: dict[str, float] = {}
    for entry in results:
        for metrics in entry.values():
            merged.update({k: float(v) for k, v in metrics.items()})
    return merged


def to_nlb_order(
    rates: np.ndarray, trial_rows: np.ndarray, session: Session, nlb_split: str
) -> tuple[np.ndarray, np.ndarray]:
    """(held-in, held-out) rates of one NLB split's trials in NLB's order.

    ``rates`` are a model's predictions for every neuron of the Session
    ``[windows, bins, N]``, window ``i`` being trial row ``trial_rows[i]`` (a Windows'
    ``trial``); NLB orders trials as its file does and units held-in first, each group
    in the file's unit order, which is the Session's neuron order.
    """
    trials = session.trials
    if SPLIT_COLUMN not in trials.columns or HELDOUT_COLUMN not in session.neurons.columns:
        raise ValueError(f"{session.meta['source_path']}: not an NLB Session (no NLB columns)")
    trial_rows = np.asarray(trial_rows)
    if rates.ndim != 3 or rates.shape[0] != trial_rows.size or rates.shape[2] != session.n_neurons:
        raise ValueError(
            f"rates {rates.shape} do not match {trial_rows.size} windows x "
            f"{session.n_neurons} neurons"
        )
    wanted = np.flatnonzero(trials[SPLIT_COLUMN].astype(str).to_numpy() == nlb_split)
    position = {int(row): i for i, row in enumerate(trial_rows)}
    absent = [int(r) for r in wanted if int(r) not in position]
    if absent:
        raise ValueError(f"no window for NLB {nlb_split!r} trial rows {absent[:5]}")
    order = [position[int(r)] for r in wanted]
    held_out = session.neurons[HELDOUT_COLUMN].to_numpy(dtype=bool)
    ordered = rates[order]
    return ordered[:, :, ~held_out], ordered[:, :, held_out]


# --- a run's saved co-smoothing predictions ---

SCORE_COLUMNS = [
    "method", "size", "seed", "session", "task", "metric", "value", "neurossl_value",
    "n_trials", "submission",
]  # fmt: skip
#: What a submission built from saved predictions lacks, shown beside its scores.
MISSING = (
    "neurossl saves the held-out units' rates of the scored windows only: the "
    "submission holds eval_rates_heldout, so nlb_tools' co-bps is scored and vel R2, "
    "psth R2 and fp-bps (which need held-in, train-trial and forward rates) are not.",
    "neurossl's co-smoothing input is every held-in unit of the window, as NLB's; its "
    "models are pretrained and fine-tuned on this one recording's train trials.",
)


def nlb_name(options: Mapping[str, Any], dandiset: str | None) -> str:
    """The nlb_tools dataset name: ``nlb.benchmark``, else from the dandiset id."""
    if "benchmark" in options:
        return str(options["benchmark"])
    if dandiset in NLB_DANDISETS:
        return NLB_DANDISETS[dandiset]
    raise ValueError(
        f"set nlb.benchmark to one of {sorted(NLB_DANDISETS.values())}: the dataset is not "
        f"one of NLB's dandisets {sorted(NLB_DANDISETS)}"
    )


def saved_heldout_rates(predictions_npz: Path, session: Session) -> np.ndarray | None:
    """The held-out rates a run saved for the NLB "val" trials, in NLB's order; None when
    the method has no co-smoothing (e.g. the ``mean`` baseline)."""
    sid = session.meta["session"]
    with np.load(predictions_npz) as saved:
        key = f"co_smoothing/{sid}/pred"
        if key not in saved.files:
            return None
        pred, trials = saved[key], saved[f"windows/{sid}/trial"]
    _, held_out = to_nlb_order(pred, trials, session, "val")
    if not np.isfinite(held_out).all():
        raise ValueError(f"{predictions_npz}: {key} has no rate for some held-out unit/bin")
    return held_out


def score_runs(
    runs: list[Run], session_path: Path, nwb_path: Path, name: str, files_dir: Path
) -> pd.DataFrame:
    """One co-bps row per run, scored by nlb_tools, neurossl's own bps beside it."""
    from nlb_tools.evaluation import bits_per_spike as nlb_bits_per_spike

    session = read_session(session_path)
    bin_ms = int(session.meta["nlb_bin_ms"])
    key = dataset_key(name, bin_ms)
    targets = eval_targets(nwb_path, name, bin_ms)
    observed = np.asarray(targets[key]["eval_spikes_heldout"], dtype=np.float64)
    rows = []
    for run in runs:
        rates = saved_heldout_rates(run.predictions, session)
        if rates is None:
            continue
        if rates.shape != observed.shape:
            raise ValueError(
                f"{run.predictions}: rates {rates.shape} vs NLB's val targets {observed.shape}; "
                "split.pre/post must be NLB's window (0.25/0.45 s for MC_Maze)"
            )
        out = files_dir / f"{run.label}-seed{run.seed}.h5"
        write_submission({key: {"eval_rates_heldout": rates}}, out)
        own = own_values(run.metrics)
        sid = session.meta["session"]
        rows.append(
            {
                "method": run.method,
                "size": run.size,
                "seed": run.seed,
                "session": sid,
                "task": "co_smoothing",
                "metric": "co-bps",
                "value": float(nlb_bits_per_spike(rates, observed)),
                "neurossl_value": own.get((sid, "co_smoothing", "bps"), np.nan),
                "n_trials": observed.shape[0],
                "submission": out.name,
            }
        )
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def write_scores(
    runs: list[Run],
    session_path: Path,
    nwb_path: Path,
    name: str,
    scores_csv: Path,
    files_dir: Path,
) -> pd.DataFrame:
    """The rule's job: submissions under ``files_dir`` and the scores, both atomically."""
    with atomic_dir(files_dir) as tmp:
        table = score_runs(runs, Path(session_path), Path(nwb_path), name, tmp)
        (tmp / "MISSING.txt").write_text("\n".join(MISSING) + "\n")
    with atomic_path(scores_csv) as path:
        table.to_csv(path, index=False)
    return table
