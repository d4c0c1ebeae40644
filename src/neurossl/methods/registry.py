"""Method name -> implementation, imported lazily.

Lazy imports keep a rule that runs one method from importing every other family, and
let a user add a method by adding one line here and one module.
"""

from __future__ import annotations

import importlib

from neurossl.methods.base import Method

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


def get_method(name: str) -> Method:
    """The method called ``name``; unknown names fail with the list of known ones."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(IMPLEMENTATIONS)}")
    module_name, factory_name = IMPLEMENTATIONS[name].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, factory_name)(name)
