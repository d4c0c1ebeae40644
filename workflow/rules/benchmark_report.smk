"""The benchmark report of a dataset: tables, figures, provenance (runs on the submitting host).

Inputs are every expected metrics.json, so the report is rebuilt when any result changes;
``params.config`` makes a config edit (e.g. ``report: metrics``) rerun only this rule.
Figure names come from neurossl.names.FIGURES, so outputs are known up front.
"""

from neurossl.names import FIGURES


localrules:
    report,


rule report:
    input:
        metrics=lambda wc: eval_targets(wc.dataset),
        # Read beside the metrics (figures): declared, so none can be missing or stale.
        predictions=lambda wc: [
            str(Path(p).with_name("predictions.npz")) for p in eval_targets(wc.dataset)
        ],
        train_logs=lambda wc: train_log_targets(wc.dataset),
        splits=f"{RESULTS}/{{dataset}}/splits.json",
        neuron_stats=f"{RESULTS}/{{dataset}}/neuron_stats.csv",
        summary=f"{RESULTS}/{{dataset}}/report/summary/dataset_summary.json",
        regions=f"{RESULTS}/{{dataset}}/report/summary/regions.png",
        distributions=f"{RESULTS}/{{dataset}}/report/summary/activity_distributions.png",
        bwb=lambda wc: bwb_targets(wc.dataset),
        # CalM's tokenizer reports, one per modality a tokenizer is trained for.
        tokenizer=lambda wc: tokenizer_reports(wc.dataset),
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
        **{
            f"{name}_png": report(
                f"{RESULTS}/{{dataset}}/report/figures/{name}.png",
                caption=f"../report/report_{name}.rst",
                category="Benchmark",
                subcategory="Figures",
            )
            for name in FIGURES
        },
        **{f"{name}_svg": f"{RESULTS}/{{dataset}}/report/figures/{name}.svg" for name in FIGURES},
    # Figures are drawn in parallel: the report runs last, when the other cores are idle.
    threads: 2
    params:
        config=config,
        dataset_dir=lambda wc, input: str(Path(input.splits).parent),
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("report", "{dataset}", "report"),
    benchmark:
        benchmark_path("report", "{dataset}", "report")
    script:
        "../../scripts/build_report.py"
