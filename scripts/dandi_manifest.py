"""Rule entry point: list a pinned dandiset version into the download manifest."""

from neurossl.data.sources.dandi import DandiSpec, list_assets, write_manifest
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    spec = DandiSpec.from_dict(snakemake.params.dandi, where=f"{snakemake.wildcards.dataset}.dandi")
    manifest = list_assets(spec)
    write_manifest(manifest, snakemake.output.manifest)
    log.info(
        "dandiset %s version %s: %d assets",
        manifest.dandiset,
        manifest.version,
        len(manifest.assets),
    )
