"""Evaluation layer: metrics, queries, decoders, statistics and metric rows."""
