"""Our AdamW and schedules against torch.optim's, bit for bit, and what they exist for."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from neurossl.train.adamw import AdamW, CosineSchedule, LambdaSchedule
from neurossl.train.optim import warmup_cosine


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))


def _groups(model: nn.Module) -> list[dict]:
    weights = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": weights, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]


def _train(model: nn.Module, optimizer, schedule, steps: range, skip_last_layer_at: int = 3):
    """Steps on fixed random batches; at one step the last layer gets no gradient."""
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(16, 5, generator=generator)
        y = torch.randn(16, 3, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        if step == skip_last_layer_at:
            loss = model[1](model[0](x)).sum()
        else:
            loss = (model(x) - y).square().mean()
        loss.backward()
        optimizer.step()
        schedule.step()


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("foreach", [True, False])
def test_adamw_with_warmup_cosine_is_torchs_bit_for_bit(foreach):
    ours, theirs = _model(0), _model(0)
    optimizer = AdamW(_groups(ours), lr=3e-3, betas=(0.9, 0.95))
    reference = torch.optim.AdamW(_groups(theirs), lr=3e-3, betas=(0.9, 0.95), foreach=foreach)
    factor = warmup_cosine(5, 30)
    schedule = LambdaSchedule(optimizer, factor)
    reference_schedule = torch.optim.lr_scheduler.LambdaLR(reference, factor)
    for step in range(30):
        _train(ours, optimizer, schedule, range(step, step + 1))
        _train(theirs, reference, reference_schedule, range(step, step + 1))
        assert schedule.get_last_lr() == reference_schedule.get_last_lr()
    _same_weights(ours, theirs)


def test_weight_decay_zero_is_torchs_adam_and_cosine_is_torchs_cosine_annealing():
    ours, theirs = _model(1), _model(1)
    optimizer = AdamW(ours.parameters(), lr=1e-2, weight_decay=0.0)
    reference = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    schedule = CosineSchedule(optimizer, 25)
    reference_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(reference, 25)
    for step in range(25):
        _train(ours, optimizer, schedule, range(step, step + 1))
        _train(theirs, reference, reference_schedule, range(step, step + 1))
        assert [g["lr"] for g in optimizer.param_groups] == reference_schedule.get_last_lr()
    _same_weights(ours, theirs)
    with pytest.raises(RuntimeError, match="past its 25 steps"):
        schedule.step()


def test_state_dict_round_trip_resumes_exactly():
    straight, resumed = _model(2), _model(2)
    optimizer = AdamW(_groups(straight), lr=3e-3)
    _train(straight, optimizer, LambdaSchedule(optimizer, warmup_cosine(3, 20)), range(20))

    first = AdamW(_groups(resumed), lr=3e-3)
    first_schedule = LambdaSchedule(first, warmup_cosine(3, 20))
    _train(resumed, first, first_schedule, range(8))
    saved = {"optimizer": first.state_dict(), "schedule": first_schedule.state_dict()}
    again = AdamW(_groups(resumed), lr=3e-3)
    again.load_state_dict(saved["optimizer"])
    again_schedule = LambdaSchedule(again, warmup_cosine(3, 20))
    again_schedule.load_state_dict(saved["schedule"])
    _train(resumed, again, again_schedule, range(8, 20))
    _same_weights(straight, resumed)


def test_loading_state_of_other_parameter_groups_is_a_clear_error():
    model = _model(3)
    saved = AdamW(model.parameters(), lr=1e-3).state_dict()
    with pytest.raises(ValueError, match="parameter groups of sizes"):
        AdamW(_groups(model), lr=1e-3).load_state_dict(saved)


def test_a_training_run_never_imports_torchdynamo(tmp_path):
    """The reason the module exists: a training job does not pay TorchDynamo's import."""
    script = f"""
import sys
import torch
from neurossl.train.engine import TrainConfig, train

class Loader:
    def iter_from(self, step, rank, world_size):
        while True:
            yield {{"x": torch.randn(8, 4), "y": torch.randn(8, 1)}}

def loss_fn(model, batch):
    return (model(batch["x"]) - batch["y"]).square().mean(), {{}}

model = torch.nn.Linear(4, 1)
train(model, loss_fn, Loader(), None, TrainConfig(max_steps=6, lr=1e-2, batch_size=8,
      warmup_steps=2, progress=False), {str(tmp_path)!r} + "/ckpt", {str(tmp_path)!r} + "/log.csv",
      "cpu")
assert "torch._dynamo" not in sys.modules, "a training run imported torch._dynamo"
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
