"""dF/F from raw fluorescence, for files that store only F (and perhaps neuropil).

Convention (one line, as the field uses it): F_corr = F - 0.7 * F_neuropil (suite2p's
default ``neucoeff``, after Chen et al. 2013), baseline F0 = running 8th percentile of
F_corr (CaImAn's ``detrend_df_f`` default quantile), dF/F = (F_corr - F0) / F0.

The running percentile is evaluated every ``window / 10`` and linearly interpolated in
between: a baseline drifts over tens of seconds, so this changes nothing a decoder sees
and keeps a one-hour recording at a few seconds of CPU instead of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurossl.data.resample import interpolate

NEUROPIL_COEFFICIENT = 0.7
BASELINE_PERCENTILE = 8.0
BASELINE_WINDOW_S = 30.0


@dataclass(frozen=True)
class DffResult:
    dff: np.ndarray  # float32 [T, N]
    method: str  # one line for the Session's provenance


class BaselineError(ValueError):
    """The baseline of some ROIs is not positive, so F/F0 has no meaning."""

    def __init__(self, columns: np.ndarray) -> None:
        super().__init__(f"baseline F0 <= 0 in ROI column(s) {columns[:10].tolist()}")
        self.columns = columns


def running_percentile(
    traces: np.ndarray, frame_period: float, window_s: float, percentile: float
) -> np.ndarray:
    """Per column, the ``percentile`` of the centred ``window_s`` window around each frame."""
    n_frames = traces.shape[0]
    width = max(1, min(n_frames, round(window_s / frame_period)))
    step = max(1, width // 10)
    padded = np.pad(traces, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    centres = np.arange(0, n_frames, step)
    if centres[-1] != n_frames - 1:
        centres = np.r_[centres, n_frames - 1]
    baseline = np.empty(traces.shape, dtype=np.float64)
    for column in range(traces.shape[1]):
        windows = np.lib.stride_tricks.sliding_window_view(padded[:, column], width)[centres]
        values = np.percentile(windows, percentile, axis=1)
        baseline[:, column] = interpolate(centres.astype(np.float64), values, np.arange(n_frames))
    return baseline


def dff_from_fluorescence(
    fluorescence: np.ndarray, neuropil: np.ndarray | None, frame_period: float
) -> DffResult:
    """dF/F [T, N] from raw F [T, N] and, if given, the neuropil traces [T, N]."""
    corrected = np.asarray(fluorescence, dtype=np.float64)
    steps = []
    if neuropil is not None:
        corrected = corrected - NEUROPIL_COEFFICIENT * np.asarray(neuropil, dtype=np.float64)
        steps.append(f"F - {NEUROPIL_COEFFICIENT} * neuropil")
    baseline = running_percentile(corrected, frame_period, BASELINE_WINDOW_S, BASELINE_PERCENTILE)
    bad = np.flatnonzero((baseline <= 0).any(axis=0))
    if bad.size:
        raise BaselineError(bad)
    steps.append(f"F0 = running {BASELINE_PERCENTILE:g}th percentile over {BASELINE_WINDOW_S:g} s")
    dff = ((corrected - baseline) / baseline).astype(np.float32)
    return DffResult(dff, "dF/F computed from raw fluorescence: " + "; ".join(steps))
