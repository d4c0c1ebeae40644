"""Pretraining budget per objective: steps, tokens seen and estimated training FLOPs.

Read from the published pretraining logs (``train_log.csv``), not from configs: a run
stopped early or resumed counts what it actually trained. Tokens are the sum of the
log's :data:`neurossl.train_logs.TOKENS` column, which each objective's loss reports per
step as the input tokens its backbone attended over (MtM: time bins; POYO: (neuron,
sample) events; CalM: (neuron, patch) codes), so "token" means each objective's own
unit. Training FLOPs are estimated as 6 x backbone parameters x tokens (forward plus
backward of every parameter once per token; attention's quadratic term is left out),
only where the backbone module counts its parameters. Anything that cannot be derived
is shown as not logged / unknown rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurossl.report.collect import RunKey
from neurossl.report.figures import parameter_count
from neurossl.report.tables import method_order
from neurossl.train_logs import TOKENS

#: Multiply-adds per parameter per token for one forward and backward pass (2 + 4).
FLOPS_PER_PARAMETER_TOKEN = 6


@dataclass(frozen=True)
class Budget:
    method: str
    modality: str
    size: str
    n_seeds: int
    steps: float
    #: Mean over seeds of the tokens seen; NaN: the objective does not log tokens.
    tokens: float
    #: Backbone parameters; None: the backbone module cannot count them.
    parameters: int | None
    flops: float
    seconds: float


def pretraining_budgets(logs: dict[tuple[str, RunKey], Path], size: str) -> list[Budget]:
    """One row per (pretraining method, modality) at ``size``, means over seeds."""
    runs: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for (stage, run), path in logs.items():
        if stage == "pretrain" and run.size == size:
            runs.setdefault((run.method, run.modality), []).append(pd.read_csv(path))
    budgets = []
    for (method, modality), frames in sorted(
        runs.items(), key=lambda kv: (method_order(kv[0][0]), kv[0])
    ):
        steps = np.mean([float(f["step"].max()) for f in frames])
        seconds = np.mean(
            [float(f["seconds"].sum()) if "seconds" in f else math.nan for f in frames]
        )
        logged = all(TOKENS in f for f in frames)
        tokens = np.mean([float(f[TOKENS].sum()) for f in frames]) if logged else math.nan
        parameters = parameter_count(method, size)
        flops = (
            FLOPS_PER_PARAMETER_TOKEN * parameters * tokens if parameters is not None else math.nan
        )
        budgets.append(
            Budget(method, modality, size, len(frames), steps, tokens, parameters, flops, seconds)
        )
    return budgets


def parity(budgets: list[Budget]) -> dict[str, float]:
    """Per modality, largest over smallest tokens seen among objectives that log tokens."""
    ratios = {}
    for modality in sorted({b.modality for b in budgets}):
        tokens = [b.tokens for b in budgets if b.modality == modality and b.tokens > 0]
        if len(tokens) > 1:
            ratios[modality] = max(tokens) / min(tokens)
    return ratios
