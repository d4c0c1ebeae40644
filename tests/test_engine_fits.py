"""The short fits (tokenizer, CalM's head probe, trained forecasters) run in the engine:
they report through the same progress lines as the families' stages, a full-batch step
is one gradient over all its parts, and in-memory sources and fits without a checkpoint
folder behave like the stages' loaders and runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurossl.baselines.forecasters import make_forecaster
from neurossl.models.dual_axis import DualAxisConfig
from neurossl.models.tokenizer import Tokenizer, TokenizerConfig
from neurossl.objectives.calm import (
    CalmNetwork,
    HeadSpec,
    UnitScaler,
    head_losses,
    head_outputs,
    probe_heads,
)
from neurossl.objectives.tokenizer import FitConfig, fit_tokenizer
from neurossl.rule_logging import rule_logging
from neurossl.train.engine import TrainConfig, train
from neurossl.train.sources import FullBatches, RandomRows

torch.set_num_threads(1)
#: The engine's progress line (neurossl.train.progress.format_line), any run name.
LINE = re.compile(r" (\w+) step (\d+)/(\d+) loss \S+ valid_loss \S+ \S+ steps/s ETA \S+$")


def _network() -> CalmNetwork:
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(patch=4, vocab_size=16, width=16, layers=0))
    head = HeadSpec("stimulus_class", "stimulus_class", (0.0, 1.0))
    return CalmNetwork(
        tokenizer,
        DualAxisConfig(16, 10, 2, width=16, layers=1, value_patch=4),
        UnitScaler(np.zeros(10), np.ones(10)),
        (head,),
    )


def _batches() -> list[dict[str, torch.Tensor]]:
    """Two sessions' batches of different sizes and neuron counts."""
    g = torch.Generator().manual_seed(1)
    out = []
    for session, (b, n, first) in enumerate([(3, 5, 1), (2, 4, 6)]):
        out.append({
            "activity": torch.randn(b, 16, n, generator=g),
            "unit": torch.arange(first, first + n).repeat(b, 1),
            "session": torch.full((b,), session),
            "neuron_mask": torch.ones(b, n, dtype=torch.bool),
            "stimulus_class": torch.randint(0, 2, (b,), generator=g).float(),
        })  # fmt: skip
    return out


def _pairs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal((40, 12, 3)), axis=1)
    return x[:, :8], x[:, 8:]


def test_short_fits_log_the_engines_progress_lines(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    with rule_logging(log):
        fit_tokenizer(
            np.random.default_rng(0).standard_normal((4, 16, 3)).astype(np.float32),
            TokenizerConfig(patch=4, vocab_size=8, width=8, layers=0),
            FitConfig(steps=3, batch_size=4),
        )
        probe_heads(_network(), _batches(), steps=3, lr=1e-2, weight_decay=0.0)
        forecaster = make_forecaster("rnn", {"hidden": 8, "steps": 3, "lr": 1e-3, "batch_size": 8})
        forecaster.fit(*_pairs(0), seed=0, device="cpu")
    text = log.read_text()
    lines = [m.groups() for m in map(LINE.search, text.splitlines()) if m]
    assert [(name, step, total) for name, step, total in lines] == [
        ("tokenizer", "3", "3"), ("probe", "3", "3"), ("forecaster", "3", "3"),
    ]  # fmt: skip
    assert "\r" not in text
    # The forecaster validates on its held-out pairs at the last step, as a stage does.
    forecaster_line = next(line for line in text.splitlines() if "forecaster step" in line)
    assert "valid_loss -" not in forecaster_line
    for name in ("tokenizer", "probe", "forecaster"):
        assert f"training on cpu, 1 process(es): {name}" in text


def test_full_batch_step_is_one_gradient_over_every_part() -> None:
    """A FullBatches step: the row-weighted mean of the parts' losses, one Adam update."""
    network, batches = _network(), _batches()
    expected = _network()
    heads = list(expected.heads.parameters())
    optimizer = torch.optim.AdamW(heads, lr=1e-2, weight_decay=0.0)
    with torch.no_grad():
        states = [expected(b)["hidden"].float() for b in batches]

    total = sum(
        sum(head_losses(expected, head_outputs(expected, h, b["unit"], b["neuron_mask"]), b)
            .values()) * len(h)
        for h, b in zip(states, batches, strict=True)
    ) / sum(len(h) for h in states)  # fmt: skip
    total.backward()
    optimizer.step()
    want_loss = float(total.detach())
    result = probe_heads(network, batches, steps=1, lr=1e-2, weight_decay=0.0)
    assert result is not None and result.last_loss == pytest.approx(want_loss, rel=1e-5)
    for got, want in zip(network.heads.parameters(), heads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert probe_heads(network, batches, steps=0, lr=1e-2, weight_decay=0.0) is None


def test_random_rows_are_a_function_of_seed_and_step_and_split_across_ranks() -> None:
    rows = RandomRows({"x": torch.arange(10.0), "y": -torch.arange(10.0)}, batch_size=4, seed=3)
    stream = rows.iter_from(0)
    first = [next(stream) for _ in range(5)]
    assert torch.equal(next(rows.iter_from(3))["x"], first[3]["x"])
    assert all(torch.equal(b["x"], -b["y"]) for b in first)
    ranks = [next(rows.iter_from(2, rank, 2))["x"] for rank in (0, 1)]
    assert sorted(torch.cat(ranks).tolist()) == sorted(first[2]["x"].tolist())
    assert next(FullBatches([{"x": torch.ones(1)}]).iter_from(7))[0]["x"].item() == 1.0


def test_fit_without_checkpoint_folder_keeps_the_best_validated_weights(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.randn(4, 1)
    model = nn.Linear(4, 1)

    def loss_fn(net: nn.Module, batch: dict[str, torch.Tensor]):
        return nn.functional.mse_loss(net(batch["x"]), batch["y"]), {}

    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def remember(step: int) -> None:
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}

    # A learning rate far too high: validation gets worse after the first evaluation.
    config = TrainConfig(max_steps=6, lr=5.0, warmup_steps=0, lr_floor=1.0, eval_every=2,
                         grad_clip=0.0, before_step=remember, progress=False)  # fmt: skip
    valid = [{"x": x[48:], "y": y[48:]}]
    result = train(model, loss_fn, RandomRows({"x": x[:48], "y": y[:48]}, 16, 0), valid,
                   config, None, None, "cpu")  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no log
    assert result.best_step == 2 and result.last_step == 6 and result.resumed_from is None
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[2][k])  # the weights after step 2
    logged = tmp_path / "sub" / "log.csv"
    config = TrainConfig(max_steps=3, warmup_steps=0, progress=False)
    train(nn.Linear(4, 1), loss_fn, RandomRows({"x": x, "y": y}, 16, 0), None, config, None,
          logged, "cpu")  # fmt: skip
    assert len(logged.read_text().splitlines()) == 4  # header + one row per step
