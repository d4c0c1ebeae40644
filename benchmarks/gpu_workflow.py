"""A tiny end-to-end workflow of every neural family with ``device: cuda`` (or ``--device``).

Usage: ``python benchmarks/gpu_workflow.py [--device cuda] [--workdir DIR]``; prints the
wall time. The whole DAG (synthetic data, tokenizer, pretraining, fine-tuning,
evaluation, report) with a few steps per stage, so a GPU run shows that every rule's
CUDA path works together, not only the unit tests' pieces.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import yaml

from workflow_helpers import run_snakemake, tiny_config

FAST = {
    "mtm": {"pretrain_steps": 20, "max_steps": 10, "stitch_steps": 5, "decode_steps": 0},
    "poyo_ssl": {"max_steps": 10, "unit_id_steps": 4, "full_steps": 4},
    "calm": {"pretrain_steps": 10, "adapt_steps": 4, "head_steps": 4},
    "tokenizer": {"steps": 20, "vocab_sweep": [64], "alternative_quantizer": "none"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        gpus = 1 if args.device.startswith("cuda") else 0
        config = tiny_config(
            workdir, device=args.device, methods=list(FAST)[:-1], hparams=FAST,
            compute={"gpus": gpus},
        )  # fmt: skip
        # A decoding task per modality: the Perceiver family fine-tunes only on those.
        data = yaml.safe_load(config.read_text())
        data["datasets"]["synthetic"]["tasks"] = {
            "spikes": ["co_smoothing", "choice"], "calcium": ["forecasting", "stimulus_class"]
        }  # fmt: skip
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        started = time.perf_counter()
        run_snakemake(workdir, "--resources", f"gpu={gpus}", configfile=config)
        seconds = time.perf_counter() - started
        metrics = workdir / "results" / "synthetic" / "report" / "metrics.csv"
        rows = sum(1 for _ in metrics.open()) - 1
        print(f"tiny workflow, device {args.device}: {seconds:.0f} s, {rows} metric rows")


if __name__ == "__main__":
    main()
