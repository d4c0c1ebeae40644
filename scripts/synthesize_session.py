"""Rule entry point: write one synthetic session as NWB."""

from neurossl.data.sources.synthetic import SyntheticConfig, write_session_nwb
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    config = SyntheticConfig.from_dict(snakemake.params.synthetic)
    write_session_nwb(config, snakemake.wildcards.session, snakemake.output.nwb)
    log.info("wrote %s", snakemake.output.nwb)
