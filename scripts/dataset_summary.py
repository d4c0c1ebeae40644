"""Rule entry point: dataset summary JSON and figures."""

from neurossl.report.dataset_summary import write_dataset_summary
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    summary = write_dataset_summary(
        splits_path=snakemake.input.splits,
        stats_path=snakemake.input.neuron_stats,
        session_files=list(snakemake.input.sessions),
        summary_path=snakemake.output.summary,
        regions_png=snakemake.output.regions,
        distributions_png=snakemake.output.distributions,
        predictability_png=snakemake.output.predictability,
    )
    log.info("sessions %s", summary["sessions"])
