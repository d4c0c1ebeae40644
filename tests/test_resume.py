"""A training job killed mid-run and rerun ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch
from test_loader import make_dataset

# The child trains MtM on the tiny dataset; with KILL_AT it dies abruptly (os._exit,
# no cleanup, like SIGKILL) inside the training step KILL_AT.
CHILD = """
import os, sys
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_loader import make_dataset
from neurossl.data.loader import WindowDataset, make_loader
from neurossl.models.ndt import NDT, make_config
from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios
from neurossl.train.engine import TrainConfig, train

torch.set_num_threads(1)
data, run = Path(sys.argv[1]), Path(sys.argv[2])
paths, splits = make_dataset(data, n_sessions=2)
train_ds = WindowDataset(paths, splits, "train", sorted(paths))
valid_ds = WindowDataset(paths, splits, "valid", sorted(paths))
torch.manual_seed(0)
counts = {{s: int(train_ds.regions(s).size) for s in train_ds.sessions}}
model = NDT(make_config("tiny", n_prompts=4), counts)
objective = MaskedModelingLoss(SCHEMES, MaskRatios(), True, train_ds.vocab.session_ids)
kill_at, steps = int(os.environ.get("KILL_AT", "0")), [0]

def loss_fn(m, batch):
    if torch.is_grad_enabled():
        steps[0] += 1
        if steps[0] == kill_at:
            os._exit(9)
    return objective(m, batch)

config = TrainConfig(max_steps=24, lr=3e-3, warmup_steps=4, eval_every=6, checkpoint_every=5,
                     seed=7, progress=False)
train(model, loss_fn, make_loader(train_ds, 6, True, 7, True),
      make_loader(valid_ds, 6, False, 7, True), config, run / "ckpt", run / "log.csv", "cpu")
