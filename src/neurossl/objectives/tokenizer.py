"""Training CalM's tokenizer and scoring its round trip.

The tokenizer's objective (reconstruction of single-neuron traces plus the quantiser's
auxiliary loss, temperature annealed) lives here, above the model
(:mod:`neurossl.models.tokenizer`), so the model module holds no training loop and
imports neither the optimiser nor the metrics. It trains in the engine
(:func:`neurossl.train.engine.train`) like every other model, with Adam's default betas,
a constant LR and no gradient clipping, no validation and no checkpoint: a fit takes
seconds and the stage that calls it is rerun whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurossl.eval.metrics import r2
from neurossl.models.tokenizer import Tokenizer, TokenizerConfig, reconstruct
from neurossl.train.engine import TrainConfig, train
from neurossl.train.optim import DEFAULT_BETAS
from neurossl.train.sources import RandomRows


@dataclass(frozen=True)
class FitConfig:
    """Tokenizer training: Adam, temperature annealed exponentially tau_start -> tau_end."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    tau_start: float = 1.0
    tau_end: float = 0.3
    seed: int = 0
    progress: bool = False


def fit_tokenizer(
    traces: np.ndarray, config: TokenizerConfig, fit: FitConfig, device: str = "cpu"
) -> Tokenizer:
    """Train a tokenizer on normalised training windows ``traces`` [W, T, N] (N may be
    padded with NaN, e.g. windows of sessions with fewer neurons).

    Batches are single-neuron traces (the tokenizer never looks across neurons), so
    windows of every session are pooled into one [M, T] array of neuron traces.
    """
    per_neuron = _neuron_traces(traces)
    torch.manual_seed(fit.seed)
    model = Tokenizer(config)
    decay = (fit.tau_end / fit.tau_start) ** (1 / max(1, fit.steps - 1))

    def anneal(step: int) -> None:
        model.quantizer.temperature = fit.tau_start * decay**step

    rows = RandomRows({"trace": torch.from_numpy(per_neuron)}, fit.batch_size, fit.seed)
    settings = TrainConfig(
        max_steps=fit.steps,
        lr=fit.lr,
        weight_decay=0.0,  # Adam
        warmup_steps=0,
        lr_floor=1.0,
        betas=DEFAULT_BETAS,
        grad_clip=0.0,
        batch_size=fit.batch_size,
        eval_every=fit.steps,
        seed=fit.seed,
        progress=fit.progress,
        desc="tokenizer",
        before_step=anneal,
    )
    train(model, _reconstruction_loss, rows, None, settings, None, None, device)
    model.eval()
    return model


def _reconstruction_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE of the reconstructed whole patches plus the quantiser's auxiliary loss."""
    traces = batch["trace"][:, :, None]  # [B, T, 1]: one neuron per row
    recon, _, aux = model(traces)
    return F.mse_loss(recon, traces[:, : recon.shape[1]]) + aux, {}


def _neuron_traces(traces: np.ndarray) -> np.ndarray:
    traces = np.asarray(traces, dtype=np.float32)
    if traces.ndim != 3:
        raise ValueError(f"tokenizer training needs windows [W, T, N], got shape {traces.shape}")
    per_neuron = traces.transpose(0, 2, 1).reshape(-1, traces.shape[1])
    per_neuron = per_neuron[np.isfinite(per_neuron).all(axis=1)]
    if per_neuron.shape[0] == 0:
        raise ValueError("tokenizer training got no finite neuron trace")
    return np.ascontiguousarray(per_neuron)


def tokenizer_report(tokenizer: Tokenizer, traces: np.ndarray) -> dict[str, float]:
    """Reconstruction quality and vocabulary use on normalised windows [W, T, N].

    ``r2`` is :func:`neurossl.eval.metrics.r2` on [W*T, N]: each neuron's R^2 over all its
    frames, averaged over neurons (padding and frames after the last patch excluded).
    ``perplexity`` is exp(entropy) of the code frequencies (K when every code is equally
    used) and ``code_usage`` the share of the K codes used at least once.
    """
    traces = np.asarray(traces, dtype=np.float32)
    recon, codes = reconstruct(tokenizer, traces)
    n = traces.shape[-1]
    target = np.where(np.isnan(recon), np.nan, traces)
    real = np.isfinite(traces).all(axis=1)  # [W, N]: real neurons of each window
    used = codes.transpose(0, 2, 1)[real].ravel()
    counts = np.bincount(used, minlength=tokenizer.vocab_size)
    freq = counts / max(1, counts.sum())
    entropy = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    valid = ~np.isnan(target)
    return {
        "r2": r2(np.nan_to_num(recon).reshape(-1, n), target.reshape(-1, n)),
        "mse": float(np.mean((recon[valid] - target[valid]) ** 2)),
        "perplexity": float(math.exp(entropy)),
        "code_usage": float(np.mean(counts > 0)),
        "vocab_size": float(tokenizer.vocab_size),
    }
