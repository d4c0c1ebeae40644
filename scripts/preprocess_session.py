"""Rule entry point: one NWB file -> one Session HDF5 of the requested modality."""

from neurossl.data.preprocess import preprocess_to_session
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    preprocess_to_session(
        nwb_path=snakemake.input.nwb,
        out_path=snakemake.output.session,
        dataset=snakemake.wildcards.dataset,
        session=snakemake.wildcards.session,
        modality=snakemake.wildcards.modality,
        reader=snakemake.params.reader,
        spike_bin_size=snakemake.params.spike_bin_size,
        options=snakemake.params.options,
        source_sha256=snakemake.params.source_sha256 or None,
    )
    log.info("wrote %s", snakemake.output.session)
