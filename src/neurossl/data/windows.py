"""Cutting a session's time line into windows and assigning them to train/valid/test.

Trial recordings get one window per trial, aligned to the trial's ``align`` time
(MtM: stimulus onset, -0.5 s .. +1.5 s) and assigned by a seeded permutation (MtM's
70/10/20). Continuous recordings are cut into contiguous blocks and *whole blocks* are
assigned, so neighbouring (autocorrelated) windows never sit on both sides of a split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurossl.data.splits import SPLIT_NAMES, Windows


def check_fractions(fractions: dict[str, float]) -> np.ndarray:
    """Split fractions in SPLIT_NAMES order; they must be non-negative and sum to 1."""
    missing = [name for name in SPLIT_NAMES if name not in fractions]
    if missing:
        raise ValueError(f"split fractions lack {missing}; expected keys {SPLIT_NAMES}")
    values = np.array([float(fractions[name]) for name in SPLIT_NAMES])
    if (values < 0).any() or not np.isclose(values.sum(), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    return values


def check_trial_window(pre: float, post: float) -> None:
    if pre < 0 or post <= 0:
        raise ValueError(f"trial window needs pre >= 0 and post > 0, got pre={pre}, post={post}")


def check_block_window(window: float, block: float) -> None:
    if window <= 0 or block < window:
        raise ValueError(f"need 0 < window <= block, got window={window}, block={block}")


def _assign(n_items: int, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seeded assignment of n items with exact counts (rounded, remainder to train)."""
    counts = np.floor(fractions * n_items).astype(int)
    counts[0] += n_items - counts.sum()
    labels = np.repeat(np.array(SPLIT_NAMES, dtype=object), counts)
    return labels[rng.permutation(n_items)]


def trial_windows(
    trials: pd.DataFrame,
    extent: tuple[float, float],
    pre: float,
    post: float,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> Windows:
    """One window [align - pre, align + post) per trial that lies inside ``extent``."""
    check_trial_window(pre, post)
    align = trials["align"].to_numpy(dtype=np.float64)
    start, stop = align - pre, align + post
    inside = np.isfinite(align) & (start >= extent[0]) & (stop <= extent[1])
    rows = np.flatnonzero(inside)
    if rows.size == 0:
        raise ValueError(f"no trial window of [-{pre}, +{post}] s fits in the recording {extent}")
    split = _assign(rows.size, check_fractions(fractions), rng)
    return Windows(start[rows], stop[rows], split, rows.astype(np.int64))


def block_windows(
    extent: tuple[float, float],
    window: float,
    block: float,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> Windows:
    """Non-overlapping windows of ``window`` s inside blocks of ``block`` s; blocks are split."""
    check_block_window(window, block)
    per_block = int(np.floor(block / window + 1e-9))
    n_blocks = int(np.floor((extent[1] - extent[0]) / block + 1e-9))
    if n_blocks < len(SPLIT_NAMES):
        raise ValueError(
            f"recording {extent} holds {n_blocks} blocks of {block} s; need at least "
            f"{len(SPLIT_NAMES)} to make train/valid/test"
        )
    block_split = _assign(n_blocks, check_fractions(fractions), rng)
    block_index = np.repeat(np.arange(n_blocks), per_block)
    offsets = np.tile(np.arange(per_block) * window, n_blocks)
    start = extent[0] + block_index * block + offsets
    return Windows(
        start=start,
        stop=start + window,
        split=block_split[block_index],
        trial=np.full(start.shape, -1, dtype=np.int64),
    )
