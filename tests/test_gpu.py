"""What only a GPU can show (``gpu`` marker; skipped without CUDA, run by
benchmarks/gpu_check.sh): fused SDPA kernels at the real shapes, ``torch.compile`` of
every backbone, and a killed training job resuming from its checkpoint on the GPU.

The bf16 training steps of every family on CUDA are tests/test_bf16_rehearsal.py's
``cuda`` cases (the same tests as the CPU rehearsal).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from test_loader import make_dataset

from neurossl.device import autocast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from job_sizes import BUILDERS, JOBS

pytestmark = pytest.mark.gpu


def _on(device: str, model: torch.nn.Module, batch: dict) -> dict:
    model.to(device)
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.parametrize("job", JOBS, ids=[j.preset for j in JOBS])
def test_attention_runs_on_fused_sdpa_kernels_at_real_shapes(job):
    """With the math kernel excluded, any attention call it would need fails loudly."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, loss_fn, batch = BUILDERS[job.preset](job, 2)
    batch = _on("cuda", model, batch)
    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    with sdpa_kernel(fused), autocast("cuda"):
        loss, _ = loss_fn(model, batch)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("job", JOBS, ids=[j.preset for j in JOBS])
def test_every_backbone_compiles_and_matches_eager(job):
    small = dataclasses.replace(job, neurons=min(job.neurons, 64))
    model, loss_fn, batch = BUILDERS[job.preset](small, 2)
    batch = _on("cuda", model, batch)
    model.eval()  # no dropout, so eager and compiled see the same function
    compiled = torch.compile(model)
    losses = []
    for net in (model, compiled):
        torch.manual_seed(0)
        with autocast("cuda"):
            loss, _ = loss_fn(net, batch)
        loss.backward()
        losses.append(float(loss))
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)


def test_killed_training_job_resumes_from_its_checkpoint_on_the_gpu(tmp_path):
    from neurossl.data.loader import WindowDataset, make_loader
    from neurossl.models.ndt import NDT, make_config
    from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios
    from neurossl.train.engine import TrainConfig, train

    paths, splits = make_dataset(tmp_path / "data", n_sessions=2)
    data = WindowDataset(paths, splits, "train", sorted(paths))
    objective = MaskedModelingLoss(SCHEMES, MaskRatios(), True, data.vocab.session_ids)
    config = TrainConfig(max_steps=12, lr=3e-3, warmup_steps=2, eval_every=4, checkpoint_every=4,
                         seed=3, progress=False)  # fmt: skip

    def run(name: str, kill_at: int = 0):
        torch.manual_seed(0)
        model = NDT(make_config("tiny", n_prompts=4), {s: int(data.regions(s).size)
                                                       for s in data.sessions})  # fmt: skip
        calls = [0]

        def loss_fn(m, batch):
            if torch.is_grad_enabled():
                calls[0] += 1
                if calls[0] == kill_at:
                    raise KeyboardInterrupt  # a job killed inside step ``kill_at``
            return objective(m, batch)

        loader = make_loader(data, 6, True, 3, True)
        result = train(model, loss_fn, loader, None, config, tmp_path / name / "ckpt",
                       tmp_path / name / "log.csv", "cuda")  # fmt: skip
        return model, result

    whole, _ = run("whole")
    with pytest.raises(KeyboardInterrupt):
        run("killed", kill_at=7)
    resumed, result = run("killed")
    assert result.resumed_from == 4 and result.last_step == 12
    assert next(resumed.parameters()).is_cuda
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
