"""The one vocabulary of methods, tasks, metrics and output paths.

Rules, training, evaluation and the report all import these names, so a name cannot
drift between the file that writes a result and the table that reads it (the failure
mode of codebases where each script spells the task its own way).
"""

from __future__ import annotations

import re
from pathlib import Path

from neurossl import catalog

MODALITIES = catalog.MODALITIES
#: The report's figures (neurossl.report.figures draws them); named here so the workflow
#: knows its outputs without importing matplotlib and scipy at every start-up.
FIGURES = (
    "objective_matrix",
    "forecasting_horizon",
    "scaling",
    "per_neuron_bps",
    "predictability",
    "training_curves",
)
#: Windows an evaluation can score: test (reported numbers) or valid (model selection).
EVAL_SPLITS = ("test", "valid")

# Method groups, derived from the one table (neurossl.catalog), in its order.
_SPECS = catalog.methods()
#: Self-supervised methods and their ablations.
PRETRAINED_METHODS = tuple(s.name for s in _SPECS if s.pretrains)
#: The same backbones trained from random initialisation.
SCRATCH_METHODS = tuple(s.name for s in _SPECS if not s.pretrains and not s.fitted)
#: Ground truth; only defined for synthetic data.
ORACLE = catalog.ORACLE
#: Simple baselines that need no backbone.
SIMPLE_BASELINES = tuple(s.name for s in _SPECS if s.fitted and s.name != ORACLE)
METHODS = tuple(s.name for s in _SPECS)
#: Methods with a trained backbone: pretrain (if any) -> finetune jobs (each scores its model).
NEURAL_METHODS = tuple(s.name for s in _SPECS if not s.fitted)
#: Methods fitted and scored in one job (fitting takes seconds, a job an interpreter).
FITTED_METHODS = tuple(s.name for s in _SPECS if s.fitted)
#: Fitted methods with no random state (closed-form fits, contiguous-fold CV, ground
#: truth): every seed gives the same numbers, so the workflow runs them once, at the
#: first configured seed, and the report repeats that run for every seed.
SEED_INDEPENDENT_METHODS = tuple(s.name for s in _SPECS if s.seed_independent)
#: Methods that read the dataset's trained tokenizer.
TOKENIZER_METHODS = tuple(s.name for s in _SPECS if s.tokenizer)
#: Fitted methods that train a network (they may use the GPU and run before the others).
NETWORK_BASELINES = tuple(s.name for s in _SPECS if s.fitted and s.uses_device)
#: Modalities each method runs on.
METHOD_MODALITIES = {s.name: s.modalities for s in _SPECS}
#: The modality of a method built for one (absent: any modality).
METHOD_MODALITY = {s.name: s.modalities[0] for s in _SPECS if len(s.modalities) == 1}

FIXED_TASKS = tuple(t.name for t in catalog.TASKS if not t.prefix)
BEHAVIOR_PREFIX = "behavior_"
STIMULUS_PREFIX = "stimulus_"
_TASK_PREFIXES = tuple(t.name for t in catalog.TASKS if t.prefix)
_DECODING = tuple(t.name for t in catalog.TASKS if t.kind == "decoding")
#: Tasks that predict held-out activity (the others decode labels or behaviour).
ACTIVITY_TASKS = tuple(t.name for t in catalog.TASKS if t.kind == "activity")

#: Decoding metrics of a linear probe on a *frozen* backbone (``frozen_<metric>``), next to
#: the fine-tuned head's ``<metric>`` of the same task: metrics.csv has no column for the
#: adaptation variant, and a metric name keeps the two from being averaged together.
FROZEN_PREFIX = "frozen_"
FROZEN_METRICS = tuple(FROZEN_PREFIX + m.name for m in catalog.METRIC_SPECS if m.frozen_probe)
BASE_METRICS = tuple(m.name for m in catalog.METRIC_SPECS)
METRICS = (*BASE_METRICS, *FROZEN_METRICS)
HORIZON_METRICS = tuple(m.name for m in catalog.METRIC_SPECS if m.per_horizon)
_METRIC_SPEC = {m.name: m for m in catalog.METRIC_SPECS}

_IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def behavior_task(variable: str) -> str:
    """Task name for decoding a continuous behaviour variable, e.g. wheel_speed."""
    return BEHAVIOR_PREFIX + _checked_identifier(variable)


def stimulus_task(variable: str) -> str:
    """Task name for decoding a stimulus variable, e.g. drifting_gratings_orientation."""
    return STIMULUS_PREFIX + _checked_identifier(variable)


