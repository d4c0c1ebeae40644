"""The one table of methods, tasks and metrics; everything else derives from it.

A method is one :class:`MethodSpec` entry (plus its module); the vocabulary
(:mod:`neurossl.names`), the config schema's enums (:func:`neurossl.config_schema.derived`),
the registry, the planning traits, the workflow's tuples and the report's maps are read
from here, so adding a method cannot leave one of them behind. The table imports nothing
from the package and no torch: the workflow reads it at every start-up.

Methods outside the package are added by naming their modules in the config key
``method_modules`` (or ``NEUROSSL_METHOD_MODULES``, comma-separated, which the workflow
sets for its jobs). Such a module declares ``METHODS = (MethodSpec(...), ...)`` and a
``make_method(name)`` factory; :func:`load_method_modules` adds its entries.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

MODALITIES = ("spikes", "calcium")
ORACLE = "oracle"
#: Environment variable naming extra method modules (comma-separated).
METHOD_MODULES_ENV = "NEUROSSL_METHOD_MODULES"


@dataclass(frozen=True)
class MethodSpec:
    """One method: what the workflow plans with and what the report compares."""

    name: str
    #: Module with ``make_method(name)``; imported only by the jobs that run the method.
    module: str
    #: Recording modalities the method runs on.
    modalities: tuple[str, ...]
    #: ``"module:Model"`` of the method's typed hyper-parameters (:mod:`neurossl.hparams`).
    hparams: str
    #: Model module of a trained backbone (its ``count_parameters(size)`` feeds the scaling
    #: figure); None for fitted methods.
    backbone: str | None = None
    #: Pretraining objective in words (the report's method glossary); None: none.
    objective: str | None = None
    #: Whether a pretraining stage runs before fine-tuning.
    pretrains: bool = False
    #: Whether the method reads the dataset's trained tokenizer (CalM's codes).
    tokenizer: bool = False
    #: The same backbone trained from random initialisation (pretrained methods only).
    scratch: str | None = None
    #: Ablations the method's claim is about (the report shows the paired differences).
    ablations: tuple[str, ...] = ()
    #: Fit and score in one job (simple baselines, oracle) instead of finetune -> evaluate.
    fitted: bool = False
    #: Fitted with no random state: run at the first seed only, repeated for every seed.
    seed_independent: bool = False
    #: Trains a network on the configured device (needs a GPU slot when one exists).
    uses_device: bool = True
    #: The family method whose objective this method trains on another family's backbone
    #: (the report's shared-backbone table; the headline matrix leaves it out).
    objective_of: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.modalities) - set(MODALITIES)
        if not self.modalities or unknown:
            raise ValueError(
                f"method {self.name!r}: modalities {self.modalities} not in {MODALITIES}"
            )
        if self.pretrains and self.fitted:
            raise ValueError(f"method {self.name!r}: a fitted method cannot pretrain")
        if ":" not in self.hparams:
            raise ValueError(f"method {self.name!r}: hparams must be 'module:Model'")


_NDT = "neurossl.methods.ndt_family"
_POYO = "neurossl.methods.poyo_family"
_CALM = "neurossl.methods.calm_family"
_BASE = "neurossl.methods.baselines"
_HP = "neurossl.methods.hparam_models"
_SPIKES, _CALCIUM, _BOTH = ("spikes",), ("calcium",), MODALITIES


def _ndt(name: str, objective: str | None, pretrains: bool) -> MethodSpec:
    return MethodSpec(
        name, _NDT, _BOTH, f"{_HP}:NDTHParams", "neurossl.models.ndt", objective, pretrains,
        scratch="scratch_ndt" if pretrains else None,
    )  # fmt: skip


def _poyo(name: str, objective: str | None, pretrains: bool, ablations=()) -> MethodSpec:
    return MethodSpec(
        name, _POYO, _BOTH, f"{_HP}:PoyoHParams", "neurossl.models.perceiver", objective,
        pretrains, scratch="scratch_perceiver" if pretrains else None, ablations=ablations,
    )  # fmt: skip


def _calm(name: str, objective: str | None, pretrains: bool) -> MethodSpec:
    return MethodSpec(
        name, _CALM, _BOTH, f"{_HP}:CalmHParams", "neurossl.models.dual_axis", objective,
        pretrains, tokenizer=True, scratch="scratch_dual_axis" if pretrains else None,
    )  # fmt: skip


def _shared(name: str, objective: str, of: str) -> MethodSpec:
    """Another family's objective on CalM's backbone (neurossl.methods.shared_backbone)."""
    return MethodSpec(
        name, "neurossl.methods.shared_backbone", _BOTH, f"{_HP}:CalmHParams",
        "neurossl.models.dual_axis", objective, True, tokenizer=True,
        scratch="scratch_dual_axis", objective_of=of,
    )  # fmt: skip


def _fitted(name: str, modalities: tuple[str, ...], *, seedless=False, network=False) -> MethodSpec:
    return MethodSpec(
        name, _BASE, modalities, f"{_HP}:BaselineHParams", fitted=True,
        seed_independent=seedless, uses_device=network,
    )  # fmt: skip


#: Built-in methods, in report order: self-supervised methods and their ablations,
#: scratch controls, simple baselines (forecasting-only ones serve calcium, as in
#: ZAPBench/POCO; on spikes linear and oracle are the references), ground truth.
BUILTIN_METHODS: tuple[MethodSpec, ...] = (
    _ndt("mtm", "multi-task masking (neuron, causal, intra-, inter-region)", True),
    _ndt("ndt", "temporal masking", True),
    _poyo("poyo_ssl", "masked reconstruction of predictable neurons", True,
          ("poyo_ssl_mixed", "poyo_ssl_reverse")),
    _poyo("poyo_ssl_mixed", "masked reconstruction of all neurons", True),
    _poyo("poyo_ssl_reverse", "masked reconstruction of unpredictable neurons", True),
    _calm("calm", "next-token prediction of tokenised trace patches", True),
    _shared("dual_axis_mtm", "MtM's multi-task masking of tokenised patches", "mtm"),
    _shared("dual_axis_poyo_ssl", "POYO-SSL's masked reconstruction of predictable neurons' "
            "tokenised patches", "poyo_ssl"),
    _ndt("scratch_ndt", None, False),
    _poyo("scratch_perceiver", None, False),
    _calm("scratch_dual_axis", None, False),
    _fitted("linear", _BOTH),
    _fitted("linear_unpredictable", _CALCIUM),
    _fitted("persistence", _CALCIUM, seedless=True),
    _fitted("mean", _CALCIUM, seedless=True),
    _fitted("linear_ar", _CALCIUM, seedless=True),
    _fitted("rnn", _CALCIUM, network=True),
    _fitted("poco", _CALCIUM, network=True),
    _fitted(ORACLE, _BOTH, seedless=True),
)  # fmt: skip

#: Hyper-parameters of the per-dataset tokenizer stage (config ``hparams.tokenizer``).
TOKENIZER_HPARAMS = f"{_HP}:TokenizerHParams"


@dataclass(frozen=True)
class TaskSpec:
    """A task, or a family of tasks named ``<prefix><variable>``."""

    name: str
    #: "activity" (predict held-out activity) or "decoding" (a label or behaviour).
    kind: str
    #: True: ``name`` is a prefix and the task is ``<name><lower_snake_case variable>``.
    prefix: bool = False


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("co_smoothing", "activity"),
    TaskSpec("forecasting", "activity"),
    TaskSpec("inter_region", "activity"),
    TaskSpec("intra_region", "activity"),
    TaskSpec("choice", "decoding"),
    TaskSpec("behavior_", "decoding", prefix=True),
    TaskSpec("stimulus_", "decoding", prefix=True),
)


@dataclass(frozen=True)
class MetricSpec:
    """A metric: its direction and whether a relative gain over a reference means anything."""

    name: str
    higher_is_better: bool
    #: Accuracies (chance > 0) and errors (>= 0) have meaningful relative gains; skill
    #: scores whose 0 is the null model (bps, D^2, R^2) do not: a reference near 0 turns
    #: any gap into hundreds of percent.
    relative_gain: bool
    #: Also reported per forecasting horizon step as ``<name>_h<k>``.
    per_horizon: bool = False
    #: Also scored by the frozen-backbone linear probe as ``frozen_<name>``.
    frozen_probe: bool = False


METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("bps", True, False),
    MetricSpec("poisson_d2", True, False),
    MetricSpec("poisson_d2_pooled", True, False),
    MetricSpec("r2", True, False, per_horizon=True, frozen_probe=True),
    MetricSpec("bacc", True, True, frozen_probe=True),
    MetricSpec("acc", True, True, frozen_probe=True),
    MetricSpec("mae", False, True, per_horizon=True),
    MetricSpec("mse", False, True, per_horizon=True),
    MetricSpec("pearson", True, False, per_horizon=True),
)

_methods: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> None:
    """Add a method; a name already taken by another declaration is an error."""
    known = _methods.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"method {spec.name!r} is declared twice ({known.module}, {spec.module})")
    _methods[spec.name] = spec


def load_method_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import extra method modules and register the ``METHODS`` each declares."""
    for module_name in modules:
        module = importlib.import_module(module_name)
        declared = getattr(module, "METHODS", None)
        if not declared or not all(isinstance(s, MethodSpec) for s in declared):
            raise ValueError(
                f"method module {module_name}: expected METHODS = (MethodSpec(...), ...)"
            )
        for spec in declared:
            register(spec)
    # The vocabulary is computed once, at its first import; a method module that imported
    # it at its top froze it without its own methods.
    frozen = getattr(sys.modules.get("neurossl.names"), "METHODS", None)
    stale = [s.name for s in _methods.values() if frozen is not None and s.name not in frozen]
    if stale:
        raise ImportError(
            f"methods {stale} were declared after neurossl.names was imported; a method "
            "module must import neurossl.names inside its functions, not at its top"
        )


def methods() -> tuple[MethodSpec, ...]:
    """Every declared method, built-in first, in declaration order."""
    return tuple(_methods.values())


def method(name: str) -> MethodSpec:
    if name not in _methods:
        raise ValueError(f"unknown method {name!r}; expected one of {tuple(_methods)}")
    return _methods[name]


for _spec in BUILTIN_METHODS:
    register(_spec)
# Last, so an extra module can import MethodSpec from this (partly initialised) module.
load_method_modules([m for m in os.environ.get(METHOD_MODULES_ENV, "").split(",") if m])
