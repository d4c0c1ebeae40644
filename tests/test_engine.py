"""Training engine: learning, best-on-validation selection, early stopping, freezing."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from test_loader import make_dataset
from torch import nn

from neurossl.data.loader import WindowDataset, make_loader
from neurossl.models.ndt import NDT, make_config, session_parameter_filter
from neurossl.objectives.mtm import SCHEMES, MaskedModelingLoss, MaskRatios
from neurossl.train.engine import TrainConfig, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("engine"), n_sessions=2)


def _loaders(data, batch_size=8):
    paths, splits = data
    sessions = sorted(paths)
    train_ds = WindowDataset(paths, splits, "train", sessions)
    valid_ds = WindowDataset(paths, splits, "valid", sessions)
    return (
        train_ds,
        make_loader(train_ds, batch_size, True, 0, True),
        make_loader(valid_ds, batch_size, False, 0, True),
    )


def _log(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_mtm_loss_decreases(data, tmp_path):
    torch.set_num_threads(1)
    ds, train_loader, valid_loader = _loaders(data)
    sessions = {s: int(ds.regions(s).size) for s in ds.sessions}
    model = NDT(make_config("tiny", n_prompts=4), sessions)
    loss = MaskedModelingLoss(SCHEMES, MaskRatios(), True, ds.vocab.session_ids)
    config = TrainConfig(max_steps=60, lr=3e-3, warmup_steps=5, eval_every=20, progress=False)
    result = train(
        model, loss, train_loader, valid_loader, config, tmp_path, tmp_path / "log.csv", "cpu"
    )
    rows = _log(tmp_path / "log.csv")
    assert len(rows) == 60 and result.last_step == 60
    first = sum(float(r["loss"]) for r in rows[:15]) / 15
    last = sum(float(r["loss"]) for r in rows[-15:]) / 15
    # Read-outs start at each neuron's mean rate (a calibrated model), so the loss falls
    # from a good start: 10 % over 60 steps is learning, not noise (untrained: ~0 %).
    assert last < 0.9 * first
    valid = [float(r["valid_loss"]) for r in rows if r["valid_loss"] != "nan"]
    assert len(valid) == 3 and valid[-1] < valid[0]


class _Scalar(nn.Module):
    """w trains towards 1 while validation prefers 0.5: the best step is mid-run."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.frozen = nn.Parameter(torch.zeros(()))

    def forward(self) -> torch.Tensor:
        return self.w + self.frozen


def _scalar_loss(model, batch):
    goal = 1.0 if torch.is_grad_enabled() else 0.5
    value = model()
    return (value - goal) ** 2 + 0.0 * value * batch["activity"].sum(), {}


def test_best_checkpoint_is_returned_and_early_stopping(data, tmp_path):
    _, train_loader, valid_loader = _loaders(data)
    model = _Scalar()
    config = TrainConfig(
        max_steps=200, lr=0.02, warmup_steps=0, eval_every=5, patience=3, grad_clip=0.0,
        trainable=lambda name: name == "w", progress=False,
    )  # fmt: skip
    result = train(
        model, _scalar_loss, train_loader, valid_loader, config, tmp_path, tmp_path / "l.csv", "cpu"
    )
    assert result.stopped_early and result.last_step < 200
    assert result.last_step == result.best_step + 3 * 5
    assert math.isclose(result.best_valid_loss, (model.w.item() - 0.5) ** 2, rel_tol=1e-5)
    rows = _log(tmp_path / "l.csv")
    valid = {int(r["step"]): float(r["valid_loss"]) for r in rows if r["valid_loss"] != "nan"}
    assert min(valid, key=valid.get) == result.best_step
    assert model.frozen.item() == 0.0 and model.frozen.requires_grad  # frozen, then restored


def test_finished_run_is_not_repeated(data, tmp_path):
    _, train_loader, valid_loader = _loaders(data)
    config = TrainConfig(max_steps=10, lr=0.02, warmup_steps=0, eval_every=5, progress=False)
    first = train(
        _Scalar(),
        _scalar_loss,
        train_loader,
        valid_loader,
        config,
        tmp_path,
        tmp_path / "l.csv",
        "cpu",
    )
    model = _Scalar()
    again = train(
        model, _scalar_loss, train_loader, valid_loader, config, tmp_path, tmp_path / "l.csv", "cpu"
    )
    assert again.resumed_from == 10 and again.best_step == first.best_step
    assert model.w.item() != 0.0  # best weights loaded without training
    assert len(_log(tmp_path / "l.csv")) == 10
    with pytest.raises(ValueError, match="other settings"):
        changed = TrainConfig(max_steps=10, lr=0.5, warmup_steps=0, progress=False)
        train(
            _Scalar(),
            _scalar_loss,
            train_loader,
            valid_loader,
            changed,
            tmp_path,
            tmp_path / "l.csv",
            "cpu",
        )


def test_stitch_filter_trains_only_new_session(data, tmp_path):
    ds, _, _ = _loaders(data)
    sessions = {s: int(ds.regions(s).size) for s in ds.sessions}
    model = NDT(make_config("tiny", n_prompts=4), sessions)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = ds.sessions[1]
    paths, splits = data
    train_loader = make_loader(WindowDataset(paths, splits, "train", [new]), 8, True, 0, True)
    loss = MaskedModelingLoss(SCHEMES, MaskRatios(), True, ds.vocab.session_ids)
    config = TrainConfig(
        max_steps=6, eval_every=100, trainable=session_parameter_filter([new]), progress=False
    )
    train(model, loss, train_loader, None, config, tmp_path, tmp_path / "l.csv", "cpu")
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(new in k for k in changed)
