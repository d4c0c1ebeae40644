"""Rule entry point: download one manifest asset, verified against the archive's digest."""

from pathlib import Path

from neurossl.data.sources.dandi import (
    asset_target,
    download_asset,
    entry_for_path,
    read_manifest,
)
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    manifest = read_manifest(snakemake.input.manifest)
    entry = entry_for_path(manifest, snakemake.wildcards.asset_path)
    root = Path(snakemake.params.root)
    if asset_target(root, entry.path) != Path(snakemake.output.nwb).resolve():
        raise ValueError(f"{entry.path}: download target differs from {snakemake.output.nwb}")
    download_asset(
        entry, root, manifest.api_url, retries=int(snakemake.params.retries), log=log.info
    )
