"""The one model-file format every stage writes (``model.pt`` of pretrain / finetune).

A ``torch.save`` dict with a header — ``format`` (``"neurossl-model"``), ``version``,
``family`` (the writing module's family, e.g. ``"ndt"``), ``method``, ``stage`` — and the
family's own payload beside it. The header lets a reader refuse a file of another family,
stage or format version with a message naming the file, instead of a KeyError deep in a
``load_state_dict``. Written atomically, and once under torchrun (rank 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neurossl.atomic import atomic_path

FORMAT = "neurossl-model"
VERSION = 1
_HEADER = ("format", "version", "family", "method", "stage")


def save_model_file(
    path: Path | None, family: str, method: str, stage: str, payload: dict[str, Any]
) -> None:
    if path is None:
        raise ValueError(f"{method} {stage}: the stage was given no model output path")
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    clash = set(_HEADER) & set(payload)
    if clash:
        raise ValueError(f"model payload may not use the header keys {sorted(clash)}")
    header = {"format": FORMAT, "version": VERSION, "family": family, "method": method,
              "stage": stage}  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(header | payload, tmp)


def load_model_file(
    path: Path | None,
    family: str,
    stage: str | None = None,
    *,
    weights_only: bool = True,
) -> dict[str, Any]:
    """The file's dict after checking its header (``stage`` None: any stage)."""
    if path is None:
        raise ValueError(f"no {family} model file given")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {stage or family} model (run that stage first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise ValueError(f"{path}: unreadable model file ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a neurossl model file (no format {FORMAT!r} header)")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{path}: model file version {payload.get('version')!r}, this neurossl reads "
            f"{VERSION}; rerun the stage that wrote it"
        )
    if payload.get("family") != family:
        raise ValueError(f"{path}: a {payload.get('family')!r} model, expected {family!r}")
    if stage is not None and payload.get("stage") != stage:
        raise ValueError(f"{path}: a {payload.get('stage')!r} model, expected {stage!r}")
    return payload
