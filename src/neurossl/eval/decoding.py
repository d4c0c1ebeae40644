"""Linear decoders of trial labels and behaviour, shared by every method.

Every method's representation (or a baseline's raw activity) is scored with the same
decoders, so differences in the report come from the features, not from the probe.
Regularisation is chosen by cross-validation on the *train* features only; the test
features are seen once, by ``predict``. Features are standardised with train statistics
for the same reason.

- Discrete labels: scikit-learn's L2 logistic regression, C chosen by stratified K-fold
  (shuffled with ``seed``) on log-loss, which is smoother than accuracy on small folds.
- Continuous targets: ridge, alpha chosen by K-fold over *contiguous* blocks of the
  train samples. Rows are time bins of windows, and neighbouring bins are
  autocorrelated: shuffled folds would reward under-regularised fits. The ridge is
  :func:`neurossl.eval.linear_maps.fit_ridge_cv` (all alphas of a fold from one
  decomposition; the same estimator as scikit-learn's ``RidgeCV`` with explicit folds,
  ~40x faster).

Fitted decoders are returned as :class:`~neurossl.eval.linear_maps.LinearMap` so a
method can save them as tensors and score later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurossl.eval.linear_maps import LinearMap, fit_ridge_cv, group_folds, standardise
from neurossl.eval.metrics import accuracy, balanced_accuracy, r2

LOGISTIC_CS = np.logspace(-3, 3, 7)
MAX_FOLDS = 5
#: Room for weakly penalised fits of separable classes (scikit-learn's default is 100).
LOGISTIC_MAX_ITER = 1000


def fit_discrete(train_x: np.ndarray, train_y: np.ndarray, seed: int) -> LinearMap:
    """Standardise + L2 logistic regression with C chosen by stratified CV on train."""
    x, y = _features(train_x, "train_x"), np.asarray(train_y).ravel()
    _same_rows(x, y, "train")
    classes, index, counts = np.unique(y, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"train_y has one class ({classes.tolist()}); nothing to decode")
    folds = min(MAX_FOLDS, int(counts.min()))
    if folds < 2:
        raise ValueError(
            f"class {classes[counts.argmin()]!r} has {counts.min()} training sample(s); "
            "stratified cross-validation needs at least 2 per class"
        )
    mean, scale, z = standardise(x)
    fitted = logistic_cv(z, index, folds, seed)
    coef = np.asarray(fitted.coef_, dtype=np.float64).reshape(-1, z.shape[1])
    intercept = np.asarray(fitted.intercept_, dtype=np.float64).reshape(-1)
    return LinearMap(mean, scale, coef, intercept, classes)


def logistic_cv(z: np.ndarray, y: np.ndarray, n_folds: int, seed: int) -> Any:
    """scikit-learn's ``LogisticRegressionCV`` on standardised rows, refit at the best C.

    Two classes get one logit (class 1 against class 0), more get one per class.
    """
    # Imported here: only decoding jobs pay scikit-learn's import time.
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    return LogisticRegressionCV(
        Cs=LOGISTIC_CS,
        cv=StratifiedKFold(n_folds, shuffle=True, random_state=seed),
        l1_ratios=(0.0,),
        scoring="neg_log_loss",
        max_iter=LOGISTIC_MAX_ITER,
        use_legacy_attributes=False,
    ).fit(z, y)


def fit_continuous(train_x: np.ndarray, train_y: np.ndarray) -> LinearMap:
    """Standardise + ridge with alpha chosen by contiguous K-fold CV on train (NaN rows dropped)."""
    x, y = _features(train_x, "train_x"), np.asarray(train_y, dtype=np.float64).ravel()
    _same_rows(x, y, "train")
    keep = ~np.isnan(y)
    if keep.sum() < 2 * MAX_FOLDS:
        raise ValueError(
            f"train_y has {int(keep.sum())} non-NaN samples; need >= {2 * MAX_FOLDS} for CV"
        )
    blocks = np.arange(int(keep.sum())) * MAX_FOLDS // int(keep.sum())
    return fit_ridge_cv(x[keep], y[keep], group_folds(blocks, MAX_FOLDS))


@dataclass(frozen=True)
class Decoded:
    """A decoder's scores on test rows and the arrays they were computed from."""

    values: dict[str, float]
    #: Decoded label (classifier) or value (regression) of every test row.
    pred: np.ndarray
    target: np.ndarray
    #: Class probabilities [rows, classes] and the class labels in column order.
    proba: np.ndarray | None = None
    classes: np.ndarray | None = None


def decode_discrete(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int,
) -> Decoded:
    """Fit on train, score on test: ``bacc`` (balanced accuracy) and ``acc``."""
    x, y = _features(test_x, "test_x"), np.asarray(test_y).ravel()
    _same_rows(x, y, "test")
    model = fit_discrete(train_x, train_y, seed)
    pred = model.predict(x)
    values = {"bacc": balanced_accuracy(y, pred), "acc": accuracy(y, pred)}
    return Decoded(values, pred, y, model.predict_proba(x), model.classes)


def decode_continuous(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int,
) -> Decoded:
    """Fit on train, score on test: ``r2`` over the non-NaN test targets.

    ``seed`` is accepted so both decoders are called alike; the contiguous folds of the
    ridge need no randomness.
    """
    del seed
    x, y = _features(test_x, "test_x"), np.asarray(test_y, dtype=np.float64).ravel()
    _same_rows(x, y, "test")
    model = fit_continuous(train_x, train_y)
    pred = model.predict(x)[:, 0]
    return Decoded({"r2": r2(pred, y)}, pred, y)


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be [samples, features], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _same_rows(x: np.ndarray, y: np.ndarray, split: str) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{split}_x has {x.shape[0]} rows but {split}_y has {y.shape[0]}")
