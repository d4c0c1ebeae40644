"""Command line for the training stages, so the same entry point runs under torchrun.

Rules call ``python -m neurossl.stages <stage> ...`` (``torchrun ... -m neurossl.stages``
for DDP), not a script by path: a path would be a rule parameter, and moving or
re-cloning the project would then change every training job's parameters and rerun
them all. It builds the method's StageInputs from the Session files and splits, runs
the stage and writes its outputs atomically. Metric rows name the Session
(``{session}.{modality}``) because one recording can hold both modalities, and a row
must say which one it was scored on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from neurossl.code_version import code_identity
from neurossl.contract import Method, StageInputs, StageOutputs
from neurossl.data.splits import read_splits
from neurossl.methods.registry import get_method
from neurossl.names import EVAL_SPLITS, check_method, check_task, session_key
from neurossl.train.checkpoint import claim, hold, mark_complete

STAGES = ("tokenizer", "pretrain", "finetune", "evaluate", "fit_evaluate")
log = logging.getLogger("neurossl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True, type=check_method)
    parser.add_argument("--modality", required=True, choices=("spikes", "calcium"))
    parser.add_argument("--size", required=True)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--eval-split",
        default="test",
        choices=EVAL_SPLITS,
        help="windows evaluation scores ('valid' for hyper-parameter selection)",
    )
    parser.add_argument("--tasks", nargs="+", required=True, help="task names, or 'none'")
    parser.add_argument("--hparams", default="{}", help="JSON object of method hparams")
    parser.add_argument("--splits", required=True, type=Path)
    parser.add_argument("--sessions", nargs="+", required=True, type=Path)
    parser.add_argument("--pretrained", type=Path)
    parser.add_argument("--finetuned", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--train-log", type=Path)
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--metrics", type=Path)
    parser.add_argument("--predictions", type=Path)
    return parser.parse_args(argv)


def stage_inputs(args: argparse.Namespace) -> StageInputs:
    try:
        hparams = json.loads(args.hparams)
    except json.JSONDecodeError as err:
        raise ValueError(f"--hparams is not valid JSON: {err}") from err
    if not isinstance(hparams, dict):
        raise ValueError(f"--hparams must be a JSON object, got {type(hparams).__name__}")
    session_paths = {}
    for path in args.sessions:
        session, modality = session_key(path)
        if modality != args.modality:
            raise ValueError(f"{path}: is a {modality} Session, the stage runs on {args.modality}")
        session_paths[session] = path
    tasks = () if args.tasks == ["none"] else tuple(check_task(t) for t in args.tasks)
    return StageInputs(
        dataset=args.dataset,
        method=args.method,
        size=args.size,
        seed=args.seed,
        session_paths=session_paths,
        splits=read_splits(args.splits),
        tasks=tasks,
        hparams=hparams,
        device=args.device,
        eval_split=args.eval_split,
    )


def run_identity(args: argparse.Namespace) -> dict[str, Any]:
    """What decides a training stage's result: its arguments, input files and code.

    Input files count by size and modification time (a regenerated Session or a new
    pretrained model is a new run even at the same path); output paths do not count.
    The code counts by package version and source digest, so an edited model or
    objective trains afresh instead of resuming the old code's checkpoint.
    """
    files = [args.splits, *args.sessions, args.pretrained, args.finetuned]
    stats = {str(path): path.stat() for path in files if path is not None}
    return {
        "stage": args.stage,
        "method": args.method,
        "modality": args.modality,
        "size": args.size,
        "seed": args.seed,
        "device": args.device,
        "tasks": list(args.tasks),
        "hparams": json.loads(args.hparams),
        "inputs": {path: [stat.st_size, stat.st_mtime_ns] for path, stat in stats.items()},
        "code": code_identity(),
    }


def evaluate(args: argparse.Namespace, inputs: StageInputs, method: Method, model: Path) -> None:
    """Score ``model`` on the held-out sessions' ``--eval-split`` windows and write the
    metric rows and the predictions they were computed from."""
    from neurossl.eval.records import window_arrays
    from neurossl.eval.rows import write_evaluation

    evaluation = method.evaluate(inputs, model)
    evaluation.rows = [
        replace(row, session=f"{row.session}.{args.modality}") for row in evaluation.rows
    ]
    sessions = list(inputs.splits.heldout_sessions)
    evaluation.arrays.update(window_arrays(inputs.splits, sessions, args.eval_split))
    write_evaluation(evaluation, args.metrics, args.predictions, args.eval_split)


def run(args: argparse.Namespace) -> None:
    inputs = stage_inputs(args)
    method = get_method(args.method)
    rank = int(os.environ.get("RANK", "0"))
    if args.checkpoint_dir is not None:
        if rank == 0:
            hold(args.checkpoint_dir)
        if claim(args.checkpoint_dir, run_identity(args), rank):
            log.info("resuming from the checkpoints in %s", args.checkpoint_dir)
    if args.stage == "tokenizer":
        from neurossl.methods.calm_family import train_tokenizer

        train_tokenizer(inputs, args.model, args.metrics)
        return
    outputs = StageOutputs(
        model=args.model,
        train_log=args.train_log,
        checkpoint_dir=args.checkpoint_dir,
        metrics=args.metrics,
        predictions=args.predictions,
    )
    if args.stage in ("pretrain", "finetune"):
        if args.stage == "pretrain":
            method.pretrain(inputs, outputs)
        else:
            method.finetune(inputs, args.pretrained, outputs)
            # A neural method is scored in the process that fine-tuned it: a job of its
            # own would pay torch's and the package's start-up again for seconds of work.
            if args.metrics is not None and rank == 0:
                evaluate(args, inputs, method, args.model)
        # Complete only once every output is written: a job that fails while scoring
        # resumes from its last checkpoint instead of training again.
        if args.checkpoint_dir is not None and rank == 0:
            mark_complete(args.checkpoint_dir)
    else:
        scored = args.finetuned
        if args.stage == "fit_evaluate":
            method.finetune(inputs, None, outputs)
            scored = args.model
        evaluate(args, inputs, method, scored)
    log.info("%s %s done", args.stage, args.method)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(parse_args(argv))


if __name__ == "__main__":
    main()
