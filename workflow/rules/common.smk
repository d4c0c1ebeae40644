"""Config validation, dataset/session listing and target lists shared by every rule.

Names and paths come from neurossl.names so rules, evaluation and report agree.
"""

import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

from neurossl import names
from neurossl.data.preprocess import reader_of
from neurossl.gpu_slots import auto_gpus_per_job
from neurossl.job_env import one_thread_per_job
from neurossl.methods.registry import method_traits

validate(config, schema="../schemas/config.schema.yaml")

envvars:
    "PATH",


# Shell rules call `python`/`torchrun`: let that be the environment running Snakemake
# (a venv need not be activated); `--sdm conda` activation still puts its env first.
_inherited_path = os.environ["PATH"]
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), _inherited_path])
one_thread_per_job(os.environ)

RESULTS = config.get("results", "results")
RAW = str(Path(config.get("resources", "resources"), "raw"))
DATASETS = config["datasets"]
SEEDS = config["seeds"]
SIZES = config["sizes"]
METHODS = config["methods"]


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9_]*",
    session="[A-Za-z0-9][A-Za-z0-9_+-]*",
    modality="spikes|calcium",
    method="|".join(names.METHODS),
    size="[a-z0-9_]+",
    seed="[0-9]+",


def log_path(stage, dataset, name):
    return f"{RESULTS}/{dataset}/logs/{stage}/{name}.log"


def benchmark_path(stage, dataset, name):
    return f"{RESULTS}/{dataset}/benchmarks/{stage}/{name}.tsv"


def sessions_of(dataset):
    """Session ids of a dataset: from the config (synthetic, local) or the manifest (dandi)."""
    spec = DATASETS[dataset]
    if spec["source"] == "synthetic":
        from neurossl.data.sources.synthetic_config import SyntheticConfig, session_ids

        return session_ids(SyntheticConfig.from_dict(spec.get("synthetic", {})))
    if spec["source"] == "local":
        from neurossl.data.sources.local import local_session_ids

        return local_session_ids(spec["local"])
    return dandi_sessions(dataset)


def session_files(dataset, modality=None):
    modalities = [modality] if modality else DATASETS[dataset]["modalities"]
    return [
        str(names.session_path(RESULTS, dataset, session, m))
        for session in sessions_of(dataset)
        for m in modalities
    ]


def tasks_of(dataset, modality):
    return DATASETS[dataset]["tasks"].get(modality, [])


def method_modalities(dataset, method):
    """Modalities of the dataset a method runs on ("any" methods run on each)."""
    wanted = names.METHOD_MODALITY.get(method, "any")
    present = DATASETS[dataset]["modalities"]
    return [m for m in present if wanted in (m, "any")]


def method_sizes(method):
    """Neural methods train every configured size; simple baselines have one, 'na'."""
    if method in names.NEURAL_METHODS:
        scaling = config.get("scaling", {})
        extra = scaling.get("sizes", []) if method in scaling.get("methods", []) else []
        return list(dict.fromkeys([*SIZES, *extra]))
    return ["na"]


def method_seeds(method):
    """Seed-independent baselines run once (see names.SEED_INDEPENDENT_METHODS)."""
    return SEEDS[:1] if method in names.SEED_INDEPENDENT_METHODS else SEEDS


def eval_targets(dataset):
    return [
        f"{RESULTS}/{dataset}/eval/{method}/{modality}/{size}/seed{seed}/metrics.json"
        for method in METHODS
        for modality in method_modalities(dataset, method)
        for size in method_sizes(method)
        for seed in method_seeds(method)
    ]


def scaling_targets():
    """Evaluations of the scaling sweep (config `scaling`): every size x method x seed."""
    scaling = config.get("scaling", {})
    return [
        f"{RESULTS}/{dataset}/eval/{method}/{modality}/{size}/seed{seed}/metrics.json"
        for dataset in DATASETS
        for method in scaling.get("methods", [])
        for modality in method_modalities(dataset, method)
        for size in method_sizes(method)
        for seed in SEEDS
    ]


def all_targets():
    targets = []
    for dataset in DATASETS:
        targets.append(str(names.splits_path(RESULTS, dataset)))
        targets.append(f"{names.report_dir(RESULTS, dataset)}/summary/dataset_summary.json")
        targets += eval_targets(dataset)
        targets += nlb_targets(dataset)
        targets.append(f"{names.report_dir(RESULTS, dataset)}/index.html")
    return targets


COMPUTE = {"gpus": "auto", "nproc_per_node": 1, "mem_mb": 8000, "runtime": 120}
COMPUTE.update(config.get("compute", {}))
if COMPUTE["gpus"] == "auto":
    COMPUTE["gpus"] = auto_gpus_per_job()
TOKENIZER_METHODS = ("calm", "scratch_dual_axis")


def run_dir(stage, wc, leaf=""):
    base = f"{RESULTS}/{wc.dataset}/{stage}/{wc.method}/{wc.modality}/{wc.size}/seed{wc.seed}"
    return f"{base}/{leaf}" if leaf else base


def pretrained_model(wc):
    """The pretrained checkpoint when the method pretrains; nothing for scratch/baselines."""
    if method_traits(wc.method).pretrains:
        return run_dir("pretrain", wc, "model.pt")
    return []


def stage_hparams(wc):
    """The method's hparams from the config, plus the tokenizer for CalM-family models."""
    hparams = dict(config.get("hparams", {}).get(wc.method, {}))
    if wc.method in TOKENIZER_METHODS:
        hparams["tokenizer_path"] = tokenizer_path(wc.dataset)
    return json.dumps(hparams, sort_keys=True)


