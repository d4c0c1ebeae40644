"""The embedded default source: synthetic recordings written as real NWB files."""


rule synthesize_session:
    """One simulated session as NWB, drawn from the dataset's shared ground truth."""
    output:
        nwb=f"{RAW}/{{dataset}}/{{session}}.nwb",
    params:
        synthetic=lambda wc: DATASETS[wc.dataset].get("synthetic", {}),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("synthesize", "{dataset}", "{session}"),
    benchmark:
        benchmark_path("synthesize", "{dataset}", "{session}")
    script:
        "../../scripts/synthesize_session.py"
