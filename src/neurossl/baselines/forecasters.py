"""Forecasting baselines: context [W, C, N] -> the next H steps [W, H, N] of every neuron.

They bracket what a pretrained forecaster has to beat, from no model to a small trained
one (ZAPBench and POCO use the same ladder):

- ``mean``: each neuron's mean over the training windows (no dynamics at all).
- ``persistence``: the last context value, repeated (the naive forecaster).
- ``linear_ar``: ridge from a neuron's own last ``ar_order`` steps to its H future steps,
  with weights *shared across neurons*; with ``ar_population`` the population mean of
  the same steps is appended, so a global fluctuation can be followed.
- ``population_ridge`` (the ``linear`` method's forecaster): ridge from the last
  ``ar_order`` steps of *all* neurons to all future steps of all neurons.
- ``rnn``: a GRU shared by all neurons over each neuron's context and the population
  mean, with a linear readout of every horizon step.
- ``poco``: POCO-style (Duan et al. 2025): an attention-pooled population code of
  per-neuron context embeddings (+ unit embeddings) modulates, by FiLM, a per-neuron MLP
  that maps the neuron's own context and unit embedding to its future.

All but ``mean`` and ``persistence`` work on per-neuron z-scored data (train statistics)
and predict in that space; the trained ones predict an offset from the last context
value. Trained models are tiny, train in the engine (fp32 on CPU, bf16 autocast on
CUDA, like every training run) and are deterministic on CPU for a fixed seed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import nn

from neurossl.eval.linear_maps import LinearMap, fit_ridge_cv, group_folds
from neurossl.train.engine import TrainConfig, train
from neurossl.train.optim import DEFAULT_BETAS
from neurossl.train.sources import RandomRows

#: Share of a trained forecaster's pairs held out for early stopping.
VALID_FRACTION = 0.15
#: Optimiser steps between two early-stopping checks.
EVAL_EVERY = 25
#: Frames per GRU step of the ``rnn`` forecaster.
GRU_PATCH = 4
#: AdamW weight decay of the trained forecasters.
WEIGHT_DECAY = 0.01


class Normalizer:
    """Per-neuron z-scoring with training statistics (constant neurons get scale 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, context: np.ndarray, future: np.ndarray) -> Normalizer:
        n = context.shape[-1]
        values = np.concatenate([context.reshape(-1, n), future.reshape(-1, n)])
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 1e-6, std, 1.0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.from_numpy(self.mean), "std": torch.from_numpy(self.std)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Normalizer:
        return cls(state["mean"].numpy(), state["std"].numpy())


