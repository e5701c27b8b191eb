"""Dense BFGS: the update against the textbook formula, every direction of a
run against H built from that run's pairs, quadratics, the scale-free
curvature test, float32, thread counts, SciPy's BFGS, bad input. Convergence
on the Moré-Garbow-Hillstrom set is tests/test_lbfgs.py's, for both methods."""

import numpy as np
import pytest
import scipy.optimize

import fastopt
from fastopt import _core
from problems import ill_conditioned_quadratic, logistic_regression, problem_set

PROBLEMS = {p.name: p for p in problem_set()}


def textbook_update(h, s, y):
    """Nocedal & Wright (6.17): H = (I - rho s y') H (I - rho y s') + rho s s'."""
    rho = 1.0 / (s @ y)
    v = np.eye(s.size) - rho * np.outer(y, s)
    return v.T @ h @ v + rho * np.outer(s, s)


@pytest.mark.parametrize("n", [1, 3, 17, 200])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_is_the_textbook_formula(n, dtype):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n))
    h = a @ a.T + n * np.eye(n)  # symmetric positive definite
    s = rng.standard_normal(n)
    y = s + 0.1 * rng.standard_normal(n)  # s'y > 0
    solver = _core.Bfgs(n, np.dtype(dtype))
    solver.update(h, s, y)
    got = solver.inverse_hessian()
    np.testing.assert_allclose(got, textbook_update(h, s, y), rtol=1e-12, atol=1e-12 * np.abs(h).max())
    np.testing.assert_array_equal(got, got.T)  # exactly symmetric


def record_run(fun, x0, **options):
    """The iterates of a BFGS run, x_0 first, and its result."""
    xs = [np.array(x0, dtype=float)]
    res = fastopt.bfgs(fun, x0, callback=lambda x: xs.append(x.astype(float)), **options)
    return xs, res


@pytest.mark.parametrize("problem", ["quadratic", "logistic", "rosenbrock"])
def test_every_direction_is_minus_h_g(problem):
    """Each step s_k is a positive multiple of -H_k g_k, with H_k rebuilt in
    NumPy from the run's own pairs (identity, then (y's/y'y) I before the first
    update, pairs skipped by the curvature test), and the final H is the
    result's hess_inv."""
    if problem == "quadratic":
        fun, x0 = ill_conditioned_quadratic(30, 1e3), np.linspace(-1, 1, 30)
    elif problem == "logistic":
        fun, x0 = logistic_regression(200, 12, seed=3), np.zeros(12)
    else:
        fun, x0 = PROBLEMS["rosenbrock"].fun, PROBLEMS["rosenbrock"].x0
    xs, res = record_run(fun, x0, gtol=1e-9, ftol=0, maxiter=60)
    assert res.nit >= 5
    h = np.eye(x0.size)
    first = True
    checked = 0
    for x, x_next in zip(xs[:-1], xs[1:]):
        g = fun(x)[1]
        d = -h @ g
        s = x_next - x
        alpha = (s @ d) / (d @ d)
        assert alpha > 0
        if np.abs(s).max() > 1e-6 * max(1.0, np.abs(x).max()):  # else s is mostly the rounding of x
            np.testing.assert_allclose(s, alpha * d, rtol=1e-6, atol=1e-6 * np.abs(s).max())
            checked += 1
        y = fun(x_next)[1] - g
        if s @ y > _core.LBFGS_CURVATURE_TOLERANCE * -(g @ s):  # L-BFGS-B's scale-free test
            if first:
                h = (s @ y) / (y @ y) * np.eye(x0.size)
                first = False
            h = textbook_update(h, s, y)
    assert checked >= 5
    np.testing.assert_allclose(res.hess_inv, h, rtol=1e-6, atol=1e-9 * np.abs(h).max())


