"""The one vocabulary of methods, tasks, metrics and output paths.

Rules, training, evaluation and the report all import these names, so a name cannot
drift between the file that writes a result and the table that reads it (the failure
mode of codebases where each script spells the task its own way).
"""

from __future__ import annotations

import re
from pathlib import Path

MODALITIES = ("spikes", "calcium")
#: The report's figures (neurossl.report.figures draws them); named here so the workflow
#: knows its outputs without importing matplotlib and scipy at every start-up.
FIGURES = ("forecasting_horizon", "scaling", "per_neuron_bps", "predictability", "training_curves")
#: Windows an evaluation can score: test (reported numbers) or valid (model selection).
EVAL_SPLITS = ("test", "valid")

#: Self-supervised methods and their ablations.
PRETRAINED_METHODS = ("mtm", "ndt", "poyo_ssl", "poyo_ssl_mixed", "poyo_ssl_reverse", "calm")
#: The same backbones trained from random initialisation.
SCRATCH_METHODS = ("scratch_ndt", "scratch_perceiver", "scratch_dual_axis")
#: Simple baselines that need no backbone.
SIMPLE_BASELINES = (
    "linear",
    "linear_unpredictable",
    "persistence",
    "mean",
    "linear_ar",
    "rnn",
    "poco",
)
#: Ground truth; only defined for synthetic data.
ORACLE = "oracle"
METHODS = PRETRAINED_METHODS + SCRATCH_METHODS + SIMPLE_BASELINES + (ORACLE,)
#: Methods with a trained backbone: pretrain (if any) -> finetune -> evaluate jobs.
NEURAL_METHODS = PRETRAINED_METHODS + SCRATCH_METHODS
#: Methods fitted and scored in one job (fitting takes seconds, a job an interpreter).
FITTED_METHODS = (*SIMPLE_BASELINES, ORACLE)
#: Fitted methods with no random state (closed-form fits, contiguous-fold CV, ground
#: truth): every seed gives the same numbers, so the workflow runs them once, at the
#: first configured seed, and the report repeats that run for every seed.
SEED_INDEPENDENT_METHODS = ("persistence", "mean", "linear_ar", ORACLE)

#: Which recording modality a method is built for (absent: any modality).
METHOD_MODALITY = {
    "mtm": "spikes",
    "ndt": "spikes",
    "scratch_ndt": "spikes",
    "poyo_ssl": "calcium",
    "poyo_ssl_mixed": "calcium",
    "poyo_ssl_reverse": "calcium",
    "scratch_perceiver": "calcium",
    "calm": "calcium",
    "scratch_dual_axis": "calcium",
    "linear_unpredictable": "calcium",
    # Forecasting-only baselines (ZAPBench/POCO) serve calcium; on spikes the MtM
    # forward-prediction task has linear and oracle as its references.
    "persistence": "calcium",
    "mean": "calcium",
    "linear_ar": "calcium",
    "rnn": "calcium",
    "poco": "calcium",
}

FIXED_TASKS = ("co_smoothing", "forecasting", "inter_region", "intra_region", "choice")
BEHAVIOR_PREFIX = "behavior_"
STIMULUS_PREFIX = "stimulus_"

#: Decoding metrics of a linear probe on a *frozen* backbone (``frozen_<metric>``), next to
#: the fine-tuned head's ``<metric>`` of the same task: metrics.csv has no column for the
#: adaptation variant, and a metric name keeps the two from being averaged together.
FROZEN_PREFIX = "frozen_"
FROZEN_METRICS = ("frozen_bacc", "frozen_acc", "frozen_r2")
#: pearson is CalM's forecasting score; poisson_d2 is IBL BrainWideBench's per-neuron mean
#: of D^2 and poisson_d2_pooled the pooled ratio (neurossl.eval.metrics); the rest are defined
#: there too.
METRICS = (
    "bps",
    "poisson_d2",
    "poisson_d2_pooled",
    "r2",
    "bacc",
    "acc",
    "mae",
    "mse",
    "pearson",
    *FROZEN_METRICS,
)
HORIZON_METRICS = ("mae", "mse", "r2", "pearson")

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
    for prefix in (BEHAVIOR_PREFIX, STIMULUS_PREFIX):
        if name.startswith(prefix) and _IDENTIFIER.match(name[len(prefix) :]):
            return True
    return False


_HORIZON = re.compile(rf"({'|'.join(HORIZON_METRICS)})_h[1-9][0-9]*")


def is_horizon_metric(name: str) -> bool:
    """Whether a string is a per-horizon-step metric such as ``mae_h3``."""
    return _HORIZON.fullmatch(name) is not None


def is_decoding_task(task: str) -> bool:
    """Whether a task decodes a label or behaviour (``choice``, stimulus, behaviour)."""
    return task == "choice" or task.startswith((BEHAVIOR_PREFIX, STIMULUS_PREFIX))


def is_metric(name: str) -> bool:
    """Whether a string is a metric of the vocabulary, including per-horizon forms."""
    return name in METRICS or is_horizon_metric(name)


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
