"""Dataset summary (and, later, the benchmark report); runs on the submitting host."""


localrules:
    dataset_summary,


rule dataset_summary:
    input:
        splits=f"{RESULTS}/{{dataset}}/splits.json",
        neuron_stats=f"{RESULTS}/{{dataset}}/neuron_stats.csv",
        sessions=lambda wc: session_files(wc.dataset),
    output:
        summary=f"{RESULTS}/{{dataset}}/report/summary/dataset_summary.json",
        regions=report(
            f"{RESULTS}/{{dataset}}/report/summary/regions.png",
            caption="../report/regions.rst",
            category="Dataset",
        ),
        distributions=report(
            f"{RESULTS}/{{dataset}}/report/summary/activity_distributions.png",
            caption="../report/distributions.rst",
            category="Dataset",
        ),
        predictability=report(
            f"{RESULTS}/{{dataset}}/report/summary/predictability.png",
            caption="../report/predictability.rst",
            category="Dataset",
        ),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("report", "{dataset}", "dataset_summary"),
    benchmark:
        benchmark_path("report", "{dataset}", "dataset_summary")
    script:
        "../../scripts/dataset_summary.py"
