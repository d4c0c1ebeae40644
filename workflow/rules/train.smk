"""Tokenizer (CalM) -> pretrain -> fine-tune and evaluate, for every method, size and seed.

Job priorities (``PRIORITY``, ``baseline_priority``) are defined in common.smk.
"""


rule train_tokenizer:
    """CalM's discrete trace tokenizer, trained once per dataset and modality on training
    windows (dF/F, or the smoothed trace of spike counts: each its own vocabulary).

    It reads no task (``--tasks none``), so editing the task list does not retrain it
    and, after it, every CalM model."""
    priority: PRIORITY["train_tokenizer"]
    input:
        sessions=lambda wc: session_files(wc.dataset, wc.modality),
        splits=f"{RESULTS}/{{dataset}}/splits.json",
    output:
        tokenizer=f"{RESULTS}/{{dataset}}/tokenizer/{{modality}}/tokenizer.pt",
        report=f"{RESULTS}/{{dataset}}/tokenizer/{{modality}}/tokenizer_report.json",
    params:
        hparams=lambda wc: json.dumps(modality_hparams("tokenizer", wc.modality), sort_keys=True),
        device=config.get("device", "auto"),
        launcher=gpu_launcher(int(COMPUTE["gpus"])),
    resources:
        gpu=COMPUTE["gpus"],
        mem_mb=lambda wc, attempt: COMPUTE["mem_mb"] * attempt,
        runtime=lambda wc, attempt: COMPUTE["runtime"] * attempt,
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("tokenizer", "{dataset}", "tokenizer.{modality}"),
    benchmark:
        benchmark_path("tokenizer", "{dataset}", "tokenizer.{modality}")
    shell:
        "{params.launcher} -m neurossl.stages tokenizer --dataset {wildcards.dataset} --method calm "
        "--modality {wildcards.modality} --size tokenizer --seed 0 --device {params.device} "
        "--tasks none --hparams {params.hparams:q} --splits {input.splits} "
        "--sessions {input.sessions} --model {output.tokenizer} --metrics {output.report} "
        "> {log} 2>&1"


rule pretrain:
    priority: PRIORITY["pretrain"]
    input:
        sessions=lambda wc: session_files(wc.dataset, wc.modality),
        splits=f"{RESULTS}/{{dataset}}/splits.json",
        tokenizer=tokenizer_input,
    output:
        model=f"{RESULTS}/{{dataset}}/pretrain/{{method}}/{{modality}}/{{size}}/seed{{seed}}/model.pt",
        train_log=f"{RESULTS}/{{dataset}}/pretrain/{{method}}/{{modality}}/{{size}}/seed{{seed}}/train_log.csv",
    params:
        launcher=launcher,
        args=lambda wc: stage_args(wc, "pretrain"),
        hparams=pretrain_hparams,
        checkpoints=lambda wc: run_dir("pretrain", wc, "checkpoints"),
    resources:
        gpu=job_gpus,
        mem_mb=lambda wc, attempt: COMPUTE["mem_mb"] * attempt,
        runtime=lambda wc, attempt: COMPUTE["runtime"] * attempt,
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("pretrain", "{dataset}", "{method}.{modality}.{size}.seed{seed}"),
    benchmark:
        benchmark_path("pretrain", "{dataset}", "{method}.{modality}.{size}.seed{seed}")
    shell:
        "{params.launcher} -m neurossl.stages {params.args} --hparams {params.hparams:q} "
        "--splits {input.splits} --sessions {input.sessions} --model {output.model} "
        "--train-log {output.train_log} --checkpoint-dir {params.checkpoints} > {log} 2>&1"


rule finetune:
    priority: PRIORITY["finetune"]
    wildcard_constraints:
        method="|".join(names.NEURAL_METHODS),
    input:
        sessions=lambda wc: session_files(wc.dataset, wc.modality),
        splits=f"{RESULTS}/{{dataset}}/splits.json",
        pretrained=pretrained_model,
        tokenizer=tokenizer_input,
    output:
        model=f"{RESULTS}/{{dataset}}/finetune/{{method}}/{{modality}}/{{size}}/seed{{seed}}/model.pt",
        train_log=f"{RESULTS}/{{dataset}}/finetune/{{method}}/{{modality}}/{{size}}/seed{{seed}}/train_log.csv",
        # Scored in the fine-tuning job (see neurossl.stages.run): one process start
        # fewer per model.
        metrics=f"{RESULTS}/{{dataset}}/eval/{{method}}/{{modality}}/{{size}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/eval/{{method}}/{{modality}}/{{size}}/seed{{seed}}/predictions.npz",
    params:
        launcher=launcher,
        args=lambda wc: stage_args(wc, "finetune"),
        hparams=stage_hparams,
        checkpoints=lambda wc: run_dir("finetune", wc, "checkpoints"),
        pretrained=lambda wc, input: f"--pretrained {input.pretrained}" if input.pretrained else "",
    resources:
        gpu=job_gpus,
        mem_mb=lambda wc, attempt: COMPUTE["mem_mb"] * attempt,
        runtime=lambda wc, attempt: COMPUTE["runtime"] * attempt,
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("finetune", "{dataset}", "{method}.{modality}.{size}.seed{seed}"),
    benchmark:
        benchmark_path("finetune", "{dataset}", "{method}.{modality}.{size}.seed{seed}")
    shell:
        "{params.launcher} -m neurossl.stages {params.args} --hparams {params.hparams:q} "
        "--splits {input.splits} --sessions {input.sessions} {params.pretrained} "
        "--model {output.model} --train-log {output.train_log} "
        "--checkpoint-dir {params.checkpoints} --metrics {output.metrics} "
        "--predictions {output.predictions} > {log} 2>&1"


rule evaluate_baseline:
    """Simple baselines and the oracle: fit on train windows and score in one job."""
    priority: baseline_priority
    wildcard_constraints:
        method="|".join(names.FITTED_METHODS),
    input:
        sessions=lambda wc: session_files(wc.dataset, wc.modality),
        splits=f"{RESULTS}/{{dataset}}/splits.json",
    output:
        metrics=f"{RESULTS}/{{dataset}}/eval/{{method}}/{{modality}}/{{size}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/eval/{{method}}/{{modality}}/{{size}}/seed{{seed}}/predictions.npz",
        model=f"{RESULTS}/{{dataset}}/eval/{{method}}/{{modality}}/{{size}}/seed{{seed}}/model.pt",
    params:
        launcher=eval_launcher,
        args=lambda wc: stage_args(wc, "fit_evaluate"),
        hparams=stage_hparams,
    resources:
        gpu=job_gpus,
    conda:
        "../../envs/neurossl.yaml"
    log:
        log_path("evaluate", "{dataset}", "{method}.{modality}.{size}.seed{seed}"),
    benchmark:
        benchmark_path("evaluate", "{dataset}", "{method}.{modality}.{size}.seed{seed}")
    shell:
        "{params.launcher} -m neurossl.stages {params.args} --hparams {params.hparams:q} "
        "--splits {input.splits} --sessions {input.sessions} --model {output.model} "
        "--metrics {output.metrics} --predictions {output.predictions} > {log} 2>&1"
