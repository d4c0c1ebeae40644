"""Method name -> implementation, imported lazily from the method table.

Lazy imports keep a rule that runs one method from importing every other family (and
torch at planning). Where each method lives is its entry in :mod:`neurossl.catalog`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from neurossl import catalog
from neurossl.methods.traits import MethodTraits, check_hparams, method_traits

if TYPE_CHECKING:
    from neurossl.contract import Method

__all__ = ["MethodTraits", "check_hparams", "get_method", "implementations", "method_traits"]


def implementations() -> dict[str, str]:
    """method name -> ``"module:make_method"``."""
    return {spec.name: f"{spec.module}:make_method" for spec in catalog.methods()}


def get_method(name: str) -> Method:
    """The method called ``name``; unknown names fail with the list of known ones."""
    module = importlib.import_module(catalog.method(name).module)
    return module.make_method(name)
