"""Config validation, dataset/session listing and target lists shared by every rule.

Names and paths come from neurossl.names so rules, evaluation and report agree.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.utils import validate

from neurossl import catalog

# Extra method modules (config `method_modules`) join the method table before the
# vocabulary is read; the variable passes them on to every job this workflow starts.
_method_modules = config.get("method_modules", [])
if not isinstance(_method_modules, list):
    raise ValueError(f"config method_modules must be a list of module names, got {_method_modules!r}")
catalog.load_method_modules(_method_modules)
os.environ[catalog.METHOD_MODULES_ENV] = ",".join(_method_modules)

from neurossl import names
from neurossl.config_schema import write_derived
from neurossl.config_checks import check_config
from neurossl.data.preprocess import reader_of
from neurossl.gpu_slots import auto_gpus_per_job
from neurossl.job_env import one_thread_per_job
from neurossl.methods.registry import check_hparams, method_traits

_schema = write_derived(Path(workflow.basedir) / "schemas" / "config.schema.yaml")
try:
    validate(config, schema=str(_schema))
finally:
    _schema.unlink()
# Every hparams key against its method's typed model, so a typo fails `snakemake -n`
# instead of a training job (docs/hparams.md lists the keys).
for _owner, _values in config.get("hparams", {}).items():
    check_hparams(_owner, _values)
# What a job would reject fails here, before any job deletes outputs it would replace.
check_config(config)

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
    """Modalities of the dataset the method runs on: its catalog entry's, narrowed by
    config ``method_modalities``."""
    # check_config keeps a narrowed list within the catalog entry's.
    runs_on = config.get("method_modalities", {}).get(method, names.METHOD_MODALITIES[method])
    return [m for m in DATASETS[dataset]["modalities"] if m in runs_on]


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


def train_log_targets(dataset):
    """The training logs of every neural run the report shows (it plots them)."""
    logs = []
    for path in eval_targets(dataset):
        run = Path(path).parent.relative_to(f"{RESULTS}/{dataset}/eval")
        method = run.parts[0]
        if method not in names.NEURAL_METHODS:
            continue
        stages = ["pretrain", "finetune"] if method_traits(method).pretrains else ["finetune"]
        logs += [f"{RESULTS}/{dataset}/{stage}/{run}/train_log.csv" for stage in stages]
    return logs


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
    return targets + missing_inputs_of_results()


COMPUTE = {"gpus": "auto", "nproc_per_node": 1, "mem_mb": 8000, "runtime": 120}
COMPUTE.update(config.get("compute", {}))
if COMPUTE["gpus"] == "auto":
    # device: cpu never touches a card, so it needs no GPU slot even on a GPU host.
    COMPUTE["gpus"] = 0 if config.get("device", "auto") == "cpu" else auto_gpus_per_job()
TOKENIZER_METHODS = names.TOKENIZER_METHODS


def run_dir(stage, wc, leaf=""):
    base = f"{RESULTS}/{wc.dataset}/{stage}/{wc.method}/{wc.modality}/{wc.size}/seed{wc.seed}"
    return f"{base}/{leaf}" if leaf else base


def pretrained_model(wc):
    """The pretrained checkpoint when the method pretrains; nothing for scratch/baselines."""
    if method_traits(wc.method).pretrains:
        return run_dir("pretrain", wc, "model.pt")
    return []


def stage_hparams(wc):
    """The method's hparams from the config, plus the tokenizer for CalM-family models.

    A key named after a modality (``spikes: {...}``, ``calcium: {...}``) holds overrides
    for that modality's jobs: they are merged here, for the job's own modality only, so
    editing one modality's budget never reruns the other modality's jobs.
    """
    hparams = modality_hparams(wc.method, getattr(wc, "modality", None))
    if wc.method in TOKENIZER_METHODS:
        hparams["tokenizer_path"] = tokenizer_path(wc.dataset, wc.modality)
    return json.dumps(hparams, sort_keys=True)


def modality_hparams(owner, modality):
    """``hparams.<owner>`` with the overrides of ``modality`` merged in (every modality
    key removed)."""
    hparams = dict(config.get("hparams", {}).get(owner, {}))
    for name in names.MODALITIES:
        override = hparams.pop(name, None)
        if override and name == modality:
            hparams.update(override)
    return hparams


def pretrain_hparams(wc):
    """stage_hparams without the keys pretraining never reads (the method declares them),
    so editing fine-tuning settings does not rerun pretraining."""
    skip = method_traits(wc.method).finetune_only_hparams
    hparams = {k: v for k, v in json.loads(stage_hparams(wc)).items() if k not in skip}
    return json.dumps(hparams, sort_keys=True)


def tokenizer_path(dataset, modality):
    """CalM's tokenizer of one modality of a dataset: spike traces and dF/F get their own."""
    return f"{RESULTS}/{dataset}/tokenizer/{modality}/tokenizer.pt"


