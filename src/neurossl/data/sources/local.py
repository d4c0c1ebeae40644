"""Local folder source: a directory of the user's own NWB files, one session per file.

Sessions are named like DANDI assets (the ``ses-`` entity of a BIDS-like file name,
else the file stem), so a folder copied from the archive keeps its session ids. The
folder is checked when the workflow lists sessions, so a wrong path or a file without
Units or ophys data stops the run before any job starts, with the file named.

The workflow asks for the listing once to plan and once per session to find its file;
the listing is kept for the life of the process (keyed on the folder's modification
time, so files added or removed are seen), so planning opens every file once: linear in
files, where listing anew per lookup made planning quadratic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import h5py

from neurossl.data.sources.dandi import asset_session_id

DEFAULT_PATTERN = "*.nwb"
_OPHYS_CONTAINERS = ("DfOverF", "Fluorescence")


class LocalSourceError(ValueError):
    """A local folder or file that cannot serve as a dataset; the message names it."""


_ListingKey = tuple[str, str, int]
_LISTINGS: dict[_ListingKey, Mapping[str, Path]] = {}


def local_sessions(spec: Mapping[str, Any]) -> Mapping[str, Path]:
    """{session id: NWB path} of the folder in ``spec`` (keys ``path``, ``pattern``)."""
    if "path" not in spec:
        raise LocalSourceError("local: key 'path' (the folder of NWB files) is required")
    folder = Path(str(spec["path"])).expanduser()
    pattern = str(spec.get("pattern", DEFAULT_PATTERN))
    if not folder.is_dir():
        raise LocalSourceError(f"local.path {folder}: no such folder")
    key = (str(folder.resolve()), pattern, folder.stat().st_mtime_ns)
    if key not in _LISTINGS:
        _LISTINGS[key] = MappingProxyType(_list_folder(folder, pattern))
    return _LISTINGS[key]


def _list_folder(folder: Path, pattern: str) -> dict[str, Path]:
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise LocalSourceError(f"local.path {folder}: no file matches pattern {pattern!r}")
    sessions: dict[str, Path] = {}
    for path in files:
        check_nwb_content(path)
        session = asset_session_id(path.relative_to(folder).as_posix())
        if session in sessions:
            raise LocalSourceError(
                f"{sessions[session]} and {path} both map to session {session!r}; rename one"
            )
        sessions[session] = path.resolve()
    return sessions


def local_session_ids(spec: Mapping[str, Any]) -> list[str]:
    return list(local_sessions(spec))


def local_session_path(spec: Mapping[str, Any], session: str) -> str:
    sessions = local_sessions(spec)
    if session not in sessions:
        raise LocalSourceError(f"session {session!r} not in local.path; have {sorted(sessions)}")
    return str(sessions[session])


def check_nwb_content(path: Path) -> None:
    """Fail unless the file is HDF5 with a Units table or an ophys response series."""
    # pynwb (imported with the reader) costs a second; only a local source pays it here.
    from neurossl.data.nwb import NWBFormatError, refuse_nwb1

    try:
        refuse_nwb1(path)  # the reader's own check, so planning says what a job would
    except NWBFormatError as err:
        raise LocalSourceError(str(err)) from err
    try:
        with h5py.File(path, "r") as f:
            if "units" in f and "spike_times" in f["units"]:
                return
            processing = f.get("processing")
            for module in processing.values() if processing is not None else ():
                # by type, as the reader finds them: labs name containers freely
                if any(_neurodata_type(obj) in _OPHYS_CONTAINERS for obj in module.values()):
                    return
    except OSError as err:
        raise LocalSourceError(f"{path}: not a readable NWB/HDF5 file ({err})") from err
    raise LocalSourceError(
        f"{path}: neither 'units/spike_times' nor a DfOverF or Fluorescence container in "
        "'processing/*' found"
    )


def _neurodata_type(obj: h5py.HLObject) -> str:
    value = obj.attrs.get("neurodata_type", "")
    return value.decode() if isinstance(value, bytes) else str(value)
