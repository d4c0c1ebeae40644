"""POYO-SSL objective: span masking, masked-only loss, neuron diets from the splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_poyo_family import EXTREME, SESSIONS, build_dataset

from neurossl.data.loader import WindowDataset
from neurossl.objectives.poyo_ssl import (
    diet_neuron_ids,
    masked_mse,
    reconstruction_loss_fn,
    span_mask,
)


def test_span_mask_ratio_spans_and_padding() -> None:
    torch.manual_seed(0)
    neuron_mask = torch.ones(64, 40, dtype=torch.bool)
    neuron_mask[:, 30:] = False
    mask = span_mask(neuron_mask, n_bins=60, ratio=0.5, span=6)
    assert mask.shape == (64, 60, 40)
    assert not mask[:, :, 30:].any()  # padded neurons are never masked
    share = mask[:, :, :30].float().mean().item()
    assert 0.45 < share < 0.55
    # Every masked run that does not touch a window edge is at least one span long.
    runs = []
    for trace in mask[:8, :, :30].permute(0, 2, 1).reshape(-1, 60).numpy():
        edges = np.flatnonzero(np.diff(np.r_[0, trace.astype(int), 0]))
        runs += [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    inner = [b - a for a, b in runs if a > 0 and b < 60]
    assert inner and min(inner) >= 6
    with pytest.raises(ValueError, match="mask ratio"):
        span_mask(neuron_mask, 60, ratio=1.0, span=6)


def test_masked_mse_counts_only_masked_tokens() -> None:
    target = torch.randn(2, 5, 3)
    mask = torch.zeros(2, 5, 3, dtype=torch.bool)
    mask[0, 1, 2] = mask[1, 3, 0] = True
    pred = target.clone()
    pred[mask] += torch.tensor([1.0, 3.0])
    loss, count = masked_mse(pred, target, mask)
    assert count.item() == 2 and loss.item() == pytest.approx((1.0 + 9.0) / 2)
    pred[~mask] += 100.0  # unmasked errors do not count
    assert masked_mse(pred, target, mask)[0].item() == pytest.approx(5.0)
    empty = masked_mse(pred, target, torch.zeros_like(mask))[0]
    assert empty.item() == 0.0


class _Echo(torch.nn.Module):
    """Predicts a constant; records which tokens the loss function hid from it."""

    def forward(self, batch, tasks, token_mask):
        self.seen_mask = token_mask
        return {tasks[0]: torch.full_like(batch["activity"], 0.5, requires_grad=True)}


def test_reconstruction_loss_uses_the_mask_it_hides() -> None:
    torch.manual_seed(1)
    batch = {"activity": torch.randn(3, 12, 4), "neuron_mask": torch.ones(3, 4, dtype=torch.bool)}
    model = _Echo()
    loss, metrics = reconstruction_loss_fn(ratio=0.5, span=3)(model, batch)
    mask = model.seen_mask
    expected = ((0.5 - batch["activity"][mask]) ** 2).mean()
    assert metrics["masked_tokens"] == mask.sum().item() > 0
    torch.testing.assert_close(loss, expected)


class _Head:
    """An auxiliary head whose loss is the mean of its output."""

    name = "stimulus_class"

    def loss(self, out, batch):
        return out.mean()


class _EchoWithHead(_Echo):
    def forward(self, batch, tasks, token_mask):
        out = super().forward(batch, tasks, token_mask)
        self.tasks = tasks
        return out | {"stimulus_class": torch.full((3, 4), 2.0, requires_grad=True)}


def test_auxiliary_decoding_adds_its_weighted_loss_from_the_same_masked_pass() -> None:
    torch.manual_seed(1)
    batch = {"activity": torch.randn(3, 12, 4), "neuron_mask": torch.ones(3, 4, dtype=torch.bool)}
    model = _EchoWithHead()
    loss, metrics = reconstruction_loss_fn(0.5, 3, auxiliary=[_Head()], auxiliary_weight=0.1)(
        model, batch
    )
    reconstruction = ((0.5 - batch["activity"][model.seen_mask]) ** 2).mean()
    assert model.tasks == ("reconstruction", "stimulus_class")  # one forward pass
    assert metrics["reconstruction"] == pytest.approx(float(reconstruction))
    assert metrics["loss_stimulus_class"] == pytest.approx(2.0)
    torch.testing.assert_close(loss, reconstruction + 0.1 * 2.0)
    labels_only = reconstruction_loss_fn(
        0.5, 3, auxiliary=[_Head()], auxiliary_weight=0.1, reconstruction_weight=0.0
    )
    loss, metrics = labels_only(model, batch)
    reconstruction = ((0.5 - batch["activity"][model.seen_mask]) ** 2).mean()
    assert metrics["reconstruction"] == pytest.approx(float(reconstruction))  # still logged
    torch.testing.assert_close(loss, torch.tensor(0.1 * 2.0))


def test_diets_select_exactly_the_split_groups(tmp_path: Path) -> None:
    paths, splits = build_dataset(tmp_path, extreme_splits=("valid", "test"))
    sessions = splits.pretrain_sessions
    chosen = diet_neuron_ids(splits, "calcium", sessions, "predictable")
    assert chosen == {s: ["roi0", "roi1", "roi2"] for s in sessions}
    assert diet_neuron_ids(splits, "calcium", sessions, "unpredictable") == {
        s: ["roi3", "roi4", "roi5"] for s in sessions
    }
    assert diet_neuron_ids(splits, "calcium", sessions, "all") is None
    # The diet's training data: train windows only (valid/test hold EXTREME values).
    dataset = WindowDataset(paths, splits, "train", sessions, chosen)
    assert len(dataset) == 2 * 8
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["activity"].shape[1] == 3 and np.abs(item["activity"]).max() < EXTREME
    with pytest.raises(ValueError, match="neuron_diet"):
        diet_neuron_ids(splits, "calcium", sessions, "stable")
    splits.neurons["calcium"][SESSIONS[0]]["predictable"] = []
    splits.neurons["calcium"][SESSIONS[1]]["predictable"] = []
    with pytest.raises(ValueError, match="no 'predictable' calcium neurons"):
        diet_neuron_ids(splits, "calcium", sessions, "predictable")
