"""Content checksums of input files, so a Session names exactly what it was made from."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed in chunks so large recordings never sit in memory."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()
