"""Method name -> implementation, imported lazily.

Lazy imports keep a rule that runs one method from importing every other family, and
let a user add a method by adding one line here, one module, and its planning traits
(:mod:`neurossl.methods.traits`), which the workflow reads without importing the module.
"""

from __future__ import annotations

import importlib

from neurossl.methods.base import Method
from neurossl.methods.traits import FINETUNE_ONLY_HPARAMS, PRETRAINING_METHODS, MethodTraits

#: method name -> "module:factory"; the factory takes the method name.
IMPLEMENTATIONS = {
    "mtm": "neurossl.methods.ndt_family:make_method",
    "ndt": "neurossl.methods.ndt_family:make_method",
    "scratch_ndt": "neurossl.methods.ndt_family:make_method",
    "poyo_ssl": "neurossl.methods.poyo_family:make_method",
    "poyo_ssl_mixed": "neurossl.methods.poyo_family:make_method",
    "poyo_ssl_reverse": "neurossl.methods.poyo_family:make_method",
    "scratch_perceiver": "neurossl.methods.poyo_family:make_method",
    "calm": "neurossl.methods.calm_family:make_method",
    "scratch_dual_axis": "neurossl.methods.calm_family:make_method",
    "linear": "neurossl.methods.baselines:make_method",
    "linear_unpredictable": "neurossl.methods.baselines:make_method",
    "persistence": "neurossl.methods.baselines:make_method",
    "mean": "neurossl.methods.baselines:make_method",
    "linear_ar": "neurossl.methods.baselines:make_method",
    "rnn": "neurossl.methods.baselines:make_method",
    "poco": "neurossl.methods.baselines:make_method",
    "oracle": "neurossl.methods.baselines:make_method",
}


def _implementation(name: str) -> tuple[str, str]:
    """(module, factory) of ``name``; unknown names fail with the list of known ones."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(IMPLEMENTATIONS)}")
    module_name, factory_name = IMPLEMENTATIONS[name].split(":")
    return module_name, factory_name


def method_traits(name: str) -> MethodTraits:
    """What the workflow plans with, without importing the method (and torch)."""
    module_name, _ = _implementation(name)
    if module_name not in FINETUNE_ONLY_HPARAMS:
        raise KeyError(
            f"method {name!r}: its module {module_name} has no entry in "
            "neurossl.methods.traits.FINETUNE_ONLY_HPARAMS"
        )
    return MethodTraits(name in PRETRAINING_METHODS, FINETUNE_ONLY_HPARAMS[module_name])


def get_method(name: str) -> Method:
    """The method called ``name``; unknown names fail with the list of known ones."""
    module_name, factory_name = _implementation(name)
    module = importlib.import_module(module_name)
    return getattr(module, factory_name)(name)
