"""Decoders: they work, are deterministic, and never fit on test data."""

from __future__ import annotations

import numpy as np
import pytest

from neurossl.eval import decoding


def _classification(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)) + 1.5 * np.eye(6)[y]
    return x, y


def test_discrete_decoder_is_accurate_and_deterministic():
    train_x, train_y = _classification(0, 120)
    test_x, test_y = _classification(1, 60)
    first = decoding.decode_discrete(train_x, train_y, test_x, test_y, seed=0)
    assert set(first.values) == {"bacc", "acc"}
    assert first.values["bacc"] > 0.6  # chance is 1/3
    again = decoding.decode_discrete(train_x, train_y, test_x, test_y, seed=0)
    assert again.values == first.values
    np.testing.assert_array_equal(again.pred, first.pred)


def test_discrete_decoder_returns_what_its_scores_came_from():
    """Predicted labels, their probabilities (scikit-learn's, for the same fit) and targets."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    for n_classes in (2, 3):
        train_x, train_y = _classification(5, 120)
        test_x, test_y = _classification(6, 60)
        train_y, test_y = train_y % n_classes, test_y % n_classes
        out = decoding.decode_discrete(train_x, train_y, test_x, test_y, seed=0)
        assert out.proba.shape == (60, n_classes)
        np.testing.assert_allclose(out.proba.sum(1), 1.0)
        np.testing.assert_array_equal(out.classes[out.proba.argmax(1)], out.pred)
        np.testing.assert_array_equal(out.target, test_y)
        assert out.values["bacc"] == balanced_accuracy_score(test_y, out.pred)
        model = decoding.fit_discrete(train_x, train_y, seed=0)
        z = (test_x - model.x_mean) / model.x_scale
        reference = LogisticRegression().fit(z, test_y)  # any fit: only the link is checked
        reference.coef_, reference.intercept_ = model.coef, model.intercept
        np.testing.assert_allclose(model.predict_proba(test_x), reference.predict_proba(z))


def test_continuous_decoder_drops_nan_targets():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    y = x @ np.array([1.0, -2.0, 0.0, 0.5]) + rng.normal(scale=0.3, size=300)
    y[::7] = np.nan
    out = decoding.decode_continuous(x[:200], y[:200], x[200:], y[200:], seed=0)
    assert out.values["r2"] > 0.9
    assert out.pred.shape == out.target.shape == (100,)


def test_fitting_never_sees_test_data(monkeypatch):
    seen: list[np.ndarray] = []
    original = decoding.choose_c

    def spy(z, *args):
        seen.append(np.asarray(z).copy())
        return original(z, *args)

    def ridge_spy(x, y, folds):
        seen.append(np.asarray(x).copy())
        return original_ridge(x, y, folds)

    original_ridge = decoding.fit_ridge_cv
    monkeypatch.setattr(decoding, "choose_c", spy)
    monkeypatch.setattr(decoding, "fit_ridge_cv", ridge_spy)
    train_x, train_y = _classification(3, 90)
    test_x, test_y = _classification(4, 30)
    test_x = test_x + 100.0  # rows that cannot occur in train
    decoding.decode_discrete(train_x, train_y, test_x, test_y, seed=0)
    decoding.decode_continuous(train_x, train_x[:, 0], test_x, test_x[:, 0], seed=0)
    assert len(seen) == 2
    for x in seen:
        assert x.shape[0] <= train_x.shape[0]
        assert np.abs(x).max() < 50.0


def test_clear_errors():
    x, y = _classification(5, 30)
    with pytest.raises(ValueError, match="one class"):
        decoding.fit_discrete(x, np.zeros(30), seed=0)
    y_rare = y.copy()
    y_rare[0] = 7
    with pytest.raises(ValueError, match="at least 2 per class"):
        decoding.fit_discrete(x, y_rare, seed=0)
    with pytest.raises(ValueError, match="rows"):
        decoding.decode_discrete(x, y, x[:5], y, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        decoding.fit_continuous(np.full((30, 2), np.nan), y)


@pytest.mark.parametrize("rows, features", [(120, 8), (30, 50)], ids=["tall", "wide"])
def test_ridge_cv_matches_sklearn(rows, features):
    """Both solvers of the ridge path (Gram eigh for tall fits, SVD for wide) are exact."""
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.preprocessing import StandardScaler

    from neurossl.eval.linear_maps import RIDGE_ALPHAS, fit_ridge_cv, group_folds

    rng = np.random.default_rng(6)
    x = rng.normal(size=(rows, features)) * rng.uniform(0.5, 3, features)
    y = x @ rng.normal(size=(features, 3)) + rng.normal(scale=2.0, size=(rows, 3))
    folds = group_folds(np.repeat(np.arange(rows // 10), 10))
    fitted = fit_ridge_cv(x, y, folds)
    z = StandardScaler().fit_transform(x)
    reference = RidgeCV(alphas=RIDGE_ALPHAS, cv=folds, scoring="neg_mean_squared_error").fit(z, y)
    exact = Ridge(alpha=reference.alpha_).fit(z, y)
    np.testing.assert_allclose(fitted.coef, exact.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.predict(x), exact.predict(z), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("n_classes, features", [(2, 20), (3, 6), (4, 40)])
@pytest.mark.parametrize("c", [1e-3, 1.0, 100.0])
def test_logistic_fit_matches_sklearn(n_classes, features, c):
    """LogisticRegression(C)'s objective: one logit for two classes, else one per class."""
    from sklearn.linear_model import LogisticRegression

    from neurossl.eval.logistic import fit_logistic, log_probabilities

    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 90)
    x = rng.normal(size=(90, features)) + np.eye(features)[y]
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    params = fit_logistic(z, y, n_classes, c)
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=100_000).fit(z, y)
    probabilities = np.exp(log_probabilities(z, params))
    np.testing.assert_allclose(probabilities, reference.predict_proba(z), atol=1e-4)
    if c <= 1.0:  # at C = 100 the optimum is flat along the margin: compare outputs only
        np.testing.assert_allclose(params[:, :-1], reference.coef_, atol=1e-4)
        np.testing.assert_allclose(params[:, -1], reference.intercept_, atol=1e-4)


def test_logistic_cv_picks_sklearns_c_on_the_same_folds():
    from sklearn.linear_model import LogisticRegressionCV

    from neurossl.eval.logistic import stratified_folds

    for seed in range(3):
        x, y = _classification(10 + seed, 80)
        folds = stratified_folds(y, decoding.MAX_FOLDS, seed)
        ours = decoding.fit_discrete(x, y, seed)
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        reference = LogisticRegressionCV(
            Cs=decoding.LOGISTIC_CS, cv=folds, l1_ratios=(0.0,), scoring="neg_log_loss",
            use_legacy_attributes=False, max_iter=10_000, tol=1e-10,
        ).fit(z, y)  # fmt: skip
        np.testing.assert_allclose(ours.coef, reference.coef_, atol=1e-4)


def test_stratified_folds_partition_rows_and_keep_class_shares():
    from neurossl.eval.logistic import stratified_folds

    labels = np.repeat([0, 1, 2], [20, 11, 9])
    folds = stratified_folds(labels, 4, seed=0)
    held_out = np.concatenate([h for _, h in folds])
    assert np.array_equal(np.sort(held_out), np.arange(labels.size))
    for train, held in folds:
        assert np.intersect1d(train, held).size == 0
        counts = np.bincount(labels[held], minlength=3)
        assert np.all(np.abs(counts - np.bincount(labels) / 4) <= 1)
    assert [h.tolist() for _, h in stratified_folds(labels, 4, seed=0)] == [
        h.tolist() for _, h in folds
    ]
