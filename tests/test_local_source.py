"""Local folder source: session listing, validation and clear errors."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import h5py
import pytest
from real_layouts_allen import write_allen_nwb
from real_layouts_ibl import write_ibl_nwb

from neurossl.data.sources.local import (
    LocalSourceError,
    local_session_ids,
    local_session_path,
)

CORPUS = Path(__file__).parent / "data" / "nwb_corpus"
#: A small real file (Svoboda lab, 276 kB) whose copies make a folder of sessions.
REAL_FILE = CORPUS / "sub-anm369963_ses-20170228.nwb"


def test_lists_sessions_from_nwb_folder(tmp_path: Path) -> None:
    write_ibl_nwb(tmp_path / "sub-A_ses-day1_ecephys.nwb", "A", seed=0)
    write_allen_nwb(tmp_path / "plane0.nwb", "B", seed=0)
    (tmp_path / "notes.txt").write_text("not data")
    spec = {"path": str(tmp_path)}
    assert local_session_ids(spec) == ["plane0", "day1"]
    assert local_session_path(spec, "day1") == str(tmp_path / "sub-A_ses-day1_ecephys.nwb")
    with pytest.raises(LocalSourceError, match=r"'nope' not in local\.path"):
        local_session_path(spec, "nope")


def test_missing_folder_and_empty_pattern(tmp_path: Path) -> None:
    with pytest.raises(LocalSourceError, match="no such folder"):
        local_session_ids({"path": str(tmp_path / "absent")})
    with pytest.raises(LocalSourceError, match="no file matches pattern"):
        local_session_ids({"path": str(tmp_path), "pattern": "*.nwb"})
    with pytest.raises(LocalSourceError, match="'path'"):
        local_session_ids({})


def test_file_without_units_or_ophys_is_named(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "empty.nwb", "w") as f:
        f.create_group("acquisition")
    with pytest.raises(LocalSourceError, match=r"empty\.nwb: neither 'units/spike_times'"):
        local_session_ids({"path": str(tmp_path)})
    (tmp_path / "empty.nwb").write_bytes(b"not hdf5")
    with pytest.raises(LocalSourceError, match="not a readable NWB/HDF5"):
        local_session_ids({"path": str(tmp_path)})


def test_duplicate_session_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write_ibl_nwb(tmp_path / "a" / "sub-A_ses-1.nwb", "A", seed=0)
    write_ibl_nwb(tmp_path / "sub-B_ses-1.nwb", "B", seed=0)
    with pytest.raises(LocalSourceError, match="both map to session '1'"):
        local_session_ids({"path": str(tmp_path), "pattern": "**/*.nwb"})


def test_planning_opens_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workflow lists once and looks up every session: each file is opened once."""
    for k in range(6):
        shutil.copyfile(REAL_FILE, tmp_path / f"sub-A_ses-{k}.nwb")
    opened: list[str] = []
    real_file = h5py.File

    def counting_file(path: object, *args: object, **kwargs: object) -> h5py.File:
        opened.append(Path(str(path)).name)
        return real_file(path, *args, **kwargs)

    monkeypatch.setattr("neurossl.data.sources.local.h5py.File", counting_file)
    spec = {"path": str(tmp_path)}
    sessions = local_session_ids(spec)
    per_file = Counter(opened)
    assert set(per_file) == {f"sub-A_ses-{k}.nwb" for k in range(6)}
    assert len(set(per_file.values())) == 1  # a fixed number of opens per file (its checks)
    paths = [local_session_path(spec, s) for s in sessions]
    assert local_session_ids(spec) == sessions
    assert Counter(opened) == per_file  # lookups and a second listing open nothing
    assert {Path(p).name for p in paths} == set(per_file)
    # A file added to the folder is seen by the next listing (and only it is new work).
    shutil.copyfile(REAL_FILE, tmp_path / "sub-A_ses-new.nwb")
    os.utime(tmp_path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    opened.clear()
    assert "new" in local_session_ids(spec)
    assert Counter(opened) == {**per_file, "sub-A_ses-new.nwb": max(per_file.values())}


def test_nwb1_file_is_refused_at_listing(tmp_path: Path) -> None:
    shutil.copyfile(CORPUS / "allen_nwb1_496908818s.nwb", tmp_path / "old.nwb")
    with pytest.raises(
        LocalSourceError, match=r"old\.nwb: .*'NWB-1\.0\.5': NWB 1\.x is not supported"
    ):
        local_session_ids({"path": str(tmp_path)})


def test_ophys_containers_are_found_by_type_not_name(tmp_path: Path) -> None:
    path = tmp_path / "renamed.nwb"
    shutil.copyfile(CORPUS / "suite2p_export_2022_08_08.nwb", path)
    with h5py.File(path, "r+") as f:  # suite2p's three containers, none named Fluorescence
        f.move("processing/ophys/Fluorescence", "processing/ophys/Raw")
    assert local_session_ids({"path": str(tmp_path)}) == ["renamed"]
