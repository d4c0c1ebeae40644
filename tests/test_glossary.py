"""The report states what every metric computes, including each bits/spike's silent-neuron rule."""

from __future__ import annotations

from neurossl.eval.glossary import METRIC_GLOSSARY
from neurossl.names import METRICS


def test_every_metric_has_a_glossary_entry():
    assert set(METRICS) <= set(METRIC_GLOSSARY)
    assert "silent" in METRIC_GLOSSARY["bps"] and "BrainWideBench" in METRIC_GLOSSARY["bps"]
    assert "left out" in METRIC_GLOSSARY["poisson_d2"]
    assert "pooled" in METRIC_GLOSSARY["poisson_d2_pooled"]