def horizon_metric(metric: str, step: int) -> str:
    """Per-horizon-step metric name (1-based step), e.g. mae_h3."""
    if metric not in HORIZON_METRICS:
        raise ValueError(f"metric {metric!r} has no per-horizon form; expected {HORIZON_METRICS}")
    if step < 1:
        raise ValueError(f"horizon step must be >= 1, got {step}")
    return f"{metric}_h{step}"


def frozen_metric(metric: str) -> str:
    """Name of a decoding metric scored by the frozen-backbone probe, e.g. frozen_bacc."""
    name = FROZEN_PREFIX + metric
    if name not in FROZEN_METRICS:
        raise ValueError(f"metric {metric!r} has no frozen-probe form; expected {FROZEN_METRICS}")
    return name


def is_task(name: str) -> bool:
    """Whether a string is a task of the vocabulary (fixed or behaviour/stimulus)."""
    if name in FIXED_TASKS:
        return True
    for prefix in _TASK_PREFIXES:
        if name.startswith(prefix) and _IDENTIFIER.match(name[len(prefix) :]):
            return True
    return False


_HORIZON = re.compile(rf"({'|'.join(HORIZON_METRICS)})_h[1-9][0-9]*")


def is_horizon_metric(name: str) -> bool:
    """Whether a string is a per-horizon-step metric such as ``mae_h3``."""
    return _HORIZON.fullmatch(name) is not None


def is_decoding_task(task: str) -> bool:
    """Whether a task decodes a label or behaviour (``choice``, stimulus, behaviour)."""
    return task in _DECODING or task.startswith(tuple(p for p in _DECODING if p in _TASK_PREFIXES))


def label_columns(task: str) -> tuple[str, ...]:
    """Trial columns that may hold a window-label task's target, in order of preference.

    The one lookup every family and baseline uses: a trial column may carry the task's
    full name (``stimulus_class`` on synthetic data) or only the variable
    (``drifting_gratings_orientation`` on Allen-style tables); ``choice`` is ``choice``.
    """
    if task == "choice":
        return ("choice",)
    if task.startswith(STIMULUS_PREFIX):
        return (task, task[len(STIMULUS_PREFIX) :])
    raise ValueError(f"task {task!r} has no window label; expected 'choice' or 'stimulus_<var>'")


def is_metric(name: str) -> bool:
    """Whether a string is a metric of the vocabulary, including per-horizon forms."""
    return name in METRICS or is_horizon_metric(name)


def base_metric(metric: str) -> str:
    """The metric a name is a form of: ``mae_h3`` -> ``mae``, ``frozen_bacc`` -> ``bacc``."""
    if is_horizon_metric(metric):
        return metric.rsplit("_h", 1)[0]
    if metric.startswith(FROZEN_PREFIX) and metric in FROZEN_METRICS:
        return metric[len(FROZEN_PREFIX) :]
    return metric


def higher_is_better(metric: str) -> bool:
    """Direction of a metric (errors go down), including its per-horizon and probe forms."""
    return _metric_spec(metric).higher_is_better


def relative_gain_meaningful(metric: str) -> bool:
    """Whether a percentage gain over a reference means anything for this metric."""
    return _metric_spec(metric).relative_gain


def _metric_spec(metric: str) -> catalog.MetricSpec:
    spec = _METRIC_SPEC.get(base_metric(metric))
    if spec is None:
        raise ValueError(f"unknown metric {metric!r}; declare it in neurossl.catalog.METRIC_SPECS")
    return spec


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
    return name


def check_task(name: str) -> str:
    if not is_task(name):
        raise ValueError(
            f"unknown task {name!r}; expected one of {FIXED_TASKS} or "
            f"'{BEHAVIOR_PREFIX}<variable>' / '{STIMULUS_PREFIX}<variable>'"
        )
    return name


def _checked_identifier(variable: str) -> str:
    if not _IDENTIFIER.match(variable):
        raise ValueError(f"variable name {variable!r} must be lower_snake_case")
    return variable


# --- output paths: one function per artefact, used by rules and by Python alike ---


def session_path(results: str | Path, dataset: str, session: str, modality: str) -> Path:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected {MODALITIES}")
    return Path(results) / dataset / "sessions" / f"{session}.{modality}.h5"


def splits_path(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset / "splits.json"


def report_dir(results: str | Path, dataset: str) -> Path:
    return Path(results) / dataset / "report"


def session_key(path: str | Path) -> tuple[str, str]:
    """(session, modality) from a Session file name ``{session}.{modality}.h5``."""
    parts = Path(path).name.split(".")
    if len(parts) != 3 or parts[2] != "h5":
        raise ValueError(f"{path}: expected a Session file named '<session>.<modality>.h5'")
    return parts[0], parts[1]