@pytest.mark.parametrize("n", [2, 10, 50])
def test_quadratics_solved(n):
    """A strictly convex quadratic to gtol 1e-10 (or until f stops changing):
    x within ||A^-1|| * ||g|| of the solution, ||A^-1|| <= 1 here."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n))
    q = a @ a.T + np.eye(n)
    b = rng.standard_normal(n)

    def fun(x):
        return 0.5 * x @ q @ x - b @ x, q @ x - b

    res = fastopt.bfgs(fun, np.zeros(n), gtol=1e-10, ftol=0, first_step="l2")
    assert res.success, res.message
    assert np.linalg.norm(res.jac) <= 1e-5  # f stops changing below that (its rounding)
    assert np.linalg.norm(res.x - np.linalg.solve(q, b)) <= np.linalg.norm(res.jac) * (1 + 1e-6)


def test_float32_runs_in_float32():
    p = PROBLEMS["rosenbrock"]

    def fun32(x):
        f, g = p.fun(x.astype(np.float64))
        return f, g.astype(np.float32)

    res = fastopt.bfgs(fun32, p.x0.astype(np.float32), gtol=1e-3, ftol=0)
    assert res.success, res.message
    assert res.x.dtype == np.float32
    assert res.jac.dtype == np.float32
    np.testing.assert_allclose(res.x, [1, 1], atol=2e-3)


def test_same_result_for_every_thread_count():
    """Rows of H are split over threads (n*n above the grain): no bit changes."""
    fun, x0 = logistic_regression(400, 300, seed=1), np.zeros(300)
    runs = [fastopt.bfgs(fun, x0, num_threads=t, gtol=1e-8, ftol=0, maxiter=40) for t in (1, 2)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    np.testing.assert_array_equal(runs[0].hess_inv, runs[1].hess_inv)
    assert runs[0].nit == runs[1].nit


def test_close_to_scipy_bfgs():
    """Same method, same Wolfe constants (SciPy's line search differs): same
    minimizer, and a comparable number of evaluations."""
    p = PROBLEMS["rosenbrock"]
    ours = fastopt.minimize(p.fun, p.x0, method="bfgs", options=dict(gtol=1e-6, ftol=0, first_step="l2"))
    theirs = scipy.optimize.minimize(p.fun, p.x0, jac=True, method="BFGS", options=dict(gtol=1e-6))
    np.testing.assert_allclose(ours.x, theirs.x, atol=1e-5)
    assert ours.nfev <= 2 * theirs.nfev


def test_scale_free_curvature_test_on_badly_scaled_problems():
    """The test s'y > eps*(-g's) keeps the pairs of Powell's and Brown's badly
    scaled functions (the former test, s'y > 1e-10 y'y, dropped almost all of
    them there): SciPy's BFGS evaluation counts, within 10%."""
    for name, scipy_nfev in (("powell_badly_scaled", 202), ("brown_badly_scaled", 27)):
        p = PROBLEMS[name]
        res = fastopt.bfgs(p.fun, p.x0, gtol=1e-5 * max(1.0, abs(p.f_min or 0.0)), ftol=0)
        assert res.success, (name, res.message)
        assert res.nskipped == 0
        assert res.nfev <= 1.1 * scipy_nfev, (name, res.nfev)


def test_numerical_trouble_returns_best_point():
    def fun(x):
        f = float(np.sum(x**2))
        return (np.nan if np.abs(x).max() > 0.5 else f), 2 * x

    res = fastopt.bfgs(fun, np.full(4, 0.4), first_step="l2")
    assert res.status in (0, 2)
    assert np.isfinite(res.fun)
    assert np.abs(res.x).max() <= 0.5


def test_bad_input():
    with pytest.raises(ValueError, match="unknown BFGS options.*maxcor"):
        fastopt.minimize(PROBLEMS["rosenbrock"].fun, PROBLEMS["rosenbrock"].x0, method="bfgs",
                         options=dict(maxcor=5))
    with pytest.raises(ValueError, match="unknown method"):
        fastopt.minimize(PROBLEMS["rosenbrock"].fun, PROBLEMS["rosenbrock"].x0, method="newton")
    with pytest.raises(TypeError, match="dtype"):
        fastopt.bfgs(PROBLEMS["rosenbrock"].fun, np.array([1, 2]))
    with pytest.raises(ValueError, match="line_search"):
        fastopt.bfgs(PROBLEMS["rosenbrock"].fun, PROBLEMS["rosenbrock"].x0, line_search="exact")
    with pytest.raises(ValueError, match="gtol"):
        fastopt.bfgs(PROBLEMS["rosenbrock"].fun, PROBLEMS["rosenbrock"].x0, gtol=-1.0)
    solver = _core.Bfgs(3, np.dtype(np.float64))
    with pytest.raises(ValueError, match="s'y > 0"):
        solver.update(np.eye(3), np.ones(3), -np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        solver.update(np.eye(2), np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.Bfgs(3, np.dtype(np.int32))
    with pytest.raises(ValueError, match="at least one variable"):
        _core.Bfgs(0, np.dtype(np.float64))