class Forecaster(ABC):
    """fit on training (context, future) pairs, then predict futures of new contexts."""

    #: Whether fitting uses (context, future) pairs at every offset of the training
    #: windows rather than the one pair per window that is scored (trained models only:
    #: the ridge forecasters' CV is cheap and well-posed on one pair per window).
    slides = False

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.hparams = hparams
        self.horizon = 0

    def fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        _check_pair(context, future)
        self.horizon = future.shape[1]
        self._fit(context, future, seed, device)

    def predict(self, context: np.ndarray) -> np.ndarray:
        if self.horizon < 1:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        return self._predict(np.asarray(context, dtype=np.float64))

    def state(self) -> dict[str, Any]:
        return {"horizon": self.horizon, **self._state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.horizon = int(state["horizon"])
        self._load_state(state)

    @abstractmethod
    def _fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        """Implemented by each forecaster."""

    @abstractmethod
    def _predict(self, context: np.ndarray) -> np.ndarray:
        """Implemented by each forecaster."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """Implemented by each forecaster."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Implemented by each forecaster."""


class MeanForecaster(Forecaster):
    def _fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        self.mean = Normalizer.fit(context, future).mean

    def _predict(self, context: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean, (context.shape[0], self.horizon, self.mean.size)).copy()

    def _state(self) -> dict[str, Any]:
        return {"mean": torch.from_numpy(self.mean)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].numpy()


class PersistenceForecaster(Forecaster):
    def _fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        """Nothing to learn; fitting only records the horizon."""

    def _predict(self, context: np.ndarray) -> np.ndarray:
        return np.repeat(context[:, -1:, :], self.horizon, axis=1)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Nothing but the horizon to restore."""


class LinearARForecaster(Forecaster):
    def _features(self, z: np.ndarray) -> np.ndarray:
        """[W * N, order (+ order)]: each neuron's last steps (+ the population mean's)."""
        order = _order(self.hparams, z.shape[1])
        own = z[:, -order:, :].transpose(0, 2, 1)  # [W, N, order]
        parts = [own]
        if self.hparams["ar_population"]:
            pop = z[:, -order:, :].mean(axis=2)[:, None, :]
            parts.append(np.broadcast_to(pop, own.shape))
        return np.concatenate(parts, axis=2).reshape(-1, parts[0].shape[2] * len(parts))

    def _fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        self.norm = Normalizer.fit(context, future)
        w, h, n = future.shape
        x = self._features(self.norm.forward(context))
        y = self.norm.forward(future).transpose(0, 2, 1).reshape(w * n, h)
        self.map = fit_ridge_cv(x, y, group_folds(np.repeat(np.arange(w), n)))

    def _predict(self, context: np.ndarray) -> np.ndarray:
        w, n = context.shape[0], context.shape[2]
        z = self.map.predict(self._features(self.norm.forward(context)))
        return self.norm.inverse(z.reshape(w, n, self.horizon).transpose(0, 2, 1))

    def _state(self) -> dict[str, Any]:
        return {"norm": self.norm.state(), "map": self.map.state()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.norm = Normalizer.from_state(state["norm"])
        self.map = LinearMap.from_state(state["map"])


class PopulationRidgeForecaster(Forecaster):
    def _features(self, z: np.ndarray) -> np.ndarray:
        order = _order(self.hparams, z.shape[1])
        return z[:, -order:, :].reshape(z.shape[0], -1)

    def _fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        self.norm = Normalizer.fit(context, future)
        x = self._features(self.norm.forward(context))
        y = self.norm.forward(future).reshape(future.shape[0], -1)
        self.map = fit_ridge_cv(x, y, group_folds(np.arange(future.shape[0])))

    def _predict(self, context: np.ndarray) -> np.ndarray:
        z = self.map.predict(self._features(self.norm.forward(context)))
        return self.norm.inverse(z.reshape(context.shape[0], self.horizon, context.shape[2]))

    def _state(self) -> dict[str, Any]:
        return {"norm": self.norm.state(), "map": self.map.state()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.norm = Normalizer.from_state(state["norm"])
        self.map = LinearMap.from_state(state["map"])


class GRUNet(nn.Module):
    """A GRU shared by all neurons, over each neuron's context and the population mean.

    Why shared per neuron, not one GRU over population vectors (the first design): with a
    few hundred training pairs, a read-out of all H x N future values from one state
    overfit and lost to persistence beyond a few steps; run per neuron, every neuron's
    trace is a training sequence (linear_ar's features, made nonlinear and recurrent),
    and a unit embedding in the initial state lets dynamics differ between neurons. The
    GRU steps over patches of ``GRU_PATCH`` frames: on CPU a recurrent step costs the
    same for 1 or 4 inputs, and per-frame steps made a job cost minutes.
    """

    def __init__(self, n_neurons: int, context: int, horizon: int, hidden: int) -> None:
        super().__init__()
        self.unit = nn.Embedding(n_neurons, hidden)
        nn.init.normal_(self.unit.weight, std=0.1)
        self.patch = min(GRU_PATCH, context)
        self.gru = nn.GRU(2 * self.patch, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, horizon)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        b, c, n = context.shape
        steps, p = c // self.patch, self.patch
        recent = context[:, c - steps * p :]  # leading frames that fill no patch dropped
        own = recent.transpose(1, 2).reshape(b * n, steps, p)
        population = recent.mean(2).reshape(b, 1, steps, p).expand(b, n, steps, p)
        inputs = torch.cat([own, population.reshape(b * n, steps, p)], dim=2)
        start = self.unit.weight.repeat(b, 1)[None]  # [1, B*N, D]
        _, last = self.gru(inputs, start.contiguous())
        delta = self.readout(last[-1]).view(b, n, -1).transpose(1, 2)
        return context[:, -1:, :] + delta


class POCONet(nn.Module):
    """Per-neuron MLP forecaster conditioned (FiLM) on an attention-pooled population code."""

    def __init__(self, n_neurons: int, context: int, horizon: int, hidden: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Linear(context, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        self.unit = nn.Embedding(n_neurons, hidden)
        self.query = nn.Parameter(torch.randn(hidden) / math.sqrt(hidden))
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.inp = nn.Linear(context + hidden, hidden)
        self.out = nn.Sequential(
            nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, horizon)
        )

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        own = context.transpose(1, 2)  # [B, N, C]
        unit = self.unit.weight.unsqueeze(0).expand(own.shape[0], -1, -1)  # [B, N, D]
        tokens = self.encode(own) + unit
        scores = self.key(tokens) @ self.query / math.sqrt(self.query.numel())  # [B, N]
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        population = (weights * self.value(tokens)).sum(dim=1)  # [B, D]
        scale, shift = self.film(population).unsqueeze(1).chunk(2, dim=-1)
        hidden = self.inp(torch.cat([own, unit], dim=-1)) * (1 + scale) + shift
        delta = self.out(hidden)  # [B, N, H]
        return (own[..., -1:] + delta).transpose(1, 2)


class TorchForecaster(Forecaster):
    """Shared training and state handling of the small trained forecasters.

    Training (why each piece; before it, both lost to persistence beyond ~4 steps):

    - *Many pairs.* :func:`neurossl.baselines.forecasting.fit_forecasting` gives them
      every offset of (context, horizon) inside the training windows (``slides``), not
      one pair per window: a few dozen pairs cannot train a network.
    - *Direct multi-step, residual.* All H steps at once as offsets from the last
      context value (no teacher forcing, so no train/rollout mismatch); an untrained
      net is persistence.
    - *Early stopping.* The last ``VALID_FRACTION`` of the pairs (whole windows, up to
      one straddling window, since pairs come window by window) is held out; the weights
      with the lowest held-out MSE, checked every ``EVAL_EVERY`` steps, are kept, so more
      ``steps`` never means a worse model. AdamW with weight decay and a cosine schedule
      to zero, in the engine (:func:`neurossl.train.engine.train`) with the best
      weights kept in memory: a fit takes seconds, so it is not checkpointed.
    """

    net_class: type[nn.Module] = nn.Module
    slides = True

    def _build(self, n_neurons: int, context: int) -> nn.Module:
        hidden = int(self.hparams["hidden"])
        return self.net_class(n_neurons, context, self.horizon, hidden)

    def _fit(self, context: np.ndarray, future: np.ndarray, seed: int, device: str) -> None:
        self.norm = Normalizer.fit(context, future)
        self.shape = (context.shape[2], context.shape[1])
        torch.manual_seed(seed)
        net = self._build(*self.shape)
        x = torch.as_tensor(self.norm.forward(context), dtype=torch.float32)
        y = torch.as_tensor(self.norm.forward(future), dtype=torch.float32)
        n_valid = round(VALID_FRACTION * x.shape[0]) if x.shape[0] >= 10 else 0
        n_train = x.shape[0] - n_valid
        batch = int(self.hparams["batch_size"])
        rows = RandomRows({"context": x[:n_train], "future": y[:n_train]}, batch, seed)
        held = [{"context": x[n_train:], "future": y[n_train:]}] if n_valid else None
        settings = TrainConfig(
            max_steps=int(self.hparams["steps"]),
            lr=float(self.hparams["lr"]),
            weight_decay=WEIGHT_DECAY,
            warmup_steps=0,
            lr_floor=0.0,
            betas=DEFAULT_BETAS,
            grad_clip=1.0,
            batch_size=batch,
            eval_every=EVAL_EVERY,
            seed=seed,
            desc="forecaster",
        )
        train(net, _forecast_loss, rows, held, settings, None, None, device)
        self.net = net.cpu().eval()

    def _predict(self, context: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(self.norm.forward(context), dtype=torch.float32)
            z = self.net(x).double().numpy()
        return self.norm.inverse(z)

    def _state(self) -> dict[str, Any]:
        return {
            "norm": self.norm.state(),
            "n_neurons": self.shape[0],
            "context": self.shape[1],
            "net": self.net.state_dict(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.norm = Normalizer.from_state(state["norm"])
        self.shape = (int(state["n_neurons"]), int(state["context"]))
        self.net = self._build(*self.shape)
        self.net.load_state_dict(state["net"])
        self.net.eval()


class GRUForecaster(TorchForecaster):
    net_class = GRUNet


class POCOForecaster(TorchForecaster):
    net_class = POCONet


FORECASTERS: dict[str, type[Forecaster]] = {
    "mean": MeanForecaster,
    "persistence": PersistenceForecaster,
    "linear_ar": LinearARForecaster,
    "linear": PopulationRidgeForecaster,
    "rnn": GRUForecaster,
    "poco": POCOForecaster,
}


def make_forecaster(method: str, hparams: dict[str, Any]) -> Forecaster:
    if method not in FORECASTERS:
        raise ValueError(
            f"method {method!r} has no forecaster; expected one of {sorted(FORECASTERS)}"
        )
    return FORECASTERS[method](hparams)


def _forecast_loss(
    net: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE of every predicted (z-scored) future step."""
    return nn.functional.mse_loss(net(batch["context"]), batch["future"]), {}


def _order(hparams: dict[str, Any], context: int) -> int:
    order = int(hparams["ar_order"])
    if not 1 <= order <= context:
        raise ValueError(f"hparam 'ar_order' must be in [1, context={context}], got {order}")
    return order


def _check_pair(context: np.ndarray, future: np.ndarray) -> None:
    if context.ndim != 3 or future.ndim != 3 or context.shape[::2] != future.shape[::2]:
        raise ValueError(
            f"forecaster needs context [W, C, N] and future [W, H, N], got {context.shape} "
            f"and {future.shape}"
        )
