"""A local stand-in for the DANDI archive, for driving the real dandi client in tests.

It answers the REST endpoints ``dandi.dandiapi.DandiAPIClient`` calls (server info,
dandiset, version info, paginated asset listing with ``glob``/``path``, asset metadata
with digests, ``/assets/{id}/download/`` redirecting to a blob URL with Range support)
on 127.0.0.1 at a free port. Switches inject the failures a real download meets:
5xx answers, 404s, corrupted or truncated bodies, connections dropped mid-transfer and
asset paths that try to escape the download folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

STAMP = "2024-01-01T00:00:00Z"


@dataclass
class FakeAsset:
    path: str
    content: bytes
    asset_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    digest_type: str = "dandi:sha2-256"

    def digests(self) -> dict[str, str]:
        if self.digest_type == "dandi:sha2-256":
            return {"dandi:sha2-256": hashlib.sha256(self.content).hexdigest()}
        return {self.digest_type: "not-a-real-digest"}


@dataclass
class Faults:
    """Counters of failures still to inject; each injection decrements its counter."""

    server_errors: Counter = field(default_factory=Counter)  # url path prefix -> n 503s
    corrupt: Counter = field(default_factory=Counter)  # asset id -> n corrupted bodies
    drop_after: dict[str, int] = field(default_factory=dict)  # asset id -> bytes before drop
    drops: Counter = field(default_factory=Counter)  # asset id -> n dropped transfers
    missing_blobs: set[str] = field(default_factory=set)  # asset ids answered with 404
    ignore_range: bool = False


class FakeArchive:
    def __init__(self, dandiset: str = "000409", version: str = "0.240101.0000") -> None:
        self.dandiset = dandiset
        self.version = version
        self.assets: list[FakeAsset] = []
        self.faults = Faults()
        self.requests: list[str] = []
        self.blob_requests: Counter = Counter()
        self.tokens: list[str] = []  # Authorization headers the client authenticated with
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api"

    def add(self, path: str, content: bytes, **kwargs: str) -> FakeAsset:
        asset = FakeAsset(path, content, **kwargs)
        self.assets.append(asset)
        return asset

    def __enter__(self) -> FakeArchive:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- JSON documents ---

    def version_doc(self, version: str) -> dict:
        return {
            "version": version,
            "name": "fake",
            "asset_count": len(self.assets),
            "size": sum(len(a.content) for a in self.assets),
            "created": STAMP,
            "modified": STAMP,
            "status": "Published" if version != "draft" else "Valid",
        }

    def dandiset_doc(self) -> dict:
        return {
            "identifier": self.dandiset,
            "created": STAMP,
            "modified": STAMP,
            "contact_person": "Test, Person",
            "embargo_status": "OPEN",
            "most_recent_published_version": self.version_doc(self.version),
            "draft_version": self.version_doc("draft"),
        }

    def asset_doc(self, asset: FakeAsset) -> dict:
        return {
            "asset_id": asset.asset_id,
            "blob": asset.asset_id,
            "zarr": None,
            "path": asset.path,
            "size": len(asset.content),
            "created": STAMP,
            "modified": STAMP,
        }

    def metadata_doc(self, asset: FakeAsset) -> dict:
        return {
            "id": f"dandiasset:{asset.asset_id}",
            "path": asset.path,
            "contentSize": len(asset.content),
            "digest": asset.digests(),
            "contentUrl": [f"{self.api_url}/assets/{asset.asset_id}/download/"],
        }

    def find(self, asset_id: str) -> FakeAsset | None:
        return next((a for a in self.assets if a.asset_id == asset_id), None)


def _handler(archive: FakeArchive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlparse(self.path)
            archive.requests.append(url.path)
            for prefix, remaining in list(archive.faults.server_errors.items()):
                if remaining > 0 and url.path.startswith(prefix):
                    archive.faults.server_errors[prefix] -= 1
                    return self._json({"detail": "injected outage"}, 503)
            self._route(url.path.rstrip("/").split("/")[1:], parse_qs(url.query))

        def _route(self, parts: list[str], query: dict[str, list[str]]) -> None:
            info = {
                "version": "0.1.0",
                "services": {"api": {"url": archive.api_url}},
                "cli-minimal-version": "0.1.0",
                "cli-bad-versions": [],
            }
            if parts == ["server-info"] or parts == ["api", "info"]:
                return self._json(info)
            if parts == ["api", "auth", "token"]:
                archive.tokens.append(self.headers.get("Authorization", ""))
                return self._json("ok")
            if parts[:1] == ["blobs"] and len(parts) == 2:
                return self._blob(parts[1])
            if parts[:2] == ["api", "assets"] and len(parts) == 4 and parts[3] == "download":
                if archive.find(parts[2]) is None:
                    return self._json({"detail": "Not found."}, 404)
                self.send_response(302)
                self.send_header("Location", f"{archive.base}/blobs/{parts[2]}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if parts[:2] != ["api", "dandisets"] or len(parts) < 3:
                return self._json({"detail": "Not found."}, 404)
            if parts[2] != archive.dandiset:
                return self._json({"detail": "Not found."}, 404)
            if len(parts) == 3:
                return self._json(archive.dandiset_doc())
            if parts[3] != "versions" or len(parts) < 5:
                return self._json({"detail": "Not found."}, 404)
            version = parts[4]
            if version not in (archive.version, "draft"):
                return self._json({"detail": "Not found."}, 404)
            rest = parts[5:]
            if rest == ["info"]:
                doc = archive.version_doc(version)
                doc.update(asset_validation_errors=[], version_validation_errors=[], metadata={})
                return self._json(doc)
            if rest == ["assets"]:
                return self._json(self._listing(query))
            if len(rest) == 2 and rest[0] == "assets":
                asset = archive.find(rest[1])
                if asset is None:
                    return self._json({"detail": "Not found."}, 404)
                return self._json(archive.metadata_doc(asset))
            return self._json({"detail": "Not found."}, 404)

        def _listing(self, query: dict[str, list[str]]) -> dict:
            assets = sorted(archive.assets, key=lambda a: a.path)
            if "glob" in query:
                assets = [a for a in assets if fnmatch.fnmatchcase(a.path, query["glob"][0])]
            if "path" in query:
                assets = [a for a in assets if a.path.startswith(query["path"][0])]
            results = [archive.asset_doc(a) for a in assets]
            return {"count": len(results), "next": None, "previous": None, "results": results}

        def _blob(self, asset_id: str) -> None:
            asset = archive.find(asset_id)
            faults = archive.faults
            if asset is None or asset_id in faults.missing_blobs:
                return self._json({"detail": "Not found."}, 404)
            archive.blob_requests[asset_id] += 1
            body = asset.content
            if faults.corrupt[asset_id] > 0:
                faults.corrupt[asset_id] -= 1
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            start = 0
            range_header = self.headers.get("Range")
            if range_header and not faults.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
            chunk = body[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if self.command == "HEAD":
                return
            if faults.drops[asset_id] > 0 and asset_id in faults.drop_after:
                faults.drops[asset_id] -= 1
                self.wfile.write(chunk[: faults.drop_after[asset_id]])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def _json(self, payload: object, status: int = 200) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
