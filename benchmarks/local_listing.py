"""Planning cost of a local folder of N NWB files (``source: local``).

Planning asks the local source for the session list once (``common.smk``'s session
checkpoint) and then for each session's file (the preprocess rule's input function). This
times exactly those calls on a folder of N copies of one small NWB file written with
pynwb (one Units table, 20 units; the checks open each file: the reader's NWB 1.x check,
then the content check), and, with
``--per-lookup-listing``, the same calls when every lookup lists the folder anew (how the
source behaved before it kept its listing: quadratic in files).

Run: ``.venv/bin/python benchmarks/local_listing.py --files 1000``
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from pynwb import NWBHDF5IO, NWBFile
from pynwb.file import Subject

import neurossl.data.nwb  # noqa: F401 - imported once per workflow, not timed per listing
from neurossl.data.sources import local


def write_template(path: Path) -> None:
    rng = np.random.default_rng(0)
    nwbfile = NWBFile(
        session_description="local listing benchmark",
        identifier="template",
        session_start_time=datetime(2026, 1, 1).astimezone(),
        subject=Subject(subject_id="A", species="Mus musculus"),
    )
    for _ in range(20):
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0, 60, 200)))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def plan(folder: Path, per_lookup_listing: bool) -> tuple[float, float, int]:
    """(seconds to list, seconds for every session lookup, sessions)."""
    local._LISTINGS.clear()
    spec = {"path": str(folder)}
    start = time.perf_counter()
    sessions = local.local_session_ids(spec)
    listed = time.perf_counter()
    for session in sessions:
        if per_lookup_listing:
            local._LISTINGS.clear()
        local.local_session_path(spec, session)
    return listed - start, time.perf_counter() - listed, len(sessions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--per-lookup-listing", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "nwb"
        folder.mkdir()
        template = Path(tmp) / "template.nwb"
        write_template(template)
        for k in range(args.files):
            shutil.copyfile(template, folder / f"sub-{k % 10:02d}_ses-{k:05d}_ecephys.nwb")
        list_s, lookup_s, n = plan(folder, per_lookup_listing=False)
        print(f"{platform.processor() or platform.machine()}, {n} files")
        print(f"listing (checks each file once): {list_s:.2f} s")
        print(f"{n} session lookups: {lookup_s:.3f} s; planning total {list_s + lookup_s:.2f} s")
        if args.per_lookup_listing:
            list_s, lookup_s, n = plan(folder, per_lookup_listing=True)
            print(
                f"listing anew per lookup (before): {list_s:.2f} s + {lookup_s:.2f} s of "
                f"lookups = {list_s + lookup_s:.2f} s"
            )


if __name__ == "__main__":
    main()