def tokenizer_input(wc):
    return [tokenizer_path(wc.dataset, wc.modality)] if wc.method in TOKENIZER_METHODS else []


def tokenizer_reports(dataset):
    """The tokenizer report of every modality a tokenizer method runs on."""
    return [
        f"{RESULTS}/{dataset}/tokenizer/{modality}/tokenizer_report.json"
        for modality in dict.fromkeys(
            m for method in METHODS if method in TOKENIZER_METHODS
            for m in method_modalities(dataset, method)
        )
    ]


def uses_device(method):
    """Whether a job of this method may run on the configured device (a GPU); fitted
    baselines without a network run on the CPU and hold no card."""
    return catalog.method(method).uses_device


def job_gpus(wc):
    """GPUs a job of the method reserves (the `gpu` resource), 0 when it stays on CPU."""
    return int(COMPUTE["gpus"]) if uses_device(wc.method) else 0


def gpu_launcher(gpus, n=1):
    """python or torchrun (DDP over n GPUs), on GPUs no other job holds.

    Every job that may touch CUDA goes through neurossl.gpu_slots: the `gpu` resource
    only caps how many such jobs run at once, the slots say which card each one gets."""
    run = "python" if n <= 1 else f"torchrun --standalone --nproc_per_node={n}"
    if gpus == 0:
        return run
    return f"python -m neurossl.gpu_slots --gpus {max(gpus, n)} -- {run}"


def launcher(wc):
    """Training stages: DDP over compute.nproc_per_node."""
    return gpu_launcher(job_gpus(wc), int(COMPUTE["nproc_per_node"]))


def eval_launcher(wc):
    """Evaluation and fitted baselines: one process, on a card of its own if it uses one."""
    return gpu_launcher(job_gpus(wc))


def stage_args(wc, stage):
    tasks = " ".join(tasks_of(wc.dataset, wc.modality)) or "none"
    device = config.get("device", "auto") if uses_device(wc.method) else "cpu"
    args = (
        f"{stage} --dataset {wc.dataset} --method {wc.method} --modality {wc.modality} "
        f"--size {wc.size} --seed {wc.seed} --device {device} "
        f"--tasks {tasks}"
    )
    if stage in ("finetune", "fit_evaluate"):
        # The jobs that score: switching it reruns them, a neural method's fine-tuning
        # included, as it is scored in the job that fine-tunes it.
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
# Ready jobs run by how long a chain each one starts: the tokenizer opens CalM's three-job
# chain (tokenizer, pretraining, fine-tuning with its scoring), pretraining a two-job
# one; the baselines (one short job each) fill the cores at the end. Among them the
# spiking ones go first: the BrainWideBench export waits for every spiking result;
# started as soon as they are in, it overlaps the remaining baselines instead of running
# alone before the report. Then the network baselines (6-14 s), the seeded ones (their
# decoders' cross-validation, 5-7 s), and last the seed-independent ones (closed-form
# fits, ~3 s each, mostly start-up), so no long job starts when one core is left.
# Without priorities Snakemake started the tokenizer late in the default run, and CalM's
# chain plus the report ran for the last ~50 s on one of two cores.

