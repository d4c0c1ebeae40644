"""Rule entry point: compute and save a dataset's splits and per-neuron statistics."""

from neurossl.data.make_splits import SplitConfig, write_split_outputs
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    summary = write_split_outputs(
        dataset=snakemake.wildcards.dataset,
        session_files=list(snakemake.input.sessions),
        config=SplitConfig.from_dict(snakemake.params.split),
        splits_path=snakemake.output.splits,
        stats_path=snakemake.output.neuron_stats,
    )
    log.info("predictability: %s", summary)
