"""Splits computed once per dataset and reused by every method."""


rule split:
    input:
        sessions=lambda wc: session_files(wc.dataset),
    output:
        splits=f"{RESULTS}/{{dataset}}/splits.json",
        neuron_stats=f"{RESULTS}/{{dataset}}/neuron_stats.csv",
    params:
        split=lambda wc: DATASETS[wc.dataset].get("split", {}),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("split", "{dataset}", "split"),
    benchmark:
        benchmark_path("split", "{dataset}", "split")
    script:
        "../../scripts/split_dataset.py"
