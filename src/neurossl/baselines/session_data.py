"""One held-out session's windows as dense arrays, for baselines fitted in closed form.

Baselines fit per session on all train windows at once (ridge, logistic) or in a few
hundred full-batch steps, so they want ``[W, T, N]`` arrays, not a batch stream. The
windows are read through :class:`neurossl.data.loader.WindowDataset`, so bin
arithmetic, label lookup and truth columns are exactly those every other method sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from neurossl.contract import StageInputs
from neurossl.data.loader import WindowDataset
from neurossl.data.session import read_neurons
from neurossl.names import session_key


@dataclass(frozen=True)
class SessionInfo:
    """The neuron table facts a baseline needs, in the Session file's neuron order."""

    session: str
    path: Path
    modality: str
    regions: np.ndarray  # str [N]
    neuron_ids: tuple[str, ...]  # [N], the Session file's order
    #: bool [N] from the splits' held-out ids; None when the splits have no such group.
    held_out: np.ndarray | None


@dataclass(frozen=True)
class SplitArrays:
    """All windows of one split of one session, stacked."""

    activity: np.ndarray  # float64 [W, T, N]
    behavior: np.ndarray  # float64 [W, T, B], NaN where missing
    behavior_names: tuple[str, ...]
    labels: dict[str, np.ndarray]  # trial column -> [W]; -1 / NaN for non-trial windows
    truth: dict[str, np.ndarray]  # "rates" / "signal" -> [W, T, N] when the Session has it


def session_info(inputs: StageInputs, session: str) -> SessionInfo:
    if session not in inputs.session_paths:
        raise KeyError(f"held-out session {session!r} has no Session file in session_paths")
    path = Path(inputs.session_paths[session])
    _, modality = session_key(path)
    neurons = read_neurons(path)
    ids = [str(i) for i in neurons["id"]]
    held_out = None
    groups = inputs.splits.neurons.get(modality, {}).get(session, {})
    if "held_out" in groups:
        held_out = _membership(path, ids, groups["held_out"], "held-out")
    regions = np.array([str(r) for r in neurons["region"]], dtype=str)
    return SessionInfo(session, path, modality, regions, tuple(ids), held_out)


def load_split(inputs: StageInputs, session: str, split: str) -> SplitArrays:
    """Stack the ``split`` windows of one session; they must share one length."""
    dataset = WindowDataset(inputs.session_paths, inputs.splits, split, [session])
    if len(dataset) == 0:
        raise ValueError(f"session {session!r} has no {split!r} windows in the splits")
    items = [dataset[i] for i in range(len(dataset))]
    lengths = {it["activity"].shape[0] for it in items}
    if len(lengths) != 1:
        raise ValueError(
            f"{inputs.session_paths[session]}: {split} windows have lengths {sorted(lengths)} "
            "bins; baselines need windows of one length"
        )
    label_keys = sorted(k for k in items[0] if k.startswith("label/"))
    truth_keys = [k for k in ("rates", "signal") if k in items[0]]
    return SplitArrays(
        activity=np.stack([it["activity"] for it in items]).astype(np.float64),
        behavior=np.stack([it["behavior"] for it in items]).astype(np.float64),
        behavior_names=dataset.behavior_names(session),
        labels={k.removeprefix("label/"): np.array([it[k] for it in items]) for k in label_keys},
        truth={k: np.stack([it[k] for it in items]).astype(np.float64) for k in truth_keys},
    )


def neuron_group_columns(inputs: StageInputs, info: SessionInfo, group: str) -> np.ndarray:
    """Columns (file order) of the neurons the split step put in ``group`` for this session."""
    groups = inputs.splits.neurons.get(info.modality, {}).get(info.session, {})
    if not groups.get(group):
        raise KeyError(
            f"{info.path}: splits name no {group!r} {info.modality} neurons for session "
            f"{info.session!r} (groups there: {sorted(k for k, v in groups.items() if v)})"
        )
    return np.flatnonzero(_membership(info.path, info.neuron_ids, groups[group], repr(group)))


def _membership(path: Path, ids: Sequence[str], chosen: Sequence[str], what: str) -> np.ndarray:
    """bool [N]: which of the file's neurons the splits put in a group; unknown ids fail."""
    wanted = {str(i) for i in chosen}
    unknown = wanted - set(ids)
    if unknown:
        raise KeyError(f"{path}: splits name {what} neurons {sorted(unknown)[:5]} not in it")
    return np.array([i in wanted for i in ids], dtype=bool)


def select_neurons(data: SplitArrays, columns: np.ndarray) -> SplitArrays:
    """The same windows with only the given neuron columns (truth arrays too)."""
    return replace(
        data,
        activity=data.activity[:, :, columns],
        truth={k: v[:, :, columns] for k, v in data.truth.items()},
    )


def ground_truth(info: SessionInfo, data: SplitArrays) -> np.ndarray:
    """The oracle's answer [W, T, N]: true rates (spikes) or noise-free signal (calcium)."""
    key = "rates" if info.modality == "spikes" else "signal"
    if key not in data.truth:
        raise ValueError(
            f"{info.path}: the oracle needs ground truth {key!r}; the Session has none "
            "(only synthetic data carries truth)"
        )
    return data.truth[key]
