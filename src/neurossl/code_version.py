"""The identity of the package's code, so a training run can tell whether it changed.

Why not the git commit: an installed package (or a work tree with edits) has none that
describes it, while the bytes of its source files always do.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from neurossl import __version__


@functools.cache
def code_identity() -> dict[str, str]:
    """Package version and SHA-256 over its source files (path and bytes, sorted by path).

    Computed once per process: the package cannot change under a running job in a way
    that job would use.
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return {"version": __version__, "source_sha256": digest.hexdigest()}
