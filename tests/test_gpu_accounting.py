"""Every job that can touch CUDA reserves a card and runs on one no other job holds.

Plans a workstation with two GPUs (``NEUROSSL_GPU_COUNT=2``, ``device: auto``) and reads
each job of the dry run: a job that runs a stage on the configured device must ask for
the ``gpu`` resource (so ``--resources gpu=2`` caps them) and go through
``neurossl.gpu_slots`` (so it gets a card of its own); a job pinned to the CPU must not
hold a card.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from workflow_helpers import SNAKEFILE, tiny_config

METHODS = ["mtm", "scratch_ndt", "poyo_ssl", "calm", "linear", "rnn", "poco", "mean", "oracle"]


def _jobs(stdout: str) -> list[dict[str, str]]:
    jobs = []
    for block in stdout.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs.append(
            {
                "rule": rule,
                "resources": resources.group(1) if resources else "",
                "shell": shell.group(1) if shell else "",
            }
        )
    return jobs


def test_a_two_gpu_workstation_plan_reserves_a_card_for_every_cuda_job(tmp_path):
    config = tiny_config(tmp_path, device="auto", compute={"gpus": "auto"}, methods=METHODS)
    env = {**os.environ, "NEUROSSL_GPU_COUNT": "2"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("SLURM_JOB_ID", None)
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory",
               str(tmp_path), "--cores", "4", "--resources", "gpu=2", "-n", "-p",
               "--configfile", str(config)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = _jobs(result.stdout)
    stage_jobs = [j for j in jobs if "neurossl.stages" in j["shell"]]
    rules = {j["rule"] for j in stage_jobs}
    assert {"train_tokenizer", "pretrain", "finetune", "evaluate_baseline"} <= rules
    on_device = [j for j in stage_jobs if "--device cpu" not in j["shell"]]
    assert len(on_device) >= 10
    for job in on_device:
        assert "gpu=1" in job["resources"], job
        assert job["shell"].startswith("python -m neurossl.gpu_slots --gpus 1 -- "), job
    on_cpu = [j for j in stage_jobs if "--device cpu" in j["shell"]]
    assert {m for j in on_cpu for m in re.findall(r"--method (\w+)", j["shell"])} == {
        "linear",
        "mean",
        "oracle",
    }
    for job in on_cpu:
        assert "gpu=0" in job["resources"] and "gpu_slots" not in job["shell"], job
    # Rules that run no stage (download, preprocess, split, report) never claim a card.
    for job in jobs:
        if job not in stage_jobs:
            assert not re.search(r"gpu=[1-9]", job["resources"]), job
