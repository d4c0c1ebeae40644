"""The config schema with its vocabulary rebuilt from the method table.

``workflow/schemas/config.schema.yaml`` names methods and metrics in three ``$defs``
(``method``, ``metric``, ``headline``) so readers of the file see them; the workflow
validates against a copy whose ``$defs`` come from :mod:`neurossl.catalog`, so methods
added through ``method_modules`` are accepted and the file's copy cannot silently
decide what is valid. A test keeps the file's copy equal to the built-in table.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from neurossl import names


def vocabulary_defs() -> dict[str, Any]:
    """The schema's ``$defs`` as the method table and metric declarations give them."""
    metrics = list(names.BASE_METRICS)
    return {
        "method": {"enum": list(names.METHODS)},
        "metric": {"enum": metrics},
        "headline": {
            "type": "string",
            "pattern": f"^({'|'.join(names.MODALITIES)})/[a-z0-9_]+/({'|'.join(metrics)})$",
        },
    }


def derived(schema_path: str | Path) -> dict[str, Any]:
    schema = yaml.safe_load(Path(schema_path).read_text())
    schema["$defs"] = {**schema.get("$defs", {}), **vocabulary_defs()}
    return schema


def write_derived(schema_path: str | Path) -> Path:
    """The derived schema as a temporary JSON file (``snakemake.utils.validate`` takes a
    path); the caller deletes it."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
        "w", suffix=".schema.json", prefix="neurossl-", delete=False
    )
    with handle:
        json.dump(derived(schema_path), handle)
    return Path(handle.name)
