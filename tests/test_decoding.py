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
    original = decoding.logistic_cv

    def spy(z, *args):
        seen.append(np.asarray(z).copy())
        return original(z, *args)

    def ridge_spy(x, y, folds):
        seen.append(np.asarray(x).copy())
        return original_ridge(x, y, folds)

    original_ridge = decoding.fit_ridge_cv
    monkeypatch.setattr(decoding, "logistic_cv", spy)
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


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_decoder_one_logit_for_two_classes_and_labels_kept(n_classes):
    """Binary fits have one logit (class 1 against 0), as saved decoders expect; labels
    are returned in their own values, not as indices."""
    rng = np.random.default_rng(n_classes)
    index = rng.integers(0, n_classes, 90)
    labels = np.array(["left", "right", "up", "down"])[:n_classes][index]
    x = rng.normal(size=(90, 5)) + 2.0 * np.eye(5)[index]
    fitted = decoding.fit_discrete(x, labels, seed=0)
    assert fitted.coef.shape == (1 if n_classes == 2 else n_classes, 5)
    assert fitted.intercept.shape == (fitted.coef.shape[0],)
    predicted = fitted.predict(x)
    assert set(predicted) <= set(labels) and (predicted == labels).mean() > 0.8
