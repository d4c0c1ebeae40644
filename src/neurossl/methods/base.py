"""The stage contract, re-exported for method modules (it lives in :mod:`neurossl.contract`)."""

from neurossl.contract import Evaluation, Method, MetricRow, StageInputs, StageOutputs

__all__ = ["Evaluation", "Method", "MetricRow", "StageInputs", "StageOutputs"]
