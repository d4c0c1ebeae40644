"""Predictions exported to other benchmarks' formats and scored by their own code."""


localrules:
    bwb_export,
    nlb_export,


rule bwb_export:
    """IBL BrainWideBench's submission layout + ground truth, scored by ibl-bwb-eval."""
    priority: PRIORITY["export"]
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


rule nlb_export:
    """Co-smoothing rates in NLB's submission layout, scored by nlb_tools on the val trials."""
    priority: PRIORITY["export"]
    input:
        unpack(nlb_inputs),
    output:
        scores=f"{RESULTS}/{{dataset}}/nlb/scores.csv",
        files=directory(f"{RESULTS}/{{dataset}}/nlb/files"),
    params:
        name=lambda wc: nlb_benchmark(wc.dataset),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("report", "{dataset}", "nlb_export"),
    benchmark:
        benchmark_path("report", "{dataset}", "nlb_export")
    script:
        "../../scripts/nlb_export.py"
