"""IBL Brain Wide Map (DANDI 000409) NWB -> spiking Session with MtM's trial protocol.

The generic reader (``neurossl.data.nwb``) bins the Units table and reads regions from
each unit's electrode ``location``; this module adds what is IBL-specific:

- trial columns under one canonical name whichever layout wrote them: the older single
  files carry the ALF names (``stimOn_times``, ``firstMovement_times``,
  ``probabilityLeft`` ...), the newer ``desc-processed`` files snake_case names
  (``stim_on_time``, ``first_movement_time``, ``probability_left`` ...);
- MtM's trial filters (Zhang et al. 2024): reaction time (first movement - stimulus
  onset) within [0.08, 2] s, no NaN event time, no no-go choice (``choice == 0``);
- the two behaviours MtM decodes, as ``wheel_speed`` (|wheel velocity|) and
  ``whisker_motion_energy`` (left camera), found by name in any processing module
  because the two layouts file them differently.

Column and series names of the 000409 files were taken from the IBL ALF dataset
descriptions and the ibl-to-nwb naming convention; they could not be checked against a
downloaded file here, which is why lookups go through alias lists and fail loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pynwb import NWBHDF5IO, TimeSeries

from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.nwb_fields import NWBFormatError, sample_times, snake_case
from neurossl.data.resample import interpolate
from neurossl.data.session import Session

#: Canonical trial column -> accepted (snake_case) column names in the two layouts.
TRIAL_ALIASES: dict[str, tuple[str, ...]] = {
    "first_movement_time": ("first_movement_time", "first_movement_times"),
    "choice": ("choice",),
    "probability_left": ("probability_left",),
    "contrast_left": ("contrast_left",),
    "contrast_right": ("contrast_right",),
    "feedback_type": ("feedback_type",),
    "feedback_time": ("feedback_time", "feedback_times"),
}
#: Event times that must be finite for a trial to be kept (MtM drops NaN events).
EVENT_COLUMNS = ("align", "first_movement_time", "feedback_time")
WHEEL = "wheel_speed"
WHISKER = "whisker_motion_energy"


@dataclass(frozen=True)
class IBLOptions:
    min_reaction_time: float = 0.08
    max_reaction_time: float = 2.0
    #: Fail when wheel or whisker traces are missing (MtM decodes both).
    require_behavior: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "ibl") -> IBLOptions:
        known = {"min_reaction_time", "max_reaction_time", "require_behavior"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
        options = cls(**values)
        if not 0 <= options.min_reaction_time < options.max_reaction_time:
            raise ValueError(
                f"{where}: need 0 <= min_reaction_time < max_reaction_time, got "
                f"{options.min_reaction_time}, {options.max_reaction_time}"
            )
        return options


def read_ibl_session(
    nwb_path: str | Path,
    *,
    dataset: str,
    session: str,
    spike_bin_size: float,
    options: IBLOptions,
) -> Session:
    """One 000409 file -> a validated spiking Session with filtered, labelled trials."""
    path = Path(nwb_path)
    result = nwb_to_sessions(
        path, dataset=dataset, session=session, modalities=["spikes"], spike_bin_size=spike_bin_size
    )["spikes"]
    trials = canonical_trials(result.trials, path)
    keep = mtm_trial_mask(trials, options)
    if not keep.any():
        raise NWBFormatError(path, "trials", "no trial passes the MtM filters")
    result.trials = trials[keep].reset_index(drop=True)
    behavior = read_ibl_behavior(path, options.require_behavior)
    centres = result.times + 0.5 * result.bin_size
    names = list(behavior)
    result.behavior = (
        np.stack([interpolate(t, v, centres) for t, v in behavior.values()], axis=1).astype(
            np.float32
        )
        if names
        else np.empty((result.n_bins, 0), dtype=np.float32)
    )
    result.behavior_names = names
    result.validate(where=str(path))
    return result


def canonical_trials(trials: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Trials with IBL columns under canonical names, plus signed contrast and RT."""
    if trials.empty:
        raise NWBFormatError(path, "trials", "missing or empty; IBL sessions need trials")
    out = trials[["start", "stop", "align"]].copy()
    if np.array_equal(out["align"].to_numpy(), out["start"].to_numpy()):
        raise NWBFormatError(path, "trials/stim_on_time", "missing (no stimulus-onset column)")
    for name, aliases in TRIAL_ALIASES.items():
        found = [a for a in aliases if a in trials.columns]
        if not found:
            raise NWBFormatError(path, f"trials/{aliases[0]}", f"missing (also tried {aliases})")
        out[name] = trials[found[0]].to_numpy(dtype=np.float64)
    left = np.nan_to_num(out["contrast_left"].to_numpy())
    right = np.nan_to_num(out["contrast_right"].to_numpy())
    out["signed_contrast"] = right - left
    out["block"] = out["probability_left"]
    out["reaction_time"] = out["first_movement_time"] - out["align"]
    return out


def mtm_trial_mask(trials: pd.DataFrame, options: IBLOptions) -> np.ndarray:
    """MtM's filters: RT in [min, max] s, finite event times, a choice was made."""
    events = trials[list(EVENT_COLUMNS)].to_numpy(dtype=np.float64)
    rt = trials["reaction_time"].to_numpy(dtype=np.float64)
    choice = trials["choice"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(events).all(axis=1)
            & np.isfinite(trials["probability_left"].to_numpy(dtype=np.float64))
            & (rt >= options.min_reaction_time)
            & (rt <= options.max_reaction_time)
            & np.isfinite(choice)
            & (choice != 0)
        )


def read_ibl_behavior(path: Path, required: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(times, values) of wheel speed and left-camera whisker motion energy."""
    found: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        for module in nwbfile.processing.values():
            for series, field in _all_series(module):
                kind = _behavior_kind(snake_case(series.name), snake_case(field))
                if kind is None:
                    continue
                if kind in found:
                    raise NWBFormatError(
                        path, field, f"a second {kind} series besides {found[kind][2]}"
                    )
                values = np.asarray(series.data[:], dtype=np.float64).reshape(-1)
                times = sample_times(series, path, field)
                if kind == WHEEL:
                    values = np.abs(values)
                found[kind] = (times, values, field)
    missing = [k for k in (WHEEL, WHISKER) if k not in found]
    if missing and required:
        raise NWBFormatError(
            path,
            "processing/*",
            f"no series for {missing} (looked for names containing wheel+velocity and "
            "left+motion_energy); set ibl.require_behavior: false to go without",
        )
    return {k: (found[k][0], found[k][1]) for k in (WHEEL, WHISKER) if k in found}


def _all_series(module: Any) -> list[tuple[TimeSeries, str]]:
    out = []
    for interface in module.data_interfaces.values():
        base = f"processing/{module.name}/{interface.name}"
        if isinstance(interface, TimeSeries):
            out.append((interface, base))
            continue
        for attribute in ("time_series", "spatial_series"):
            for series in getattr(interface, attribute, {}).values():
                out.append((series, f"{base}/{series.name}"))
    return out


def _behavior_kind(name: str, field: str) -> str | None:
    text = f"{field}_{name}"
    if "wheel" in text and "velocity" in text:
        return WHEEL
    if "motion_energy" in text and "left" in text:
        return WHISKER
    return None
