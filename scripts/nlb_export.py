"""Rule entry point: co-smoothing rates in NLB's submission layout, scored by nlb_tools."""

from pathlib import Path

from neurossl.eval.bwb_export import Run
from neurossl.eval.nlb_export import write_scores
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    runs = [Run.from_predictions(Path(p)) for p in snakemake.input.predictions]
    table = write_scores(
        runs,
        Path(snakemake.input.session[0]),
        Path(snakemake.input.nwb),
        snakemake.params.name,
        Path(snakemake.output.scores),
        Path(snakemake.output.files),
    )
    log.info("%d NLB co-bps scores of %d runs", len(table), len(runs))
