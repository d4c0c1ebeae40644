"""DANDI source end to end: real dandi client -> fake archive -> manifest -> files -> Session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_dandi import FakeArchive
from real_layouts_allen import write_allen_nwb
from real_layouts_ibl import write_ibl_nwb

from neurossl.data.session import read_session, write_session
from neurossl.data.sources import dandi
from neurossl.data.sources.allen import read_allen_session
from neurossl.data.sources.ibl import IBLOptions, read_ibl_session

VERSION = "0.240101.0000"
IBL_PATH = "sub-CSHL049/sub-CSHL049_ses-{eid}_desc-processed_behavior+ecephys.nwb"
EIDS = ("5dcee0eb-b34d-4652-acc3-d10afc6eae68", "c7bf2d49-4937-4597-b307-9f39cb1c7b16")


def _spec(archive: FakeArchive, **extra: object) -> dandi.DandiSpec:
    values = {"dandiset": archive.dandiset, "version": VERSION, "api_url": archive.api_url}
    values.update(extra)
    if "assets" not in values:
        values.setdefault("glob", "sub-*/*desc-processed*.nwb")
    return dandi.DandiSpec.from_dict(values)


def _fetch(entry: dandi.AssetEntry, root: Path, archive: FakeArchive, retries: int = 3) -> Path:
    return dandi.download_asset(entry, root, archive.api_url, retries=retries, sleep=lambda s: None)


@pytest.fixture(scope="module")
def ibl_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("ibl")
    return {
        IBL_PATH.format(eid=eid): write_ibl_nwb(
            folder / f"{k}.nwb", "CSHL049", k, eid=eid
        ).read_bytes()
        for k, eid in enumerate(EIDS)
    }


@pytest.fixture()
def archive(ibl_files: dict[str, bytes]) -> FakeArchive:
    with FakeArchive(dandiset="000409", version=VERSION) as fake:
        for path, content in ibl_files.items():
            fake.add(path, content)
        fake.add("sub-CSHL049/sub-CSHL049_ses-x_desc-raw_ecephys.nwb", b"raw, never listed")
        yield fake


def test_manifest_fanout_download_session_and_rerun(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(dandi.API_KEY_ENV, "secret-token-123")
    manifest = dandi.list_assets(_spec(archive))
    assert manifest.version == VERSION
    assert dandi.manifest_sessions(manifest) == sorted(EIDS)
    assert archive.tokens == ["token secret-token-123"]  # the key reaches only the server
    manifest_path = tmp_path / "manifest.json"
    dandi.write_manifest(manifest, manifest_path)
    assert "secret-token-123" not in manifest_path.read_text()
    assert dandi.read_manifest(manifest_path) == manifest

    raw = tmp_path / "raw"
    for session in dandi.manifest_sessions(manifest):  # the checkpoint's fan-out
        entry = manifest.by_session()[session]
        path = _fetch(entry, raw, archive)
        assert path == dandi.raw_path(manifest, raw, session)
        assert path.read_bytes() == archive.assets[EIDS.index(session)].content
        result = read_ibl_session(
            path, dataset="ibl", session=session, spike_bin_size=0.02, options=IBLOptions()
        )
        write_session(result, tmp_path / f"{session}.spikes.h5")
        assert read_session(tmp_path / f"{session}.spikes.h5").meta["session"] == session
    assert not list(raw.rglob("*.part"))

    before = sum(archive.blob_requests.values())
    for entry in manifest.assets:
        _fetch(entry, raw, archive)
    assert sum(archive.blob_requests.values()) == before  # a second run downloads nothing


def test_interrupted_download_resumes_from_part(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.drop_after[entry.asset_id] = entry.size // 2
    archive.faults.drops[entry.asset_id] = 1
    path = _fetch(entry, tmp_path, archive)
    assert path.read_bytes() == archive.find(entry.asset_id).content
    assert archive.blob_requests[entry.asset_id] == 2


def test_interruption_without_retries_leaves_only_a_part_file(
    archive: FakeArchive, tmp_path: Path
) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.drop_after[entry.asset_id] = entry.size // 2
    archive.faults.drops[entry.asset_id] = 1
    with pytest.raises(dandi.DandiSourceError, match="rerun"):
        _fetch(entry, tmp_path, archive, retries=0)
    target = dandi.asset_target(tmp_path, entry.path)
    assert not target.exists()
    part = target.with_name(target.name + ".part")
    assert 0 < part.stat().st_size < entry.size
    _fetch(entry, tmp_path, archive, retries=0)  # the rerun continues the part file
    assert target.read_bytes() == archive.find(entry.asset_id).content


def test_server_ignoring_range_restarts_cleanly(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    target = dandi.asset_target(tmp_path, entry.path)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(b"\0" * 500)
    archive.faults.ignore_range = True
    assert _fetch(entry, tmp_path, archive).read_bytes() == archive.find(entry.asset_id).content


def test_corrupted_download_is_detected_and_refetched(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.corrupt[entry.asset_id] = 1
    assert _fetch(entry, tmp_path, archive).read_bytes() == archive.find(entry.asset_id).content
    assert archive.blob_requests[entry.asset_id] == 2


def test_corruption_every_time_is_a_digest_error(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.corrupt[entry.asset_id] = 5
    with pytest.raises(dandi.DigestMismatchError, match="sha2-256"):
        _fetch(entry, tmp_path, archive)
    target = dandi.asset_target(tmp_path, entry.path)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_corrupted_file_on_disk_is_refetched(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    path = _fetch(entry, tmp_path, archive)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _fetch(entry, tmp_path, archive).read_bytes() == archive.find(entry.asset_id).content


def test_transient_5xx_is_retried(archive: FakeArchive, tmp_path: Path) -> None:
    archive.faults.server_errors["/api/dandisets/000409/versions"] = 1  # client's own retry
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.server_errors["/blobs/"] = 2
    assert _fetch(entry, tmp_path, archive).read_bytes() == archive.find(entry.asset_id).content


def test_persistent_5xx_names_what_to_retry(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.server_errors["/blobs/"] = 10
    with pytest.raises(dandi.DandiSourceError, match=r"HTTP 503.*rerun the workflow"):
        _fetch(entry, tmp_path, archive, retries=2)


def test_404_on_download_is_a_clear_error(archive: FakeArchive, tmp_path: Path) -> None:
    entry = dandi.list_assets(_spec(archive)).assets[0]
    archive.faults.missing_blobs.add(entry.asset_id)
    with pytest.raises(dandi.DandiSourceError, match=r"404.*relist"):
        _fetch(entry, tmp_path, archive)


def test_unknown_dandiset_version_glob_and_asset(archive: FakeArchive) -> None:
    with pytest.raises(dandi.DandiSourceError, match="dandiset 999999 version"):
        dandi.list_assets(dandi.DandiSpec("999999", VERSION, glob="*", api_url=archive.api_url))
    with pytest.raises(dandi.DandiSourceError, match=r"0\.999999\.9999"):
        dandi.list_assets(_spec(archive, version="0.999999.9999"))
    with pytest.raises(dandi.DandiSourceError, match="matches no asset"):
        dandi.list_assets(_spec(archive, glob="sub-*/*.mp4"))
    with pytest.raises(dandi.DandiSourceError, match="not in dandiset"):
        dandi.list_assets(_spec(archive, assets=["sub-X/missing.nwb"]))


def test_explicit_asset_list_and_limit(archive: FakeArchive) -> None:
    path = IBL_PATH.format(eid=EIDS[1])
    assert [a.path for a in dandi.list_assets(_spec(archive, assets=[path])).assets] == [path]
    assert len(dandi.list_assets(_spec(archive, limit=1)).assets) == 1
    chosen = dandi.list_assets(_spec(archive, sessions=[EIDS[1]]))
    assert dandi.manifest_sessions(chosen) == [EIDS[1]]
    with pytest.raises(dandi.DandiSourceError, match=r"none of the configured.*\['absent'\]"):
        dandi.list_assets(_spec(archive, sessions=["absent"], missing_sessions="skip"))


def test_missing_sessions_stop_the_listing_or_are_skipped_by_name(
    archive: FakeArchive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wanted = [EIDS[1], "absent-eid", EIDS[0]]
    with pytest.raises(
        dandi.DandiSourceError,
        match=r"1 of 3 configured .*\['absent-eid'\].*missing_sessions: skip",
    ):
        dandi.list_assets(_spec(archive, sessions=wanted))
    manifest = dandi.list_assets(_spec(archive, sessions=wanted, missing_sessions="skip"))
    assert dandi.manifest_sessions(manifest) == [EIDS[1], EIDS[0]]
    assert manifest.missing_sessions == ("absent-eid",)
    (line,) = [r.getMessage() for r in caplog.records if "absent-eid" in r.getMessage()]
    assert "1 of 3" in line and "going on without them" in line
    dandi.write_manifest(manifest, tmp_path / "manifest.json")
    assert dandi.read_manifest(tmp_path / "manifest.json") == manifest
    with pytest.raises(ValueError, match="missing_sessions must be one of"):
        _spec(archive, missing_sessions="ignore")


def test_network_failure_says_to_retry() -> None:
    spec = dandi.DandiSpec("000409", VERSION, glob="*", api_url="http://127.0.0.1:9/api")
    with pytest.raises(dandi.DandiSourceError, match="rerun the workflow"):
        dandi.list_assets(spec)


@pytest.mark.parametrize(
    "evil", ["../escape.nwb", "/etc/passwd", "sub-A/../../escape.nwb", "sub-A/./x.nwb", "a\\b.nwb"]
)
def test_escaping_asset_paths_are_refused(archive: FakeArchive, evil: str, tmp_path: Path) -> None:
    archive.add(evil, b"payload")
    with pytest.raises(dandi.DandiSourceError, match="refusing asset path"):
        dandi.list_assets(_spec(archive, glob="*"))
    entry = dandi.AssetEntry(evil, "s", "id", 7, "dandi:sha2-256", "0" * 64)
    with pytest.raises(dandi.DandiSourceError, match="refusing asset path"):
        dandi.download_asset(entry, tmp_path / "raw", archive.api_url)
    assert not (tmp_path / "escape.nwb").exists()


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    os.symlink(tmp_path, root / "sub-A")
    with pytest.raises(dandi.DandiSourceError, match="outside"):
        dandi.asset_target(root, "sub-A/file.nwb")


def test_spec_validation_messages() -> None:
    with pytest.raises(ValueError, match="pinned"):
        dandi.DandiSpec.from_dict({"dandiset": "000409", "version": "latest", "glob": "*"})
    with pytest.raises(ValueError, match="6-digit"):
        dandi.DandiSpec.from_dict({"dandiset": "409", "version": "draft", "glob": "*"})
    with pytest.raises(ValueError, match="exactly one"):
        dandi.DandiSpec.from_dict({"dandiset": "000409", "version": "draft"})
    with pytest.raises(ValueError, match="unknown key"):
        dandi.DandiSpec.from_dict({"dandiset": "000409", "version": "draft", "glob": "*", "x": 1})


def test_session_ids_from_archive_names() -> None:
    assert dandi.asset_session_id(IBL_PATH.format(eid=EIDS[0])) == EIDS[0]
    allen = "sub-501800347/sub-501800347_ses-509959266-StimB_behavior+image+ophys.nwb"
    assert dandi.asset_session_id(allen) == "509959266-StimB"
    assert dandi.asset_session_id("data/my recording.nwb") == "my-recording"


def test_allen_layout_through_the_archive(tmp_path: Path) -> None:
    content = write_allen_nwb(tmp_path / "a.nwb", "501800347", 3).read_bytes()
    path = "sub-501800347/sub-501800347_ses-509959266-StimA_behavior+image+ophys.nwb"
    with FakeArchive(dandiset="000728", version=VERSION) as fake:
        fake.add(path, content)
        spec = dandi.DandiSpec.from_dict(
            {
                "dandiset": "000728",
                "version": "draft",
                "glob": "sub-*/*StimA*.nwb",
                "api_url": fake.api_url,
            }
        )
        manifest = dandi.list_assets(spec)
        assert manifest.version == "draft"
        local = _fetch(manifest.assets[0], tmp_path / "raw", fake)
    session = read_allen_session(local, dataset="allen", session="509959266-StimA", options={})
    assert session.modality == "calcium" and session.n_neurons == 8
