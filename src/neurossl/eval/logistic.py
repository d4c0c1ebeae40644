"""L2 logistic regression in numpy: L-BFGS fits along a path of C, C chosen by stratified CV.

Why not scikit-learn: importing it (and the scipy.stats it pulls in) costs ~2 s, paid by
every evaluation job of the workflow, since each is a fresh process; at the default size
that is more than the fits themselves. The estimator is scikit-learn's
``LogisticRegression(C)`` with the lbfgs solver (checked against it in the tests):

- objective: C * sum of cross-entropies + 0.5 * ||W||^2, intercepts not penalised;
- two classes: one logit (class 1 against class 0), as scikit-learn does; more: one
  logit per class (multinomial);
- C is chosen by stratified K-fold on held-out log-loss (averaged over folds, the first
  C wins ties), the path of C warm-starts each fit from the previous one, and the final
  fit on all rows starts from the folds' mean solution at the chosen C.

The objective is minimised in its per-sample form (divided by C * n), so the gradient
tolerance means the same for any number of rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

#: Stop when every gradient entry of the per-sample objective is below this (scikit-learn's
#: default is 1e-4), or when a step lowers the objective by less than ``RELATIVE_DECREASE``
#: of its value (scipy's L-BFGS-B ``ftol`` as scikit-learn sets it): weakly penalised fits
#: of separable classes are flat along the margin and never reach a tight gradient bound.
GRADIENT_TOLERANCE = 1e-6
RELATIVE_DECREASE = 64 * np.finfo(float).eps
MAX_ITERATIONS = 5000
#: L-BFGS memory (curvature pairs kept).
MEMORY = 10
#: Armijo sufficient-decrease constant of the backtracking line search.
ARMIJO = 1e-4

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


def stratified_folds(
    labels: np.ndarray, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs with every class spread evenly over the folds.

    Each class's rows are shuffled with ``seed`` and dealt to the folds in turn, so a
    fold's class shares match the data's to within one row per class.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(labels.shape[0], dtype=np.int64)
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        fold[rows] = np.arange(rows.size) % n_folds
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_folds)]


def fit_logistic(
    z: np.ndarray, y: np.ndarray, n_classes: int, c: float, init: np.ndarray | None = None
) -> np.ndarray:
    """Parameters [K', F + 1] (weights, then intercept) of one fit at ``c``.

    ``z`` is [n, F] (already standardised), ``y`` holds class indices 0..n_classes-1;
    K' is 1 for two classes, else ``n_classes``.
    """
    outputs = 1 if n_classes == 2 else n_classes
    start = np.zeros((outputs, z.shape[1] + 1)) if init is None else init
    theta = _lbfgs(_objective(z, y, n_classes, c), start.ravel())
    return theta.reshape(outputs, z.shape[1] + 1)


def mean_log_loss(z: np.ndarray, y: np.ndarray, params: np.ndarray) -> float:
    """Mean cross-entropy of the labels ``y`` under ``params`` (from :func:`fit_logistic`)."""
    log_p = log_probabilities(z, params)
    return float(-log_p[np.arange(y.size), y].mean())


def choose_c(
    z: np.ndarray, y: np.ndarray, n_classes: int, cs: Sequence[float], n_folds: int, seed: int
) -> tuple[float, np.ndarray]:
    """The C with the best mean held-out log-loss, and the folds' mean fit at it."""
    losses = np.zeros((n_folds, len(cs)))
    fits: list[list[np.ndarray]] = []
    for k, (train, held_out) in enumerate(stratified_folds(y, n_folds, seed)):
        params, path = None, []
        for i, c in enumerate(cs):
            params = fit_logistic(z[train], y[train], n_classes, c, params)
            losses[k, i] = mean_log_loss(z[held_out], y[held_out], params)
            path.append(params)
        fits.append(path)
    best = int(np.argmin(losses.mean(axis=0)))
    return float(cs[best]), np.mean([path[best] for path in fits], axis=0)


def log_probabilities(z: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Class log-probabilities [n, K] of standardised rows under ``params``."""
    scores = z @ params[:, :-1].T + params[:, -1]
    if params.shape[0] == 1:  # binary: class 0 is the reference logit 0
        scores = np.concatenate((np.zeros_like(scores), scores), axis=1)
    top = scores.max(axis=1, keepdims=True)
    return scores - top - np.log(np.exp(scores - top).sum(axis=1, keepdims=True))


def _objective(z: np.ndarray, y: np.ndarray, n_classes: int, c: float) -> FunGrad:
    n, features = z.shape
    outputs = 1 if n_classes == 2 else n_classes
    rows = np.arange(n)
    penalty = 1.0 / (c * n)

    def fun_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = theta.reshape(outputs, features + 1)
        weights = params[:, :-1]
        log_p = log_probabilities(z, params)
        loss = -log_p[rows, y].mean() + 0.5 * penalty * np.sum(weights**2)
        residual = np.exp(log_p)
        residual[rows, y] -= 1.0
        residual = residual[:, 1:] if outputs == 1 else residual
        residual /= n
        grad = np.empty_like(params)
        grad[:, :-1] = residual.T @ z + penalty * weights
        grad[:, -1] = residual.sum(axis=0)
        return float(loss), grad.ravel()

    return fun_grad


def _lbfgs(fun_grad: FunGrad, x: np.ndarray) -> np.ndarray:
    """Minimise a smooth convex function: L-BFGS directions, backtracking Armijo steps."""
    f, g = fun_grad(x)
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(MAX_ITERATIONS):
        if np.abs(g).max() <= GRADIENT_TOLERANCE:
            return x
        direction = -_inverse_hessian_times(g, pairs)
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction (lost curvature): restart from -g
            pairs.clear()
            direction, slope = -g, -float(g @ g)
        step = 1.0 if pairs else min(1.0, 1.0 / float(np.abs(g).sum()))
        while True:
            x_new = x + step * direction
            f_new, g_new = fun_grad(x_new)
            if f_new <= f + ARMIJO * step * slope:
                break
            step *= 0.5
            if step < 1e-20:  # no decrease left at machine precision: converged
                return x
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12:
            pairs.append((s, y))
            del pairs[:-MEMORY]
        decrease = f - f_new
        x, f, g = x_new, f_new, g_new
        if decrease <= RELATIVE_DECREASE * max(abs(f), abs(f + decrease), 1.0):
            return x
    warnings.warn(
        f"logistic regression: L-BFGS stopped after {MAX_ITERATIONS} iterations with "
        f"gradient {np.abs(g).max():.2e} > {GRADIENT_TOLERANCE:g}",
        RuntimeWarning,
        stacklevel=3,
    )
    return x


def _inverse_hessian_times(g: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The L-BFGS two-loop recursion: the inverse-Hessian estimate applied to ``g``."""
    q = g.copy()
    history = []
    for s, y in reversed(pairs):
        rho = 1.0 / float(y @ s)
        alpha = rho * float(s @ q)
        q -= alpha * y
        history.append((rho, alpha, s, y))
    if pairs:
        s, y = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for rho, alpha, s, y in reversed(history):
        q += (alpha - rho * float(y @ q)) * s
    return q