def pretrain_hparams(wc):
    """stage_hparams without the keys pretraining never reads (the method declares them),
    so editing fine-tuning settings does not rerun pretraining."""
    skip = method_traits(wc.method).finetune_only_hparams
    hparams = {k: v for k, v in json.loads(stage_hparams(wc)).items() if k not in skip}
    return json.dumps(hparams, sort_keys=True)


def tokenizer_path(dataset):
    return f"{RESULTS}/{dataset}/tokenizer/tokenizer.pt"


def tokenizer_input(wc):
    return [tokenizer_path(wc.dataset)] if wc.method in TOKENIZER_METHODS else []


def launcher(wc):
    """python or torchrun (DDP over nproc_per_node GPUs), on GPUs no other job holds."""
    n = int(COMPUTE["nproc_per_node"])
    run = "python" if n <= 1 else f"torchrun --standalone --nproc_per_node={n}"
    gpus = int(COMPUTE["gpus"])
    if gpus == 0:
        return run
    return f"python -m neurossl.gpu_slots --gpus {max(gpus, n)} -- {run}"


def stage_args(wc, stage):
    tasks = " ".join(tasks_of(wc.dataset, wc.modality)) or "none"
    args = (
        f"{stage} --dataset {wc.dataset} --method {wc.method} --modality {wc.modality} "
        f"--size {wc.size} --seed {wc.seed} --device {config.get('device', 'auto')} "
        f"--tasks {tasks}"
    )
    if stage in ("evaluate", "fit_evaluate"):
        # Only scoring reads it, so switching it never retrains a model.
        args += f" --eval-split {config.get('evaluation_split', 'test')}"
    return args


def raw_nwb(wildcards):
    source = DATASETS[wildcards.dataset]["source"]
    if source == "synthetic":
        return f"{RAW}/{wildcards.dataset}/{wildcards.session}.nwb"
    if source == "local":
        from neurossl.data.sources.local import local_session_path

        return local_session_path(DATASETS[wildcards.dataset]["local"], wildcards.session)
    return dandi_raw_path(wildcards)


# --- DANDI: the session list is known only after the manifest checkpoint ---


def dandi_manifest(dataset):
    """The parsed manifest once the checkpoint has run (raises until then, by design)."""
    from neurossl.data.sources.dandi import read_manifest

    return read_manifest(checkpoints.dandi_manifest.get(dataset=dataset).output.manifest)


def dandi_sessions(dataset):
    from neurossl.data.sources.dandi import manifest_sessions

    return manifest_sessions(dandi_manifest(dataset))


def dandi_raw_path(wildcards):
    entry = dandi_manifest(wildcards.dataset).by_session()[wildcards.session]
    return f"{RAW}/{wildcards.dataset}/dandi/{entry.path}"


def known_sha256(wildcards):
    """The archive's SHA-256 of a DANDI asset, which the download already verified, so
    preprocessing records it instead of hashing the file a second time ("" elsewhere)."""
    if DATASETS[wildcards.dataset]["source"] != "dandi":
        return ""
    entry = dandi_manifest(wildcards.dataset).by_session()[wildcards.session]
    return entry.digest if entry.digest_type == "dandi:sha2-256" else ""


# --- job priorities ---
# Ready jobs run by how long a chain each one starts: the tokenizer opens CalM's four-job
# chain, pretraining a three-job one, and so on; the fitted baselines (one short job
# each) fill the cores at the end, the network baselines (10-14 s) before the rest
# (4-7 s). Without priorities Snakemake started the tokenizer late in the default run,
# and CalM's chain plus the report ran for the last ~50 s on one of two cores.

#: Higher runs first among ready jobs (Snakemake's default is 0).
PRIORITY = {"train_tokenizer": 40, "pretrain": 30, "finetune": 20, "evaluate": 10}
NETWORK_BASELINES = ("rnn", "poco")


def baseline_priority(wildcards):
    return 5 if wildcards.method in NETWORK_BASELINES else 0


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


def nlb_targets(dataset):
    """NLB's scores of a dataset read by the nlb reader that has co-smoothing runs."""
    if reader_of(DATASETS[dataset]) != "nlb":
        return []
    if "co_smoothing" not in tasks_of(dataset, "spikes"):
        return []
    return [f"{RESULTS}/{dataset}/nlb/scores.csv"]


def nlb_inputs(wc):
    """The one recording of an NLB dataset, its raw file and every co-smoothing run."""
    from types import SimpleNamespace

    sessions = sessions_of(wc.dataset)
    if len(sessions) != 1:
        raise ValueError(f"NLB dataset {wc.dataset!r} must be one recording, got {sessions}")
    runs = bwb_inputs(wc)["metrics"]
    return {
        "predictions": [p.replace("metrics.json", "predictions.npz") for p in runs],
        "metrics": runs,
        "session": session_files(wc.dataset, "spikes"),
        "nwb": raw_nwb(SimpleNamespace(dataset=wc.dataset, session=sessions[0])),
    }


def nlb_benchmark(dataset):
    """nlb_tools' name of the dataset (imported here: planning needs it only for NLB)."""
    from neurossl.eval.nlb_export import nlb_name

    spec = DATASETS[dataset]
    return nlb_name(spec.get("nlb", {}), spec.get("dandi", {}).get("dandiset"))
