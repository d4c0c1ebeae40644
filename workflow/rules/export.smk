"""Predictions exported to other benchmarks' formats and scored by their own code."""


def bwb_inputs(wc):
    """Every spiking evaluation of the dataset (predictions.npz and its metrics.json)."""
    runs = [p for p in eval_targets(wc.dataset) if "/spikes/" in p]
    return {
        "predictions": [p.replace("metrics.json", "predictions.npz") for p in runs],
        "metrics": runs,
    }


def bwb_targets(dataset):
    """The BrainWideBench export of a dataset's spiking evaluations (none for calcium)."""
    if not any("/spikes/" in p for p in eval_targets(dataset)):
        return []
    return [f"{RESULTS}/{dataset}/bwb/scores.csv"]


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
