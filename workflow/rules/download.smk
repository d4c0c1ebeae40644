"""DANDI download: list a pinned dandiset version, then one verified download per asset.

The manifest is a checkpoint because the number of sessions of a dandiset is only known
after listing it; everything downstream asks for sessions through ``dandi_sessions``.
"""


localrules:
    dandi_manifest,
    download_asset,


wildcard_constraints:
    asset_path=r"[A-Za-z0-9][^\s]*\.nwb",


checkpoint dandi_manifest:
    """List the assets of the configured dandiset version (path, size, digest, asset id)."""
    output:
        manifest=f"{RESULTS}/{{dataset}}/manifest.json",
    params:
        dandi=lambda wc: DATASETS[wc.dataset]["dandi"],
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("download", "{dataset}", "manifest"),
    benchmark:
        benchmark_path("download", "{dataset}", "manifest")
    script:
        "../../scripts/dandi_manifest.py"


rule download_asset:
    """One asset, through a .part file, retried, digest-verified; resumes after a kill."""
    input:
        manifest=f"{RESULTS}/{{dataset}}/manifest.json",
    output:
        nwb=f"{RAW}/{{dataset}}/dandi/{{asset_path}}",
    params:
        root=lambda wc: f"{RAW}/{wc.dataset}/dandi",
        retries=lambda wc: DATASETS[wc.dataset]["dandi"].get("retries", 5),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("download", "{dataset}", "{asset_path}"),
    benchmark:
        benchmark_path("download", "{dataset}", "{asset_path}")
    script:
        "../../scripts/download_asset.py"