torch.save(model.state_dict(), run / "final.pt")
"""


def _run(script: Path, data: Path, run: Path, kill_at: int = 0) -> int:
    env = dict(os.environ, KILL_AT=str(kill_at), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(script), str(data), str(run)], env=env, capture_output=True, text=True
    )
    assert proc.returncode in (0, 9), proc.stderr[-2000:]
    return proc.returncode


def _losses(run: Path, name: str = "log.csv") -> list[tuple[str, str, str]]:
    with (run / name).open() as f:
        return [(r["step"], r["loss"], r["valid_loss"]) for r in csv.DictReader(f)]


def test_killed_run_resumes_exactly(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    data = tmp_path / "data"
    make_dataset(data, n_sessions=2)  # written once; the children rewrite identical files
    assert _run(script, data, tmp_path / "whole") == 0
    # Killed in step 13: the last checkpoint is step 10, so steps 11-12 are redone.
    assert _run(script, data, tmp_path / "killed", kill_at=13) == 9
    assert not (tmp_path / "killed" / "final.pt").exists()
    # The live log sits in the checkpoint folder; the published one appears only at the end.
    assert not (tmp_path / "killed" / "log.csv").exists()
    assert len(_losses(tmp_path / "killed", "ckpt/train_log.csv")) == 12
    assert _run(script, data, tmp_path / "killed") == 0
    whole = torch.load(tmp_path / "whole" / "final.pt")
    resumed = torch.load(tmp_path / "killed" / "final.pt")
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "killed")
    assert len(_losses(tmp_path / "whole")) == 24


def _finetune_args(paths: dict, splits_path: Path, run: Path, hparams: str) -> list[str]:
    return [
        "finetune", "--dataset", "toy", "--method", "scratch_ndt", "--modality", "spikes",
        "--size", "tiny", "--seed", "0", "--device", "cpu", "--tasks", "co_smoothing",
        "--hparams", hparams, "--splits", str(splits_path),
        "--sessions", *map(str, paths.values()), "--model", str(run / "model.pt"),
        "--train-log", str(run / "train_log.csv"), "--checkpoint-dir", str(run / "ckpt"),
    ]  # fmt: skip


def test_a_stage_rerun_with_other_settings_retrains_instead_of_resuming(tmp_path):
    """Snakemake reruns a finished job when its params change; the old checkpoints, from a
    finished run, must not be resumed (that would return the old weights)."""
    from neurossl.data.splits import write_splits
    from neurossl.stages import main

    torch.set_num_threads(1)
    paths, splits = make_dataset(tmp_path / "data", n_sessions=4)
    splits_path = tmp_path / "splits.json"
    write_splits(splits, splits_path)
    first = '{"max_steps": 6, "stitch_steps": 3, "decode_steps": 0}'
    # grad_clip is not among the settings the engine itself compares when resuming.
    second = '{"max_steps": 6, "stitch_steps": 3, "decode_steps": 0, "grad_clip": 0.001}'

    def weights(run: Path) -> dict:
        return torch.load(run / "model.pt", weights_only=False)["state_dict"]

    main(_finetune_args(paths, splits_path, tmp_path / "a", first))
    old = weights(tmp_path / "a")
    main(_finetune_args(paths, splits_path, tmp_path / "a", second))
    main(_finetune_args(paths, splits_path, tmp_path / "fresh", second))
    rerun, fresh = weights(tmp_path / "a"), weights(tmp_path / "fresh")
    assert any(not torch.equal(old[k], rerun[k]) for k in old)
    assert all(torch.equal(fresh[k], rerun[k]) for k in fresh)
    # The same settings again, as `snakemake --forcerun` asks: the run completed, so it
    # starts over instead of handing back the finished weights; deterministic on CPU,
    # it ends with the same weights.
    stamp = (tmp_path / "a" / "ckpt" / "stitch" / "last.pt").stat().st_mtime_ns
    main(_finetune_args(paths, splits_path, tmp_path / "a", second))
    assert (tmp_path / "a" / "ckpt" / "stitch" / "last.pt").stat().st_mtime_ns != stamp
    assert all(torch.equal(fresh[k], v) for k, v in weights(tmp_path / "a").items())


def test_the_run_identity_covers_the_package_code(tmp_path, monkeypatch):
    """A killed job resumes only under the same code; an edited package starts over."""
    from neurossl import stages
    from neurossl.train import checkpoint

    args = stages.parse_args(
        ["pretrain", "--dataset", "d", "--method", "mtm", "--modality", "spikes", "--size",
         "tiny", "--seed", "0", "--tasks", "none", "--splits", str(tmp_path / "s.json"),
         "--sessions", str(tmp_path / "a.spikes.h5")]
    )  # fmt: skip
    (tmp_path / "s.json").write_text("{}")
    (tmp_path / "a.spikes.h5").write_text("")
    ckpt = tmp_path / "ckpt"
    identity = stages.run_identity(args)
    assert identity["code"]["source_sha256"] and identity["code"]["version"]
    assert not checkpoint.claim(ckpt, identity)
    (ckpt / checkpoint.LAST).write_text("a killed job's checkpoint")
    assert checkpoint.claim(ckpt, stages.run_identity(args))  # same code: resume
    edited = {"version": "0.1.0", "source_sha256": "0" * 64}
    monkeypatch.setattr(stages, "code_identity", lambda: edited)
    assert not checkpoint.claim(ckpt, stages.run_identity(args))  # other code: over
    assert not (ckpt / checkpoint.LAST).exists()


def test_a_second_process_cannot_train_a_held_run(tmp_path):
    """Two workflow runs on one results folder never train (and log) the same run."""
    from neurossl.train.checkpoint import hold

    hold(tmp_path / "ckpt")
    other = subprocess.run(
        [sys.executable, "-c",
         f"from neurossl.train.checkpoint import hold; hold({str(tmp_path / 'ckpt')!r})"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert other.returncode != 0
    assert f"pid {os.getpid()}" in other.stderr and "is being trained by" in other.stderr
