"""DANDI archive source: list a pinned dandiset version into a manifest, then fetch assets.

Listing goes through the real dandi client (``DandiAPIClient``) so URL layout, pagination
and authentication follow the archive. Downloading is done here rather than with
``RemoteAsset.download()`` because that method neither verifies the archive's digest nor
resumes: a fetch streams into ``<file>.part`` (resuming with an HTTP Range request when a
partial exists), retries transient failures with exponential backoff, checks the size
and the archive's digest, and only then renames the part onto the final path. A file at
the final path is therefore always complete and verified; a killed job leaves a part file
that the next run continues.

Asset paths come from a remote server and are untrusted: they are refused if absolute,
if they contain ``..`` or if they resolve outside the dataset's download folder. The API
token (``DANDI_API_KEY``) goes only into the HTTP session, never into a manifest or log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from neurossl.atomic import write_json

DEFAULT_API_URL = "https://api.dandiarchive.org/api"
API_KEY_ENV = "DANDI_API_KEY"
#: Digest types in order of preference (sha2-256 is computed by the archive after upload,
#: so a fresh draft asset may only have the multipart etag).
DIGEST_TYPES = ("dandi:sha2-256", "dandi:dandi-etag")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MANIFEST_VERSION = 1
#: Small enough that an interrupted transfer keeps nearly all it received.
_CHUNK = 1 << 16
_DANDISET_ID = re.compile(r"^[0-9]{6}$")
_VERSION = re.compile(r"^(draft|[0-9]+\.[0-9]{6}\.[0-9]{4})$")
_SESSION_CHARS = re.compile(r"[^A-Za-z0-9_+-]+")
#: What listing does with configured sessions the archive lacks: stop, or go on without.
MISSING_SESSIONS = ("fail", "skip")
_LOG = logging.getLogger(__name__)


class DandiSourceError(RuntimeError):
    """A DANDI listing or download that cannot go on; the message says what to do."""


class DigestMismatchError(DandiSourceError):
    """A downloaded file whose content differs from the archive's digest."""


