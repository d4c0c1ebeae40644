"""Typed hyper-parameters: one pydantic model per method family, checked at planning.

A family declares its keys once, as fields of an :class:`HParams` subclass (type,
default, bounds, one line of doc, whether only fine-tuning reads it). The workflow
checks every ``hparams.<method>`` of the config against its model when it is planned
(``snakemake -n``), so a misspelt or mistyped key fails before any job starts; the
families build the same model to read their values; ``docs/hparams.md`` is generated
from the models (:func:`markdown`). pydantic gives types, bounds and messages that name
the key; strict mode, because YAML reads ``1e-3`` as a string and ``yes`` as a bool.
"""

from __future__ import annotations

import importlib
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class HParams(BaseModel):
    """Base of the families' models: unknown keys and loose types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def hparam(default: Any, doc: str, *, finetune_only: bool = False, **bounds: Any) -> Any:
    """A field with its one-line doc; ``finetune_only`` keys never reach pretraining, so
    tuning fine-tuning does not rerun (hours of) pretraining."""
    return Field(
        default, description=doc, json_schema_extra={"finetune_only": finetune_only}, **bounds
    )


class HParamError(ValueError):
    """A config's hparams do not fit the method's model; the message names method and key."""


def model_of(path: str) -> type[HParams]:
    """The model class named ``"module:Class"`` (as in the method table)."""
    module_name, _, class_name = path.partition(":")
    model = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(model, type) and issubclass(model, HParams)):
        raise TypeError(f"{path} is not a neurossl.hparams.HParams model")
    return model


def check(owner: str, model: type[HParams], values: dict[str, Any]) -> HParams:
    """``values`` as an instance of ``model``; errors name ``hparams.<owner>.<key>``."""
    try:
        return model(**values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(part) for part in e["loc"])
            if not key:
                problems.append(e["msg"].removeprefix("Value error, "))
            elif e["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}; known keys are {sorted(model.model_fields)}")
            else:
                problems.append(f"key {key!r}: {e['msg']} (got {e.get('input')!r})")
        raise HParamError(f"hparams.{owner}: " + "; ".join(problems)) from None


def finetune_only_keys(model: type[HParams]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("finetune_only")
    )


def _type_name(annotation: Any) -> str:
    """A type as a reader writes it, without '|' (the Markdown table's separator)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " / ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def markdown(title: str, model: type[HParams], used_by: list[str]) -> str:
    """A Markdown section documenting a model: key, type, default, bounds, doc."""
    lines = [
        f"## {title}",
        "",
        f"Used by: {', '.join(f'`{m}`' for m in used_by)}. *ft*: read by fine-tuning only.",
        "",
        "| key | type | default | bounds | |",
        "|---|---|---|---|---|",
    ]
    for name, info in model.model_fields.items():
        bounds = []
        for item in info.metadata:
            for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                if getattr(item, attr, None) is not None:
                    bounds.append(f"{sign} {getattr(item, attr)}")
        flag = "*ft* " if name in finetune_only_keys(model) else ""
        lines.append(
            f"| `{name}` | {_type_name(info.annotation)} | `{info.default!r}` | "
            f"{', '.join(bounds)} | {flag}{info.description or ''} |"
        )
    return "\n".join(lines) + "\n"
