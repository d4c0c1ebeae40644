"""Binning, expected counts and resampling against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from neurossl.data import binning
from neurossl.data.binning import bin_spike_times, expected_counts
from neurossl.data.resample import interpolate


def brute_force_counts(trains: list[np.ndarray], t0: float, bin_size: float, n: int) -> np.ndarray:
    """Bin i is [t0 + i*bin_size, t0 + (i+1)*bin_size), edges computed exactly so."""
    edges = t0 + np.arange(n + 1) * bin_size
    out = np.zeros((n, len(trains)), dtype=np.float32)
    for j, train in enumerate(trains):
        for i in range(n):
            out[i, j] = np.count_nonzero((train >= edges[i]) & (train < edges[i + 1]))
    return out


@pytest.mark.parametrize(
    ("t0", "bin_size", "n_bins"), [(0.0, 0.02, 50), (0.3, 0.1, 37), (-1.7, 1 / 30, 61)]
)
def test_random_trains_with_edge_cases_match_brute_force(t0: float, bin_size: float, n_bins: int):
    rng = np.random.default_rng(7)
    end = t0 + n_bins * bin_size
    edges = t0 + np.arange(n_bins + 1) * bin_size
    trains = []
    for _ in range(9):
        random = rng.uniform(t0 - 0.5, end + 0.5, rng.integers(0, 400))
        on_edges = rng.choice(edges, 20)  # includes t0 and the final edge sometimes
        train = np.concatenate([random, on_edges, [t0, end, t0 - 1e-12, end - 1e-12]])
        trains.append(np.sort(train))
    trains.append(np.empty(0))
    counts = bin_spike_times(trains, t0, bin_size, n_bins)
    assert counts.dtype == np.float32 and counts.shape == (n_bins, len(trains))
    np.testing.assert_array_equal(counts, brute_force_counts(trains, t0, bin_size, n_bins))


def test_flat_array_with_ragged_index_equals_list_form():
    rng = np.random.default_rng(1)
    trains = [np.sort(rng.uniform(0, 10, n)) for n in (5, 0, 300, 17)]
    flat = np.concatenate(trains)
    ends = np.cumsum([t.size for t in trains])
    np.testing.assert_array_equal(
        bin_spike_times(flat, 0.0, 0.05, 200, index=ends), bin_spike_times(trains, 0.0, 0.05, 200)
    )


def test_spike_on_an_edge_lands_in_the_bin_it_starts():
    # Edges are t0 + i * bin_size in float64: 3 * 0.1 = 0.30000000000000004 starts bin 3,
    # 7 * 0.1 = 0.7000000000000001 starts bin 7, so the literal 0.7 still belongs to bin 6.
    counts = bin_spike_times([np.array([3 * 0.1, 0.7, 7 * 0.1])], 0.0, 0.1, 10)
    assert counts[3, 0] == 1 and counts[6, 0] == 1 and counts[7, 0] == 1 and counts.sum() == 3


def test_spikes_outside_the_grid_are_dropped():
    counts = bin_spike_times([np.array([-0.01, 0.0, 0.999, 1.0, 5.0])], 0.0, 0.1, 10)
    assert counts.sum() == 2 and counts[0, 0] == 1 and counts[9, 0] == 1


def test_expected_counts_integrate_piecewise_constant_rates_exactly():
    rng = np.random.default_rng(3)
    rates = rng.uniform(0, 50, (400, 3))  # 10 ms samples from t=0.2 s
    rate_t0, dt = 0.2, 0.01
    t0, bin_size, n_bins = 0.137, 0.023, 180  # misaligned, and running past the rates' end
    expected = expected_counts(rates, rate_t0, dt, t0, bin_size, n_bins)
    fine = 1e-4  # brute force: midpoint sum on a 0.1 ms grid
    for i in (0, 5, 60, 150, 179):
        t = t0 + i * bin_size + (np.arange(round(bin_size / fine)) + 0.5) * fine
        k = np.floor((t - rate_t0) / dt).astype(int)
        inside = (k >= 0) & (k < rates.shape[0])
        reference = (rates[k[inside]] * fine).sum(axis=0)
        np.testing.assert_allclose(expected[i], reference, rtol=1e-3, atol=1e-3)
    assert expected[-1].sum() == 0.0  # beyond the rates' span the rate is zero


def test_expected_counts_of_constant_rate():
    expected = expected_counts(np.full((1000, 2), 20.0), 0.0, 0.001, 0.0, 0.02, 50)
    np.testing.assert_allclose(expected, 0.4, rtol=1e-5)


def test_interpolate_is_linear_inside_and_nan_outside():
    t = np.array([0.0, 1.0, 3.0])
    values = np.array([[0.0, 10.0], [1.0, 20.0], [3.0, 0.0]])
    out = interpolate(t, values, np.array([-0.1, 0.0, 0.5, 2.0, 3.0, 3.1]))
    np.testing.assert_allclose(out[1:5], [[0, 10], [0.5, 15], [2, 10], [3, 0]])
    assert np.isnan(out[[0, 5]]).all()
    np.testing.assert_allclose(interpolate(t, values[:, 0], np.array([1.5])), [1.5])


@pytest.mark.parametrize(("tile_bytes", "chunk_bytes"), [(4 * 3 * 7, 4 * 3 * 7 * 2), (48, 10**6)])
def test_time_chunks_and_tiles_do_not_move_spikes(
    monkeypatch: pytest.MonkeyPatch, tile_bytes: int, chunk_bytes: int
):
    # Tiny tiles and chunks: many chunk boundaries (spikes placed exactly on them and
    # one ulp either side) and a partial last tile whose padding must stay out of the grid.
    monkeypatch.setattr(binning, "_TILE_BYTES", tile_bytes)
    monkeypatch.setattr(binning, "_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(11)
    t0, bin_size, n_bins = -0.35, 0.1, 103
    edges = t0 + np.arange(n_bins + 1) * bin_size
    near_edges = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    trains = [
        np.sort(np.concatenate([rng.uniform(t0 - 1, edges[-1] + 1, 300), near_edges])),
        np.empty(0),
        np.sort(rng.uniform(edges[-1], edges[-1] + 2, 20)),  # all after the grid
    ]
    counts = bin_spike_times(trains, t0, bin_size, n_bins)
    np.testing.assert_array_equal(counts, brute_force_counts(trains, t0, bin_size, n_bins))
