"""Events and rates onto a regular bin grid.

Bin ``i`` is ``[t0 + i*bin_size, t0 + (i+1)*bin_size)`` with the edges computed exactly
that way in float64. ``floor((t - t0) / bin_size)`` alone disagrees with those edges for
spikes within a few ulps of an edge (e.g. a spike stamped exactly on an edge can land
one bin early), so the few spikes near an edge are re-checked against the edges
themselves. Counts and the expected counts of ground truth use the same grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Spikes whose scaled position is this close to an integer are checked against the edges.
_EDGE_TOLERANCE = 1e-6
#: Bytes of one [N, rows] tile of counts: it is transposed into the [T, N] output while it
#: sits in the per-core L2 cache.
_TILE_BYTES = 1 << 20
#: Bytes of the staging of one time chunk (a whole number of tiles). Larger chunks mean
#: fewer per-unit numpy calls (measured: 32-128 MB within noise of each other at 384
#: units); the bound keeps the extra memory a fraction of the grid for long recordings.
_CHUNK_BYTES = 1 << 26


def bin_index(times: np.ndarray, t0: float, bin_size: float) -> np.ndarray:
    """Index (float64, integral) of the bin holding each time; may be out of range."""
    scaled = np.subtract(times, t0, dtype=np.float64)
    scaled /= bin_size
    index = np.floor(scaled)
    scaled -= index
    near = np.flatnonzero((scaled < _EDGE_TOLERANCE) | (scaled > 1 - _EDGE_TOLERANCE))
    if near.size:
        t, i = times[near], index[near]
        i -= t < t0 + i * bin_size
        i += t >= t0 + (i + 1) * bin_size
        index[near] = i
    return index


def bin_spike_times(
    spike_times: Sequence[np.ndarray] | np.ndarray,
    t0: float,
    bin_size: float,
    n_bins: int,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """Spike counts float32 [n_bins, N] from per-unit spike trains.

    ``spike_times`` is either one array per unit, or (with ``index``) one flat array and
    the NWB-style ragged index: ``index[j]`` is the end of unit j's spikes. Spikes outside
    ``[t0, t0 + n_bins*bin_size)`` are dropped.

    The grid is usually larger than the spikes (at 20 ms and ~15 Hz, ~3 cells per spike),
    so the cost is in writing it: counting one unit at a time yields columns of the
    [T, N] output, and writing a column touches a cache line per bin. Instead the grid is
    made in time chunks: each unit's spikes of the chunk (found by binary search on the
    chunk's exact edges, so no spike changes bin) are counted with one ``bincount`` into
    a unit-major staging buffer, which is then transposed into the output one L2-sized
    tile at a time, so every output row is written whole, once (1.5-2x faster than
    writing blocks of 16 columns at 384 units; see benchmarks/RESULTS.md).
    """
    if bin_size <= 0 or n_bins < 0:
        raise ValueError(f"need bin_size > 0 and n_bins >= 0, got {bin_size}, {n_bins}")
    if index is None:
        trains = [np.asarray(train, dtype=np.float64) for train in spike_times]
        flat = np.concatenate(trains) if trains else np.empty(0)
        ends = np.cumsum([train.size for train in trains], dtype=np.int64)
    else:
        flat = np.asarray(spike_times, dtype=np.float64)
        ends = np.asarray(index, dtype=np.int64)
    n_units = ends.size
    counts = np.empty((n_bins, n_units), dtype=np.float32)
    if counts.size == 0:
        return counts
    tile_rows = max(1, _TILE_BYTES // (4 * n_units))
    chunk_tiles = min(max(1, _CHUNK_BYTES // (4 * n_units * tile_rows)), -(-n_bins // tile_rows))
    chunk_rows = chunk_tiles * tile_rows
    # Tile-major: each [N, tile_rows] tile is contiguous, so its transpose stays in cache.
    staging = np.empty((chunk_tiles, n_units, tile_rows), dtype=np.float32)
    splits = _chunk_splits(flat, ends, t0 + np.arange(chunk_rows, n_bins, chunk_rows) * bin_size)
    for chunk, first in enumerate(range(0, n_bins, chunk_rows)):
        tiles = min(chunk_tiles, -(-(n_bins - first) // tile_rows))
        padded = tiles * tile_rows
        for unit in range(n_units):
            cell = bin_index(flat[splits[unit, chunk] : splits[unit, chunk + 1]], t0, bin_size)
            # Cells 0 and padded + 1 collect the spikes before and after this chunk; those
            # past the grid but inside the last tile's padding land in rows never copied.
            cell -= first - 1
            np.clip(cell, 0, padded + 1, out=cell)
            column = np.bincount(cell.astype(np.intp), minlength=padded + 2)[1:-1]
            staging[:tiles, unit] = column.reshape(tiles, tile_rows)
        for tile in range(tiles):
            row = first + tile * tile_rows
            stop = min(n_bins, row + tile_rows)
            counts[row:stop] = staging[tile, :, : stop - row].T
    return counts


def _chunk_splits(flat: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[N, chunks + 1] offsets into ``flat``: unit j's spikes of chunk k are
    ``flat[splits[j, k]:splits[j, k + 1]]``; chunk k starts at ``edges[k - 1]``.

    Spikes before the first or after the last edge stay in the first or last chunk, where
    binning drops those outside the grid.
    """
    starts = np.r_[0, ends[:-1]]
    splits = np.empty((ends.size, edges.size + 2), dtype=np.int64)
    splits[:, 0], splits[:, -1] = starts, ends
    for unit, (start, end) in enumerate(zip(starts, ends, strict=True)):
        splits[unit, 1:-1] = start + np.searchsorted(flat[start:end], edges)
    return splits


def expected_counts(
    rates: np.ndarray, rate_t0: float, rate_dt: float, t0: float, bin_size: float, n_bins: int
) -> np.ndarray:
    """Expected spikes per bin, float32 [n_bins, N], from rates held constant per sample.

    The integral of a piecewise-constant rate is piecewise linear, so interpolating the
    cumulative integral at the bin edges is exact for any bin size or offset. Outside the
    rates' span the rate is taken as zero.
    """
    cumulative = np.zeros((rates.shape[0] + 1, rates.shape[1]))
    np.cumsum(rates * rate_dt, axis=0, out=cumulative[1:])
    knots = rate_t0 + np.arange(cumulative.shape[0]) * rate_dt
    edges = t0 + np.arange(n_bins + 1) * bin_size
    position = np.clip((edges - knots[0]) / rate_dt, 0, rates.shape[0])
    lower = np.minimum(np.floor(position).astype(np.int64), rates.shape[0] - 1)
    weight = (position - lower)[:, None]
    at_edges = cumulative[lower] * (1 - weight) + cumulative[lower + 1] * weight
    return np.diff(at_edges, axis=0).astype(np.float32)