#: Higher runs first among ready jobs (Snakemake's default is 0).
PRIORITY = {"train_tokenizer": 40, "pretrain": 30, "finetune": 20, "export": 10}
NETWORK_BASELINES = names.NETWORK_BASELINES
#: The modality the exports to other benchmarks (BrainWideBench, NLB) read.
EXPORTED_MODALITY = "spikes"


def baseline_priority(wildcards):
    if wildcards.modality == EXPORTED_MODALITY:
        return 6
    if wildcards.method in NETWORK_BASELINES:
        return 5
    return 0 if catalog.method(wildcards.method).seed_independent else 3


def bwb_inputs(wc):
    """Every spiking evaluation of the dataset (predictions.npz and its metrics.json)."""
    runs = [p for p in eval_targets(wc.dataset) if f"/{EXPORTED_MODALITY}/" in p]
    return {
        "predictions": [p.replace("metrics.json", "predictions.npz") for p in runs],
        "metrics": runs,
    }


def bwb_targets(dataset):
    """The BrainWideBench export of a dataset's spiking evaluations (none for calcium)."""
    if not any(f"/{EXPORTED_MODALITY}/" in p for p in eval_targets(dataset)):
        return []
    return [f"{RESULTS}/{dataset}/bwb/scores.csv"]


# --- results whose input model is gone ---
# Snakemake keeps an output whose input file is missing but could be rebuilt (it treats
# the input like a deleted temporary file). After a failed training job (Snakemake
# removed its outputs), metrics of the previous model stayed and the next run printed
# "Nothing to be done". The missing files become targets of `all`: they are rebuilt,
# and everything made from them follows because its input is updated.


def missing_inputs_of_results():
    """Training outputs that are missing while a result made from them exists."""
    missing = []
    for dataset in DATASETS:
        for metrics in eval_targets(dataset):
            run = Path(metrics).parent.relative_to(f"{RESULTS}/{dataset}/eval")
            if run.parts[0] not in names.NEURAL_METHODS:
                continue
            wc = SimpleNamespace(dataset=dataset, method=run.parts[0], modality=run.parts[1],
                                 size=run.parts[2], seed=run.parts[3].removeprefix("seed"))  # fmt: skip
            finetuned = run_dir("finetune", wc, "model.pt")
            pretrained = [pretrained_model(wc)] if method_traits(wc.method).pretrains else []
            made_from = {metrics: [finetuned], finetuned: [*pretrained, *tokenizer_input(wc)]}
            made_from.update({model: tokenizer_input(wc) for model in pretrained})
            for result, inputs in made_from.items():
                if os.path.exists(result):
                    missing += [f for f in inputs if not os.path.exists(f)]
        if os.path.exists(f"{names.report_dir(RESULTS, dataset)}/index.html"):
            missing += [f for f in train_log_targets(dataset) if not os.path.exists(f)]
    return list(dict.fromkeys(missing))


def nlb_targets(dataset):
    """NLB's scores of a dataset read by the nlb reader that has co-smoothing runs."""
    if reader_of(DATASETS[dataset]) != "nlb":
        return []
    if "co_smoothing" not in tasks_of(dataset, EXPORTED_MODALITY):
        return []
    return [f"{RESULTS}/{dataset}/nlb/scores.csv"]


def nlb_inputs(wc):
    """The one recording of an NLB dataset, its raw file and every co-smoothing run."""
    from types import SimpleNamespace

    sessions = sessions_of(wc.dataset)
    if len(sessions) != 1:
        raise ValueError(f"NLB dataset {wc.dataset!r} must be one recording, got {sessions}")
    return {
        **bwb_inputs(wc),
        "session": session_files(wc.dataset, EXPORTED_MODALITY),
        "nwb": raw_nwb(SimpleNamespace(dataset=wc.dataset, session=sessions[0])),
    }


def nlb_benchmark(dataset):
    """nlb_tools' name of the dataset (imported here: planning needs it only for NLB)."""
    from neurossl.eval.nlb_export import nlb_name

    spec = DATASETS[dataset]
    return nlb_name(spec.get("nlb", {}), spec.get("dandi", {}).get("dandiset"))
