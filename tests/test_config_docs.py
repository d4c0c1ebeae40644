"""config/README.md documents every key of the config schema, and names only real keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
README = ROOT / "config" / "README.md"
#: How the docs name a key the user chooses (a dataset, a method).
PLACEHOLDER = {"datasets": "<name>", "hparams": "<method>"}


def key_paths(node: dict, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every key the schema allows, user-chosen names as placeholders."""
    for key, sub in (node.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        yield from key_paths(sub, path)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or extra.get("additionalProperties")):
        path = f"{prefix}.{PLACEHOLDER.get(prefix.rsplit('.', 1)[-1], '<key>')}"
        yield from key_paths(extra, path)


def documented_keys() -> set[str]:
    """The first cell of every table row of the README, in backticks."""
    rows = re.findall(r"^\| `([^`]+)` \|", README.read_text(), flags=re.MULTILINE)
    return set(rows)


def test_every_schema_key_is_documented():
    """Every key that holds a value has a row (sections are documented by their keys)."""
    paths = set(key_paths(yaml.safe_load(SCHEMA.read_text())))
    assert {"datasets.<name>.dandi.version", "report.headline", "compute.gpus"} <= paths
    values = {p for p in paths if not any(q.startswith(f"{p}.") for q in paths)}
    missing = sorted(values - documented_keys())
    assert not missing, f"config/README.md documents no row for {missing}"


def test_every_documented_key_exists():
    paths = set(key_paths(yaml.safe_load(SCHEMA.read_text())))
    stale = sorted(documented_keys() - paths)
    assert not stale, f"config/README.md documents keys the schema does not have: {stale}"


def test_files_the_docs_name_exist():
    """Paths in backticks in the user's guide and results pages point at real files
    (the dated selection logs under docs/ may name files that have since gone)."""
    pages = [README, ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]
    pattern = re.compile(
        r"`((?:config|docs|src|tests|workflow|scripts|benchmarks|profiles)/[^`\s*<]+)`"
    )
    for page in pages:
        for name in pattern.findall(page.read_text()):
            assert (ROOT / name.rstrip("/")).exists(), f"{page.relative_to(ROOT)} names {name}"
