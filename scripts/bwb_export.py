"""Rule entry point: spiking predictions in BrainWideBench's format, scored by ibl-bwb-eval."""

from pathlib import Path

from neurossl.eval.bwb_export import Run, write_scores
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    runs = [Run.from_predictions(Path(p)) for p in snakemake.input.predictions]
    table = write_scores(runs, Path(snakemake.output.scores), Path(snakemake.output.files))
    log.info("%d BrainWideBench-convention scores of %d runs", len(table), len(runs))
