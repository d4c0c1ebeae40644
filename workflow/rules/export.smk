"""Predictions exported to other benchmarks' formats and scored by their own code."""


localrules:
    bwb_export,


rule bwb_export:
    """IBL BrainWideBench's submission layout + ground truth, scored by ibl-bwb-eval."""
    input:
        unpack(bwb_inputs),
    output:
        scores=f"{RESULTS}/{{dataset}}/bwb/scores.csv",
        files=directory(f"{RESULTS}/{{dataset}}/bwb/files"),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("report", "{dataset}", "bwb_export"),
    benchmark:
        benchmark_path("report", "{dataset}", "bwb_export")
    script:
        "../../scripts/bwb_export.py"
