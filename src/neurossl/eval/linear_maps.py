"""Fitted linear maps as plain arrays, and a ridge whose alpha is cross-validated in one pass.

A fitted decoder or baseline is kept as its standardisation and affine map only, so a
finetuned baseline is a ``torch.load(..., weights_only=True)`` file rather than a pickle.

The ridge solves every alpha of a fold from one decomposition of that fold's training
rows (coef = V diag(s / (s^2 + alpha)) U^T y; see :func:`_ridge_path`): a grid of
alphas costs one decomposition per fold instead of one fit per (alpha, fold), which is
what makes per-query ridge maps cheap enough to fit for every region of every held-out
session. Alpha minimises the validation squared error summed over folds and outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

RIDGE_ALPHAS = np.logspace(-3, 5, 9)

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class LinearMap:
    """y = ((x - x_mean) / x_scale) @ coef.T + intercept; optional class labels on top."""

    x_mean: np.ndarray  # [F]
    x_scale: np.ndarray  # [F]
    coef: np.ndarray  # [O, F]
    intercept: np.ndarray  # [O]
    #: For classifiers: the label of each output (binary: [negative, positive]).
    classes: np.ndarray | None = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Continuous output [M, O], or class labels [M] for a classifier."""
        scores = ((np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_scale) @ self.coef.T
        scores = scores + self.intercept
        if self.classes is None:
            return scores
        if self.classes.size == 2 and self.coef.shape[0] == 1:
            return self.classes[(scores[:, 0] > 0).astype(int)]
        return self.classes[scores.argmax(axis=1)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [M, K] of a classifier, columns in ``classes`` order."""
        if self.classes is None:
            raise ValueError("predict_proba needs a classifier (a map with classes)")
        scores = ((np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_scale) @ self.coef.T
        scores = scores + self.intercept
        if self.classes.size == 2 and self.coef.shape[0] == 1:
            scores = np.concatenate([np.zeros_like(scores), scores], axis=1)
        return softmax(scores, axis=1)

    def state(self) -> dict[str, Any]:
        state = {
            "x_mean": torch.from_numpy(self.x_mean),
            "x_scale": torch.from_numpy(self.x_scale),
            "coef": torch.from_numpy(self.coef),
            "intercept": torch.from_numpy(self.intercept),
        }
        if self.classes is not None:
            state["classes"] = torch.from_numpy(self.classes)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinearMap:
        classes = state.get("classes")
        return cls(
            x_mean=state["x_mean"].numpy(),
            x_scale=state["x_scale"].numpy(),
            coef=state["coef"].numpy(),
            intercept=state["intercept"].numpy(),
            classes=None if classes is None else classes.numpy(),
        )


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, z) of the columns of ``x``; a constant column gets scale 1, not 0.

    The statistics a :class:`LinearMap` stores, so a fitted map applies them to new rows.
    """
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return mean, scale, (x - mean) / scale


def fit_ridge_cv(
    x: np.ndarray, y: np.ndarray, folds: Folds, alphas: np.ndarray = RIDGE_ALPHAS
) -> LinearMap:
    """Ridge on standardised x (y [M] or [M, O]); alpha chosen on ``folds`` of these rows."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"ridge needs x [M, F] and y [M, O] with equal M, got {x.shape}, {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("ridge inputs contain NaN or inf; drop unscored rows first")
    if len(folds) < 2:
        raise ValueError(f"ridge needs >= 2 cross-validation folds, got {len(folds)}")
    mean, scale, z = standardise(x)
    errors = np.zeros(len(alphas))
    for train, valid in folds:
        coefs, intercepts = _ridge_path(z[train], y[train], alphas)
        for i, (coef, intercept) in enumerate(zip(coefs, intercepts, strict=True)):
            errors[i] += np.sum((z[valid] @ coef + intercept - y[valid]) ** 2)
    coefs, intercepts = _ridge_path(z, y, np.array([alphas[int(np.argmin(errors))]]))
    return LinearMap(mean, scale, coefs[0].T.copy(), intercepts[0])


def _ridge_path(
    z: np.ndarray, y: np.ndarray, alphas: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ridge coefficients [F, O] and intercepts [O] for every alpha from one decomposition.

    Rows are time bins, so the fits here are tall (M >> F). For those the eigenvectors of
    the F x F Gram matrix give the same path as the SVD, coef = V diag(1 / (s^2 + alpha))
    V^T Z^T y, at a fraction of the cost: one BLAS product of the rows and an F x F
    ``eigh`` instead of an M x F SVD (4-12x faster at 3,500-20,000 rows, 32-128 features,
    one thread). Every alpha is >= 1e-3 on standardised features, so squaring the
    condition number by forming the Gram matrix costs no accuracy that matters. Wide
    inputs keep the SVD.
    """
    z_mean, y_mean = z.mean(axis=0), y.mean(axis=0)
    zc, yc = z - z_mean, y - y_mean
    if zc.shape[0] >= zc.shape[1]:
        eigenvalues, v = np.linalg.eigh(zc.T @ zc)
        squared = np.clip(eigenvalues, 0.0, None)
        projected = v.T @ (zc.T @ yc)
    else:
        u, s, vt = np.linalg.svd(zc, full_matrices=False)
        v, squared, projected = vt.T, s**2, s[:, None] * (u.T @ yc)
    coefs, intercepts = [], []
    for alpha in alphas:
        coef = v @ (projected / (squared + alpha)[:, None])
        coefs.append(coef)
        intercepts.append(y_mean - z_mean @ coef)
    return coefs, intercepts


def group_folds(groups: np.ndarray, max_folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold splits that never split a group (e.g. the bins of one window).

    Samples of one window are correlated; folds that split them would reward too small
    an alpha. Groups are assigned to folds in order, so contiguous windows stay together.
    """
    labels, inverse = np.unique(groups, return_inverse=True)
    folds = min(max_folds, labels.size)
    if folds < 2:
        raise ValueError(f"cross-validation needs samples from >= 2 groups, got {labels.size}")
    fold_of_group = np.arange(labels.size) * folds // labels.size
    fold = fold_of_group[inverse]
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(folds)]
