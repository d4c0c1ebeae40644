"""Checks of a workflow config that jobs would otherwise fail on, run at planning.

Why at planning: a setting a job rejects (a misspelt task, fractions that do not sum
to 1) would surface only when that job runs, after Snakemake deleted the outputs the
job replaces, e.g. the pretrained models of a finished run. ``snakemake -n`` calls
:func:`check_config` (``rules/common.smk``) and names the dataset and the key. The
checks reuse the functions the jobs call, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurossl.data.make_splits import SplitConfig
from neurossl.data.sources.synthetic_config import (
    BEHAVIOR_VARIABLES,
    TRIAL_LABELS,
    SyntheticConfig,
)
from neurossl.data.windows import check_block_window, check_fractions, check_trial_window
from neurossl.names import (
    BEHAVIOR_PREFIX,
    METHOD_MODALITIES,
    MODALITIES,
    STIMULUS_PREFIX,
    check_task,
)


class ConfigError(ValueError):
    """One or more config settings a job would reject; one line per setting."""


def check_config(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every rejected setting (``datasets.<name>.<key>``)."""
    problems = []
    for name, spec in config.get("datasets", {}).items():
        problems += [f"datasets.{name}.{key}: {why}" for key, why in _dataset_problems(spec)]
    for method, modalities in config.get("method_modalities", {}).items():
        runs_on = METHOD_MODALITIES.get(method, MODALITIES)
        for modality in modalities:
            if modality not in runs_on:
                problems.append(
                    f"method_modalities.{method}: {method} does not run on {modality} "
                    f"(its catalog entry: {', '.join(runs_on)})"
                )
    if problems:
        raise ConfigError("config rejected at planning:\n  " + "\n  ".join(problems))


def _dataset_problems(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    known = _known_variables(spec)
    for modality, tasks in spec.get("tasks", {}).items():
        for task in tasks:
            key = f"tasks.{modality}"
            try:
                check_task(task)
            except ValueError as err:
                problems.append((key, str(err)))
                continue
            if known is not None:
                why = _unknown_variable(task, *known)
                if why:
                    problems.append((key, why))
    try:
        split = SplitConfig.from_dict(spec.get("split", {}))
    except (TypeError, ValueError) as err:
        return [*problems, ("split", str(err))]
    for key in ("fractions", "heldout_fractions"):
        fractions = getattr(split, key)
        if fractions is not None:
            problems += _failure(f"split.{key}", check_fractions, fractions)
    if split.windows == "trials":
        problems += _failure("split.pre/post", check_trial_window, split.pre, split.post)
    else:
        problems += _failure(
            "split.block_window/block_length",
            check_block_window,
            split.block_window,
            split.block_length,
        )
    if spec.get("source") == "synthetic" and not (split.heldout_sessions or split.heldout_subjects):
        n_subjects = SyntheticConfig.from_dict(spec.get("synthetic", {})).n_subjects
        if not 0 < split.n_heldout_subjects < n_subjects:
            problems.append(
                (
                    "split.n_heldout_subjects",
                    f"{split.n_heldout_subjects} must leave at least one of the {n_subjects} "
                    "synthetic subjects for pretraining",
                )
            )
    return problems


def _failure(key: str, check: Any, *args: Any) -> list[tuple[str, str]]:
    try:
        check(*args)
    except ValueError as err:
        return [(key, str(err))]
    return []


def _known_variables(spec: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(behaviour series, trial label columns) a source is known to provide, else None.

    Only the synthetic generator's are known before the data exist; real sources are
    checked by their jobs, which name the file and what it holds.
    """
    if spec.get("source") == "synthetic":
        return BEHAVIOR_VARIABLES, TRIAL_LABELS
    return None


def _unknown_variable(task: str, behavior: tuple[str, ...], labels: tuple[str, ...]) -> str:
    variable = task.removeprefix(BEHAVIOR_PREFIX)
    if task.startswith(BEHAVIOR_PREFIX) and variable not in behavior:
        return f"task {task!r}: the data have no behaviour {variable!r} (they have {behavior})"
    # A stimulus label column is named like the task or like its variable (methods' lookup).
    stimulus = task.removeprefix(STIMULUS_PREFIX)
    if task.startswith(STIMULUS_PREFIX) and task not in labels and stimulus not in labels:
        stimuli = [c for c in labels if c.startswith(STIMULUS_PREFIX)]
        return f"task {task!r}: the trials have no such column (stimulus tasks: {stimuli})"
    return ""
