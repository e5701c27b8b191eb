"""OWL-QN: the L1 optimality conditions, scikit-learn's solutions (liblinear's
L1 logistic regression, Lasso) to 1e-8 with the same nonzero pattern, exact
zeros, unpenalized variables, float32, bad input."""

import warnings

import numpy as np
import pytest

import fastopt
from problems import l1_classification, l1_logistic, lasso_loss, sparse_regression

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import Lasso, LogisticRegression  # noqa: E402


def assert_l1_optimal(fun, w, c, tol):
    """0 is in the subdifferential: |g_i| <= c at w_i = 0, g_i = -c sign(w_i) elsewhere."""
    g = fun(w)[1]
    zero = w == 0
    assert np.all(np.abs(g[zero]) <= c + tol)
    np.testing.assert_allclose(g[~zero], -c * np.sign(w[~zero]), rtol=0, atol=tol)


@pytest.mark.parametrize("sparse_design", [False, True])
@pytest.mark.parametrize(("n_samples", "n_features"), [(300, 40), (400, 1000)])
def test_logistic_matches_liblinear(n_samples, n_features, sparse_design):
    x, labels = l1_classification(n_samples, n_features, sparse_design, seed=n_features)
    c_svm = 0.5  # liblinear: ||w||_1 + C * sum log(1 + exp(-y x'w))
    fun = l1_logistic(x, labels, c_svm)
    res = fastopt.owlqn(fun, np.zeros(n_features), l1=1.0, gtol=1e-10, ftol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's deprecation of penalty=
        ref = LogisticRegression(penalty="l1", C=c_svm, solver="liblinear", fit_intercept=False, tol=1e-9,
                                 max_iter=100000).fit(x, (labels > 0).astype(int)).coef_.ravel()
    f_ref = fun(ref)[0] + np.abs(ref).sum()
    assert res.fun <= f_ref + 1e-8 * abs(f_ref)
    np.testing.assert_array_equal(res.x != 0, ref != 0)
    assert np.count_nonzero(res.x == 0) > 0  # exact zeros
    assert_l1_optimal(fun, res.x, 1.0, 1e-6)


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_lasso_matches_scikit_learn(alpha):
    x, y, _ = sparse_regression(seed=1, n=200, d=30, active=5)
    fun = lasso_loss(x, y)
    res = fastopt.minimize(fun, np.zeros(30), method="owlqn", options=dict(l1=alpha, gtol=1e-12, ftol=0))
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(x, y).coef_
    f_ref = fun(ref)[0] + alpha * np.abs(ref).sum()
    assert res.success, res.message
    assert abs(res.fun - f_ref) <= 1e-8 * abs(f_ref)
    np.testing.assert_array_equal(res.x != 0, ref != 0)
    assert_l1_optimal(fun, res.x, alpha, 1e-8)


@pytest.mark.parametrize("form", ["mask", "indices", "slice"])
def test_unpenalized_intercept(form):
    x, labels = l1_classification(300, 20, False, seed=5)
    xi = np.hstack([x, np.ones((300, 1))])  # the last variable is the intercept
    labels = np.where(x[:, 0] + 2.0 > 0.5 * np.random.default_rng(0).standard_normal(300) + 1.5, 1.0, -1.0)
    fun = l1_logistic(xi, labels)
    spec = {"mask": np.eye(1, 21, 20, dtype=bool)[0], "indices": [20], "slice": slice(20, None)}[form]
    res = fastopt.owlqn(fun, np.zeros(21), l1=20.0, unpenalized=spec, gtol=1e-9, ftol=0)
    assert res.success, res.message
    g = fun(res.x)[1]
    assert abs(g[20]) <= 1e-6  # the intercept: a plain stationary point
    assert_l1_optimal(lambda w: (0.0, fun(np.append(w, res.x[20]))[1][:20]), res.x[:20], 20.0, 1e-6)
    assert res.x[20] != 0
    assert np.count_nonzero(res.x[:20]) < 20


def test_no_penalty_is_the_smooth_minimum():
    x, labels = l1_classification(200, 10, False, seed=2)
    fun = l1_logistic(x, labels)
    l2 = lambda w: (fun(w)[0] + 0.5 * w @ w, fun(w)[1] + w)  # noqa: E731  strictly convex
    res = fastopt.owlqn(l2, np.zeros(10), l1=0.0, gtol=1e-9, ftol=0)
    ref = fastopt.lbfgs(l2, np.zeros(10), gtol=1e-9, ftol=0)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)


def test_float32():
    x, y, _ = sparse_regression(seed=2)
    fun64 = lasso_loss(x, y)

    def fun32(w):
        f, g = fun64(w.astype(np.float64))
        return f, g.astype(np.float32)

    res = fastopt.owlqn(fun32, np.zeros(30, dtype=np.float32), l1=0.1, gtol=1e-4)
    assert res.x.dtype == np.float32
    ref = fastopt.owlqn(fun64, np.zeros(30), l1=0.1, gtol=1e-10, ftol=0)
    np.testing.assert_array_equal(res.x != 0, ref.x != 0)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-3)


def test_numerical_trouble_returns_best_point():
    def fun(w):
        f = float(np.sum((w - 1) ** 2))
        return (np.inf if np.abs(w).max() > 0.9 else f), 2 * (w - 1)

    res = fastopt.owlqn(fun, np.zeros(3), l1=0.1)
    assert np.isfinite(res.fun)
    assert np.abs(res.x).max() <= 0.9


def test_bad_input():
    fun = lasso_loss(np.eye(3), np.ones(3))
    with pytest.raises(ValueError, match="invalid l1"):
        fastopt.owlqn(fun, np.zeros(3), l1=-1.0)
    with pytest.raises(ValueError, match="invalid l1"):
        fastopt.owlqn(fun, np.zeros(3), l1=np.nan)
    with pytest.raises(TypeError, match="l1 must be a number"):
        fastopt.owlqn(fun, np.zeros(3), l1="0.1")
    with pytest.raises(ValueError, match="shape"):
        fastopt.owlqn(fun, np.zeros(3), l1=0.1, unpenalized=np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match="outside"):
        fastopt.owlqn(fun, np.zeros(3), l1=0.1, unpenalized=[3])
    with pytest.raises(TypeError, match="unpenalized"):
        fastopt.owlqn(fun, np.zeros(3), l1=0.1, unpenalized=[0.5])
    with pytest.raises(ValueError, match="unknown OWL-QN options.*line_search"):
        fastopt.minimize(fun, np.zeros(3), method="owlqn", options=dict(l1=0.1, line_search="backtracking"))
    with pytest.raises(TypeError, match="dtype"):
        fastopt.owlqn(fun, np.zeros(3, dtype=int), l1=0.1)
