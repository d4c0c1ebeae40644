"""torch's AdamW and LR schedulers as the training loops set them up: the schedule's shape,
which parameters decay, the fused kernel's choice, and exact resumption from saved state."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
from torch import nn

from neurossl.train.optim import (
    adamw,
    load_optimizer_state,
    make_optimizer,
    make_scheduler,
    warmup_cosine,
)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, 7)
        self.layer = nn.Linear(5, 7)
        self.norm = nn.LayerNorm(7)
        self.out = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.layer(x) + self.embed.weight[0]))


def _net(seed: int) -> _Net:
    torch.manual_seed(seed)
    return _Net()


def _train(model: nn.Module, optimizer, schedule, steps: range) -> list[float]:
    lrs = []
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 5, generator=generator), torch.randn(16, 3, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        (model(x) - y).square().mean().backward()
        optimizer.step()
        schedule.step()
        lrs.append(schedule.get_last_lr()[0])
    return lrs


def test_warmup_then_cosine_to_a_tenth_of_the_peak():
    factor = warmup_cosine(warmup_steps=4, max_steps=24)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0
    assert factor(14) == pytest.approx(0.55)  # half-way down the cosine
    assert factor(24) == pytest.approx(0.1) and factor(99) == pytest.approx(0.1)
    decaying = [factor(s) for s in range(4, 25)]
    assert all(a >= b for a, b in itertools.pairwise(decaying))


def test_scheduler_sets_the_peak_times_the_factor_on_every_group():
    model = _net(0)
    optimizer = make_optimizer(list(model.named_parameters()), lr=3e-3, weight_decay=0.1)
    schedule = make_scheduler(optimizer, warmup_steps=2, max_steps=10)
    factor = warmup_cosine(2, 10)
    assert [g["lr"] for g in optimizer.param_groups] == [3e-3 * factor(0)] * 2
    lrs = _train(model, optimizer, schedule, range(10))
    assert lrs == pytest.approx([3e-3 * factor(s) for s in range(1, 11)])


def test_weight_decay_only_on_weight_matrices():
    model = _net(0)
    optimizer = make_optimizer(list(model.named_parameters()), lr=1e-3, weight_decay=0.1)
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model.layer.weight), id(model.out.weight)}
    assert any(p is model.embed.weight for p in plain["params"])
    assert decayed["betas"] == (0.9, 0.95)


def test_fused_kernel_when_every_parameter_is_on_one_cpu_or_cuda_device():
    optimizer = adamw(_net(0).parameters(), 1e-3)
    assert optimizer.param_groups[0]["fused"]
    meta = adamw([nn.Parameter(torch.zeros(2, device="meta"))], 1e-3)
    assert not meta.param_groups[0]["fused"] and meta.param_groups[0]["foreach"]
    with pytest.raises(ValueError, match="empty parameter list"):
        adamw([], 1e-3)


def test_floor_zero_is_cosine_to_zero_and_floor_one_is_constant():
    model = _net(1)
    optimizer = adamw(model.parameters(), 1e-2, weight_decay=0.0)
    lrs = _train(model, optimizer, make_scheduler(optimizer, 0, 25, floor=0.0), range(25))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert lrs[11] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 12 / 25)))
    optimizer = adamw(model.parameters(), 1e-2, weight_decay=0.0)
    lrs = _train(model, optimizer, make_scheduler(optimizer, 0, 25, floor=1.0), range(25))
    assert lrs == pytest.approx([1e-2] * 25)


def _saved(obj) -> dict:
    """A round trip through torch.save, as a checkpoint file makes it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_saved_optimizer_and_schedule_resume_bit_for_bit():
    straight, resumed = _net(2), _net(2)
    optimizer = make_optimizer(list(straight.named_parameters()), 3e-3, 0.1)
    expected = _train(straight, optimizer, make_scheduler(optimizer, 3, 20), range(20))

    first = make_optimizer(list(resumed.named_parameters()), 3e-3, 0.1)
    first_schedule = make_scheduler(first, 3, 20)
    lrs = _train(resumed, first, first_schedule, range(8))
    saved = _saved({"optimizer": first.state_dict(), "scheduler": first_schedule.state_dict()})
    again = make_optimizer(list(resumed.named_parameters()), 3e-3, 0.1)
    again_schedule = make_scheduler(again, 3, 20)
    load_optimizer_state(again, saved["optimizer"])
    again_schedule.load_state_dict(saved["scheduler"])
    lrs += _train(resumed, again, again_schedule, range(8, 20))
    assert lrs == expected
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_resume_keeps_this_runs_kernel_choice():
    model = _net(3)
    optimizer = adamw(model.parameters(), 1e-3)
    saved = optimizer.state_dict()
    # As written by a run that chose the multi-tensor kernel.
    saved["param_groups"][0].update(fused=None, foreach=True)
    load_optimizer_state(optimizer, saved)
    assert optimizer.param_groups[0]["fused"] and not optimizer.param_groups[0]["foreach"]


def test_loading_state_of_other_parameter_groups_is_a_clear_error():
    model = _net(3)
    saved = adamw(model.parameters(), 1e-3).state_dict()
    other = make_optimizer(list(model.named_parameters()), 1e-3, 0.1)
    with pytest.raises(ValueError, match="parameter groups"):
        load_optimizer_state(other, saved)
    former = {"state": {}, "param_groups": [{"lr": 1e-3, "n_params": 4}]}
    with pytest.raises(ValueError, match="delete the checkpoint directory"):
        load_optimizer_state(other, former)


@pytest.mark.gpu
def test_fused_adamw_on_cuda_matches_the_cpu_update():
    cpu, gpu = _net(4), _net(4).cuda()
    cpu_opt, gpu_opt = adamw(cpu.parameters(), 1e-2), adamw(gpu.parameters(), 1e-2)
    assert gpu_opt.param_groups[0]["fused"]
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for model, opt, dev in ((cpu, cpu_opt, "cpu"), (gpu, gpu_opt, "cuda")):
        for _ in range(5):
            opt.zero_grad()
            (model(x.to(dev)) - y.to(dev)).square().mean().backward()
            opt.step()
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
