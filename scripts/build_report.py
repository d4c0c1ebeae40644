"""Rule entry point: the benchmark report of one dataset (see neurossl.report.build)."""

from pathlib import Path

from neurossl.report.build import ReportInputs, build_report
from neurossl.rule_logging import rule_logging

with rule_logging(snakemake.log[0]) as log:
    tokenizer = snakemake.input.tokenizer
    tokenizer = [tokenizer] if isinstance(tokenizer, str) else list(tokenizer)
    inputs = ReportInputs(
        dataset=snakemake.wildcards.dataset,
        config=snakemake.params.config,
        metrics_paths=tuple(Path(p) for p in snakemake.input.metrics),
        dataset_dir=Path(snakemake.params.dataset_dir),
        # From this script's location, not a rule parameter: a path in params would make
        # a moved or re-cloned checkout rerun the report.
        workflow_dir=Path(snakemake.scriptdir).parent / "workflow",
        splits=Path(snakemake.input.splits),
        neuron_stats=Path(snakemake.input.neuron_stats),
        summary_json=Path(snakemake.input.summary),
        summary_images={
            "Neurons per region": Path(snakemake.input.regions),
            "Activity distributions": Path(snakemake.input.distributions),
        },
        tokenizer_reports=tuple(Path(p) for p in tokenizer),
        bwb_scores=Path(snakemake.input.bwb[0]) if snakemake.input.bwb else None,
    )
    collection = build_report(inputs, Path(snakemake.output.html).parent, workers=snakemake.threads)
    log.info("%d metric rows, %d missing entries", len(collection.metrics), len(collection.missing))