@dataclass(frozen=True)
class DandiSpec:
    """What to fetch: a dandiset at a pinned version, selected by glob or explicit paths."""

    dandiset: str
    version: str
    glob: str | None = None
    assets: tuple[str, ...] = ()
    limit: int | None = None
    #: Keep only these session ids (e.g. IBL eids).
    sessions: tuple[str, ...] = ()
    api_url: str = DEFAULT_API_URL
    retries: int = 5
    #: "fail": a configured session the archive lacks stops the listing, naming it;
    #: "skip": it is named in the log and the manifest, and the rest go on.
    missing_sessions: str = "fail"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "dandi") -> DandiSpec:
        known = {
            "dandiset",
            "version",
            "glob",
            "assets",
            "limit",
            "sessions",
            "api_url",
            "retries",
            "missing_sessions",
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
        dandiset = str(values.get("dandiset", ""))
        if not _DANDISET_ID.match(dandiset):
            raise ValueError(
                f"{where}.dandiset must be a 6-digit id such as '000409', got {dandiset!r}"
            )
        version = str(values.get("version", ""))
        if not _VERSION.match(version):
            raise ValueError(
                f"{where}.version must be pinned: 'draft' or a published version such as "
                f"'0.230630.1200', got {version!r}"
            )
        glob, assets = values.get("glob"), tuple(values.get("assets") or ())
        if (glob is None) == (not assets):
            raise ValueError(f"{where}: give exactly one of 'glob' or 'assets'")
        limit = values.get("limit")
        if limit is not None and int(limit) < 1:
            raise ValueError(f"{where}.limit must be >= 1, got {limit}")
        retries = int(values.get("retries", 5))
        if retries < 0:
            raise ValueError(f"{where}.retries must be >= 0, got {retries}")
        missing = str(values.get("missing_sessions", "fail"))
        if missing not in MISSING_SESSIONS:
            raise ValueError(
                f"{where}.missing_sessions must be one of {MISSING_SESSIONS}, got {missing!r}"
            )
        return cls(
            dandiset=dandiset,
            version=version,
            glob=None if glob is None else str(glob),
            assets=tuple(str(a) for a in assets),
            limit=None if limit is None else int(limit),
            sessions=tuple(str(x) for x in values.get("sessions") or ()),
            api_url=str(values.get("api_url", DEFAULT_API_URL)).rstrip("/"),
            retries=retries,
            missing_sessions=missing,
        )


@dataclass(frozen=True)
class AssetEntry:
    path: str
    session: str
    asset_id: str
    size: int
    digest_type: str
    digest: str


@dataclass(frozen=True)
class Manifest:
    dandiset: str
    version: str
    api_url: str
    assets: tuple[AssetEntry, ...] = field(default_factory=tuple)
    #: Configured sessions the archive version did not have (``missing_sessions: skip``).
    missing_sessions: tuple[str, ...] = ()

    def by_session(self) -> dict[str, AssetEntry]:
        return {entry.session: entry for entry in self.assets}


# --- paths -------------------------------------------------------------------------------


def safe_relative_path(path: str) -> PurePosixPath:
    """An archive asset path as a relative path that cannot leave its folder."""
    if not path or "\\" in path or "\x00" in path:
        raise DandiSourceError(f"refusing asset path {path!r}: empty or has a backslash/NUL")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", ".", "") for part in path.split("/")):
        raise DandiSourceError(
            f"refusing asset path {path!r}: must be relative without '.', '..' or empty parts"
        )
    return pure


def asset_target(dest_root: str | Path, path: str) -> Path:
    """Where an asset lands under ``dest_root``; refuses anything resolving outside it."""
    root = Path(dest_root).resolve()
    target = (root / Path(*safe_relative_path(path).parts)).resolve()
    if not target.is_relative_to(root) or target == root:
        raise DandiSourceError(f"refusing asset path {path!r}: resolves outside {root}")
    return target


def asset_session_id(path: str) -> str:
    """Session id from a DANDI file name: the ``ses-`` entity (the file stem if none).

    ``sub-CSHL049_ses-c99d53e6-..._desc-processed_behavior+ecephys.nwb`` -> the eid;
    ``sub-501800347_ses-509959266-StimB_behavior+image+ophys.nwb`` -> ``509959266-StimB``.
    """
    name = safe_relative_path(path).name
    stem = name.split(".", 1)[0]
    entities = dict(
        token.split("-", 1) for token in stem.split("_") if "-" in token and token[0].isalpha()
    )
    raw = entities.get("ses") or stem
    session = _SESSION_CHARS.sub("-", raw).strip("-_+")
    if not session:
        raise DandiSourceError(f"cannot derive a session id from asset path {path!r}")
    return session


# --- manifest ----------------------------------------------------------------------------


def write_manifest(manifest: Manifest, path: str | Path) -> None:
    payload = {
        "manifest_version": MANIFEST_VERSION,
        "dandiset": manifest.dandiset,
        "version": manifest.version,
        "api_url": manifest.api_url,
        "assets": [asdict(entry) for entry in manifest.assets],
        "missing_sessions": list(manifest.missing_sessions),
    }
    write_json(path, payload)


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        assets = tuple(AssetEntry(**entry) for entry in payload["assets"])
        manifest = Manifest(
            payload["dandiset"],
            payload["version"],
            payload["api_url"],
            assets,
            tuple(payload.get("missing_sessions", ())),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DandiSourceError(f"{path}: not a readable DANDI manifest ({err})") from err
    for entry in manifest.assets:
        safe_relative_path(entry.path)
    return manifest


# --- listing -----------------------------------------------------------------------------


def _client(api_url: str) -> Any:
    from dandi.dandiapi import DandiAPIClient

    # The client otherwise asks a telemetry service for newer versions on every start,
    # a network call a pipeline job should not make (and cannot, on offline nodes).
    os.environ.setdefault("DANDI_NO_ET", "1")
    return DandiAPIClient(api_url=api_url, token=os.environ.get(API_KEY_ENV) or None)


def list_assets(spec: DandiSpec) -> Manifest:
    """Resolve the pinned version and its assets into a manifest (path, size, digest, id)."""
    from dandi.exceptions import NotFoundError

    try:
        with _client(spec.api_url) as client:
            try:
                dandiset = client.get_dandiset(spec.dandiset, spec.version, lazy=False)
            except NotFoundError as err:
                raise DandiSourceError(
                    f"dandiset {spec.dandiset} version {spec.version!r} not found at "
                    f"{spec.api_url}: {err}. Check 'dandiset' and 'version' in the config."
                ) from err
            remote, missing = _select(dandiset, spec)
            entries = [_entry(asset) for asset in remote]
    except requests.RequestException as err:
        raise DandiSourceError(
            f"could not list dandiset {spec.dandiset} at {spec.api_url} ({_redact(err)}); "
            "check the network connection and rerun the workflow"
        ) from err
    except RuntimeError as err:
        if isinstance(err, DandiSourceError):
            raise
        # The client raises a bare RuntimeError when it cannot reach the server's info page.
        raise DandiSourceError(
            f"could not reach the DANDI API at {spec.api_url} ({_redact(err)}); check the "
            "network connection and 'api_url', then rerun the workflow"
        ) from err
    sessions: dict[str, str] = {}
    for entry in entries:
        if entry.session in sessions:
            raise DandiSourceError(
                f"assets {sessions[entry.session]!r} and {entry.path!r} map to the same session "
                f"{entry.session!r}; narrow the glob (e.g. only desc-processed files)"
            )
        sessions[entry.session] = entry.path
    return Manifest(
        spec.dandiset, dandiset.version_id, spec.api_url, tuple(entries), tuple(missing)
    )


def _select(dandiset: Any, spec: DandiSpec) -> tuple[list[Any], list[str]]:
    """The assets to fetch, and the configured sessions the version lacks."""
    from dandi.exceptions import NotFoundError

    if spec.glob is not None:
        assets = list(dandiset.get_assets_by_glob(spec.glob, order="path"))
        if not assets:
            raise DandiSourceError(
                f"glob {spec.glob!r} matches no asset of dandiset {spec.dandiset} "
                f"version {dandiset.version_id}"
            )
    else:
        assets = []
        for path in spec.assets:
            safe_relative_path(path)
            try:
                assets.append(dandiset.get_asset_by_path(path))
            except NotFoundError as err:
                raise DandiSourceError(
                    f"asset {path!r} not in dandiset {spec.dandiset} version {dandiset.version_id}"
                ) from err
    missing: list[str] = []
    if spec.sessions:
        by_session: dict[str, list[Any]] = {}
        for asset in assets:
            by_session.setdefault(asset_session_id(asset.path), []).append(asset)
        missing = [s for s in spec.sessions if s not in by_session]
        where = (
            f"no asset matching {spec.glob or spec.assets} in dandiset {spec.dandiset} "
            f"version {dandiset.version_id}"
        )
        if missing and spec.missing_sessions == "fail":
            raise DandiSourceError(
                f"{len(missing)} of {len(spec.sessions)} configured session(s) have {where}: "
                f"{missing}. Remove them from 'sessions', or set 'missing_sessions: skip' "
                "to go on with the others"
            )
        if len(missing) == len(spec.sessions):
            raise DandiSourceError(f"none of the configured sessions has {where}: {missing}")
        if missing:
            _LOG.warning(
                "%d of %d configured session(s) have %s; going on without them "
                "(missing_sessions: skip): %s",
                len(missing),
                len(spec.sessions),
                where,
                ", ".join(missing),
            )
        assets = [a for s in spec.sessions if s in by_session for a in by_session[s]]
    return (assets[: spec.limit] if spec.limit else assets), missing


def _entry(asset: Any) -> AssetEntry:
    safe_relative_path(asset.path)
    digests = asset.get_raw_metadata().get("digest") or {}
    digest_type = next((t for t in DIGEST_TYPES if digests.get(t)), None)
    if digest_type is None:
        raise DandiSourceError(
            f"asset {asset.path!r} has no {' or '.join(DIGEST_TYPES)} digest in its metadata; "
            "it cannot be verified"
        )
    return AssetEntry(
        path=asset.path,
        session=asset_session_id(asset.path),
        asset_id=asset.identifier,
        size=int(asset.size),
        digest_type=digest_type,
        digest=str(digests[digest_type]),
    )


# --- downloading -------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying (5xx, dropped connection, short body)."""


def download_asset(
    entry: AssetEntry,
    dest_root: str | Path,
    api_url: str,
    retries: int = 5,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Fetch one asset to ``dest_root/<asset path>``, verified; a no-op if already there."""
    target = asset_target(dest_root, entry.path)
    if target.is_file():
        if target.stat().st_size == entry.size and _digest_ok(target, entry):
            log(f"{target}: present and verified, nothing to do")
            return target
        log(f"{target}: present but does not match the archive digest; fetching again")
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    refetched = False
    with _client(api_url) as client:
        url = client.get_url(f"/assets/{entry.asset_id}/download/")
        while True:
            _fetch_with_retries(client.session, url, part, entry, retries, backoff, sleep, log)
            if _digest_ok(part, entry):
                break
            part.unlink()
            if refetched:
                raise DigestMismatchError(
                    f"{entry.path}: downloaded twice and its {entry.digest_type} differs from "
                    f"the archive's both times; the asset or the connection is corrupt. Rerun "
                    f"later or report asset {entry.asset_id} to the DANDI helpdesk"
                )
            log(f"{entry.path}: digest mismatch, discarding the download and fetching again")
            refetched = True
    os.replace(part, target)
    log(f"{target}: downloaded and verified ({entry.size} bytes)")
    return target


def _fetch_with_retries(
    session: requests.Session,
    url: str,
    part: Path,
    entry: AssetEntry,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None],
    log: Callable[[str], None],
) -> None:
    for attempt in range(retries + 1):
        try:
            _fetch(session, url, part, entry)
            return
        except (_Transient, requests.ConnectionError, requests.Timeout) as err:
            if attempt == retries:
                raise DandiSourceError(
                    f"{entry.path}: download failed after {retries + 1} attempts "
                    f"({_redact(err)}); check the network and rerun the workflow, it resumes "
                    f"from {part.name}"
                ) from err
            delay = backoff * 2**attempt
            log(f"{entry.path}: {_redact(err)}; retry {attempt + 1}/{retries} in {delay:.1f} s")
            sleep(delay)


def _fetch(session: requests.Session, url: str, part: Path, entry: AssetEntry) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > entry.size:
        part.unlink()
        have = 0
    if have == entry.size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, stream=True, headers=headers, timeout=60) as response:
        status = response.status_code
        if status in RETRY_STATUSES:
            raise _Transient(f"HTTP {status}")
        if status == 404:
            raise DandiSourceError(
                f"{entry.path}: the archive answered 404 for asset {entry.asset_id}; it was "
                "removed or the manifest is stale. Delete the manifest and rerun to relist"
            )
        if status in (401, 403):
            raise DandiSourceError(
                f"{entry.path}: HTTP {status}; the asset needs access rights: set "
                f"{API_KEY_ENV} to an API key of an account that can read it"
            )
        if status not in (200, 206):
            raise DandiSourceError(f"{entry.path}: unexpected HTTP {status} from the archive")
        resumed = status == 206 and _range_start(response) == have
        mode = "ab" if resumed else "wb"
        with open(part, mode) as out:
            try:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    out.write(chunk)
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as err:
                raise _Transient(f"transfer interrupted ({type(err).__name__})") from err
    got = part.stat().st_size
    if got < entry.size:
        raise _Transient(f"transfer stopped at {got} of {entry.size} bytes")
    if got > entry.size:
        part.unlink()
        raise _Transient(f"server sent {got} bytes, expected {entry.size}")


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _digest_ok(path: Path, entry: AssetEntry) -> bool:
    return file_digest(path, entry.digest_type) == entry.digest


def file_digest(path: Path, digest_type: str) -> str:
    """The archive's digest of a local file: sha256 hex, or the DANDI multipart etag."""
    if digest_type == "dandi:sha2-256":
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        return digest.hexdigest()
    if digest_type == "dandi:dandi-etag":
        from dandi.support.digests import get_dandietag

        return get_dandietag(path).as_str()
    raise DandiSourceError(f"unknown digest type {digest_type!r}; expected one of {DIGEST_TYPES}")


def _redact(err: BaseException) -> str:
    """An error text without the API token, should a library have echoed a header."""
    text = str(err)
    token = os.environ.get(API_KEY_ENV)
    return text.replace(token, "***") if token else text


def manifest_sessions(manifest: Manifest) -> list[str]:
    return [entry.session for entry in manifest.assets]


def entry_for_path(manifest: Manifest, path: str) -> AssetEntry:
    """The manifest entry of one asset path (the download rule's wildcard)."""
    for entry in manifest.assets:
        if entry.path == path:
            return entry
    raise DandiSourceError(f"asset {path!r} is not in the manifest of dandiset {manifest.dandiset}")


def raw_path(manifest: Manifest, dest_root: str | Path, session: str) -> Path:
    """The downloaded file of one session (for the workflow's preprocess input)."""
    entries = manifest.by_session()
    if session not in entries:
        raise DandiSourceError(f"session {session!r} is not in the manifest {sorted(entries)}")
    return asset_target(dest_root, entries[session].path)
