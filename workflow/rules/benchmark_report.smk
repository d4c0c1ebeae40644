"""The benchmark report of a dataset: tables, figures, provenance (runs on the submitting host).

Inputs are every expected metrics.json, so the report is rebuilt when any result changes;
``params.config`` makes a config edit (e.g. ``report: metrics``) rerun only this rule.
"""

from neurossl.report.figures import FIGURES


localrules:
    report,


def report_tokenizer(dataset):
    """CalM's tokenizer report, when a tokenizer is trained for this dataset."""
    calm = any(m in TOKENIZER_METHODS for m in METHODS)
    if calm and "calcium" in DATASETS[dataset]["modalities"]:
        return f"{RESULTS}/{dataset}/tokenizer/tokenizer_report.json"
    return ""


def report_figures():
    """Named outputs for every report figure: PNG registered with report(), SVG beside it."""
    out = {}
    for name in FIGURES:
        base = f"{RESULTS}/{{dataset}}/report/figures/{name}"
        out[f"{name}_png"] = report(
            f"{base}.png",
            caption=f"../report/report_{name}.rst",
            category="Benchmark",
            subcategory="Figures",
        )
        out[f"{name}_svg"] = f"{base}.svg"
    return out


rule report:
    input:
        metrics=lambda wc: eval_targets(wc.dataset),
        splits=f"{RESULTS}/{{dataset}}/splits.json",
        neuron_stats=f"{RESULTS}/{{dataset}}/neuron_stats.csv",
        summary=f"{RESULTS}/{{dataset}}/report/summary/dataset_summary.json",
        regions=f"{RESULTS}/{{dataset}}/report/summary/regions.png",
        distributions=f"{RESULTS}/{{dataset}}/report/summary/activity_distributions.png",
        tokenizer=lambda wc: report_tokenizer(wc.dataset) or [],
    output:
        html=report(
            f"{RESULTS}/{{dataset}}/report/index.html",
            caption="../report/report_index.rst",
            category="Benchmark",
            subcategory="Report",
        ),
        csv=report(
            f"{RESULTS}/{{dataset}}/report/metrics.csv",
            caption="../report/report_metrics.rst",
            category="Benchmark",
            subcategory="Report",
        ),
        **report_figures(),
    params:
        config=config,
        expected_metrics=lambda wc: eval_targets(wc.dataset),
        dataset_dir=f"{RESULTS}/{{dataset}}",
        workflow_dir=workflow.basedir,
        tokenizer_report=lambda wc: report_tokenizer(wc.dataset),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("report", "{dataset}", "report"),
    benchmark:
        benchmark_path("report", "{dataset}", "report")
    script:
        "../../scripts/build_report.py"
