"""Record of how the large corpus files were cut down from their published originals.

Not run by the tests. Given an original file, it writes a copy whose listed datasets keep
only their first samples along the time axis (attributes kept), drops listed groups that
no reader uses, and repacks with gzip so that deleted space is freed. Everything else
(groups, attributes, specifications, references) is copied by h5repack, the HDF5 tool,
so the layout stays exactly as the writing tool left it.

    python trim.py ORIGINAL OUT --keep 3000 --cut processing/ophys/Fluorescence/X/data:0 \
        [--drop processing/ophys/Backgrounds_0]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import h5py


def trim(original: Path, out: Path, keep: int, cuts: list[str], drops: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work.nwb"
        shutil.copyfile(original, work)
        with h5py.File(work, "r+") as f:
            for spec in cuts:
                name, axis = spec.rsplit(":", 1)
                _cut(f, name, int(axis), keep)
            for name in drops:
                del f[name]
        subprocess.run(["h5repack", "-m", "1024", "-f", "GZIP=4", str(work), str(out)], check=True)


def _cut(f: h5py.File, name: str, axis: int, keep: int) -> None:
    old = f[name]
    index = tuple(slice(0, keep) if i == axis else slice(None) for i in range(old.ndim))
    data, attrs = old[index], dict(old.attrs)
    del f[name]
    new = f.create_dataset(name, data=data)
    for key, value in attrs.items():
        new.attrs[key] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("original", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--keep", type=int, default=0)
    parser.add_argument("--cut", action="append", default=[], help="DATASET:AXIS")
    parser.add_argument("--drop", action="append", default=[], help="GROUP")
    args = parser.parse_args()
    trim(args.original, args.out, args.keep, args.cut, args.drop)


if __name__ == "__main__":
    main()
