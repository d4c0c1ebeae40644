"""Preprocessing throughput: NWB -> spikes Session against a raw h5py read of the spikes.

The preprocess stage should cost about what reading the spikes costs. This writes one
large synthetic file (real-data-like: no ground truth) sized like one IBL Neuropixels
insertion (~400 units, 1 h, ~24 M spikes: tens of millions of spikes and several hundred
units per probe-hour; the grid at 20 ms is then ~3 cells per spike), then times, median
(and best) of ``--repeats`` on a shared machine:

- raw: h5py reading ``units/spike_times`` and ``units/spike_times_index``, nothing else;
- full: ``nwb_to_sessions(..., modalities=["spikes"])`` (pynwb open, bulk read, checks,
  binning, trials, behaviour, SHA-256 of the whole file, validation);
- full with the digest given (``source_sha256=``): the same without hashing, as when the
  caller already holds the file's SHA-256 (the DANDI download manifest);
- its parts: binning alone, pynwb's open + read alone, that open + read followed by the
  bulk read + checks of the Units table, hashing alone (which runs concurrently with the
  rest inside ``nwb_to_sessions``).

Generating the default file takes ~20-60 s and ~5 GB of RAM (the synthetic source keeps
10 ms rates of every unit); ``--units``/``--trials`` make it smaller.

Both warm (file in the page cache) and cold (the file's pages evicted with
``posix_fadvise(DONTNEED)`` before each run; only this file, nothing system-wide).

Run: ``.venv/bin/python benchmarks/preprocess_throughput.py``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from pynwb import NWBHDF5IO

from neurossl.data.binning import bin_spike_times
from neurossl.data.hashing import sha256_file
from neurossl.data.nwb import nwb_to_sessions
from neurossl.data.nwb_units import read_units
from neurossl.data.sources.synthetic import SyntheticConfig, write_session_nwb

SESSION = "sub-01_ses-01"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=384)
    parser.add_argument("--trials", type=int, default=1440, help="2.5 s each")
    parser.add_argument("--base-rate", type=float, default=22.0, help="Hz")
    parser.add_argument("--bin-size", type=float, default=0.02, help="s")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = SyntheticConfig(
        n_units=args.units,
        n_trials=args.trials,
        n_rois=4,
        base_rate=args.base_rate,
        ground_truth=False,
    )
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        path = Path(tmp) / f"{SESSION}.nwb"
        started = time.perf_counter()
        write_session_nwb(config, SESSION, path)
        generated = time.perf_counter() - started
        times, ends = raw_read(path)

        def full(source_sha256: str | None = None) -> object:
            return nwb_to_sessions(
                path,
                dataset="bench",
                session=SESSION,
                modalities=["spikes"],
                spike_bin_size=args.bin_size,
                source_sha256=source_sha256,
            )["spikes"]

        session = full()  # warm-up: imports, namespace cache, page cache
        digest = session.meta["source_sha256"]
        n_bins = session.n_bins
        load_before = os.getloadavg()[0]
        results = {
            "raw h5py read (warm)": timed(lambda: raw_read(path), args.repeats),
            "nwb_to_sessions spikes (warm)": timed(full, args.repeats),
            "raw h5py read (cold)": timed(lambda: raw_read(path), args.repeats, path),
            "nwb_to_sessions spikes (cold)": timed(full, args.repeats, path),
            "digest given (warm)": timed(lambda: full(digest), args.repeats),
            "digest given (cold)": timed(lambda: full(digest), args.repeats, path),
            "  of which binning": timed(
                lambda: bin_spike_times(times, session.t0, args.bin_size, n_bins, index=ends),
                args.repeats,
            ),
            "  of which pynwb open + read": timed(lambda: pynwb_open(path), args.repeats),
            "  pynwb open + read + read_units": timed(lambda: pynwb_units(path), args.repeats),
            "  of which sha256 (concurrent)": timed(lambda: sha256_file(path), args.repeats),
        }
        load_after = os.getloadavg()[0]
        size_mb = path.stat().st_size / 1e6

    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores), python {platform.python_version()}")
    print(f"load average (1 min) before / after measuring: {load_before:.2f} / {load_after:.2f}")
    print(
        f"file: {size_mb:.1f} MB, {args.units} units, {config.duration:.0f} s, "
        f"{times.size:,} spikes ({times.nbytes / 1e6:.1f} MB), generated in {generated:.1f} s"
    )
    print(f"grid: {n_bins:,} bins of {args.bin_size * 1e3:g} ms -> [{n_bins}, {args.units}]")
    print(f"{'step':32s} {'median':>9s} {'best':>9s}  (ms, {args.repeats} runs)")
    for name, (median, best) in results.items():
        print(f"{name:32s} {median * 1e3:9.1f} {best * 1e3:9.1f}")
    binning = results["  of which binning"][0]
    print(f"binning throughput: {times.size / binning / 1e6:.1f} M spikes/s (median)")
    for variant in ("nwb_to_sessions spikes", "digest given"):
        for cache in ("warm", "cold"):
            full_s = results[f"{variant} ({cache})"][0]
            raw_s = results[f"raw h5py read ({cache})"][0]
            print(
                f"{variant} ({cache}): {times.size / full_s / 1e6:.1f} M spikes/s; "
                f"ratio of medians to raw read = {full_s / raw_s:.1f}x "
                f"({(full_s - binning) / raw_s:.1f}x without the binning itself)"
            )


def raw_read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["units/spike_times"][()], f["units/spike_times_index"][()]


def pynwb_open(path: Path) -> None:
    """The fixed cost of pynwb: namespaces from the file and the whole container tree."""
    with NWBHDF5IO(str(path), "r") as io:
        io.read()


def pynwb_units(path: Path) -> None:
    """pynwb's open + read, then the bulk read of spike times and their checks."""
    with NWBHDF5IO(str(path), "r") as io:
        read_units(io.read(), path)


def timed(
    run: Callable[[], object], repeats: int, evict: Path | None = None
) -> tuple[float, float]:
    """Median and fastest of ``repeats`` runs; with ``evict``, the file leaves the page cache
    before each. The median is the figure to quote on a shared machine, the best shows
    what the code does when nothing else runs."""
    seconds = []
    for _ in range(repeats):
        if evict is not None:
            drop_from_page_cache(evict)
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), min(seconds)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
