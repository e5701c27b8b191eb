"""L-BFGS: the direction against dense BFGS, convergence on the Moré-Garbow-
Hillstrom set and friends, float32, callbacks, numerical trouble, bad input,
SciPy interop and the torch-style class."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import _core
from problems import (
    extended_rosenbrock,
    ill_conditioned_quadratic,
    logistic_regression,
    problem_set,
)

PROBLEMS = {p.name: p for p in problem_set()}


def rosenbrock(x):
    a, b = x
    return (1 - a) ** 2 + 100 * (b - a * a) ** 2, np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


# ------------------------------------------------------------- the direction
def dense_bfgs_inverse(s_pairs, y_pairs):
    """H from H0 = gamma*I (newest pair) by the BFGS inverse update, pair by pair."""
    s_new, y_new = s_pairs[-1], y_pairs[-1]
    h = (s_new @ y_new) / (y_new @ y_new) * np.eye(s_new.size)
    for s, y in zip(s_pairs, y_pairs):
        rho = 1.0 / (s @ y)
        v = np.eye(s.size) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


def two_loop(s_pairs, y_pairs, g):
    """The textbook two-loop recursion (Nocedal & Wright, Algorithm 7.4): -H g."""
    q = g.copy()
    alphas = []
    for s, y in reversed(list(zip(s_pairs, y_pairs))):
        alpha = (s @ q) / (s @ y)
        alphas.append(alpha)
        q -= alpha * y
    r = (s_pairs[-1] @ y_pairs[-1]) / (y_pairs[-1] @ y_pairs[-1]) * q
    for (s, y), alpha in zip(zip(s_pairs, y_pairs), reversed(alphas)):
        r += s * (alpha - (y @ r) / (s @ y))
    return -r


def random_pairs(n, k, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, min(n, 50)))  # SPD: diagonal plus a low-rank term
    hess = a @ a.T / n + np.diag(np.logspace(0, 2, n))
    s = rng.standard_normal((k, n))
    return s, s @ hess, rng.standard_normal(n)


@pytest.mark.parametrize(("n", "k", "m"), [(1, 1, 10), (7, 3, 10), (40, 10, 10), (600, 8, 5), (5000, 6, 6)])
def test_direction_equals_dense_bfgs(n, k, m):
    s, y, g = random_pairs(n, k)
    d, skipped = _core.lbfgs_direction(s, y, g, m)
    kept = slice(max(0, k - m), k)  # the ring keeps the newest m pairs
    if n <= 600:
        expected = -dense_bfgs_inverse(s[kept], y[kept]) @ g
        np.testing.assert_allclose(d, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    reference = two_loop(s[kept], y[kept], g)
    np.testing.assert_allclose(d, reference, rtol=0, atol=1e-10 * np.abs(reference).max())
    assert skipped == 0


def test_two_loop_reference_equals_dense_bfgs():
    s, y, g = random_pairs(30, 6, seed=3)
    np.testing.assert_allclose(two_loop(s, y, g), -dense_bfgs_inverse(s, y) @ g, rtol=1e-11, atol=1e-12)


def test_direction_skips_pairs_failing_curvature():
    """A pair is kept only if s'y > eps_mach * (-g_old's): scale-free, so a
    tiny positive s'y is kept when the step's first-order decrease is tiny too."""
    s, y, g = random_pairs(20, 5, seed=1)
    bad_y = y.copy()
    bad_y[2] = -bad_y[2]  # s'y < 0
    bad_y[4] = 1e-20 * s[4]  # s'y = 1e-20 |s|^2, to full relative precision
    gs = -np.einsum("ij,ij->i", s, y)  # a first-order decrease of the size of each pair's curvature
    d, skipped = _core.lbfgs_direction(s, bad_y, g, 10, gs)
    keep = [0, 1, 3]
    assert skipped == 2
    np.testing.assert_allclose(d, -dense_bfgs_inverse(s[keep], y[keep]) @ g, rtol=1e-10, atol=1e-12)
    gs[4] = -1e-10 * (s[4] @ s[4])  # now s'y = 1e-20 |s|^2 > eps * 1e-10 |s|^2: kept
    _, skipped = _core.lbfgs_direction(s, bad_y, g, 10, gs)
    assert skipped == 1


def test_direction_float32_accumulates_in_double():
    s, y, g = random_pairs(3000, 5, seed=2)
    d32, _ = _core.lbfgs_direction(*(a.astype(np.float32) for a in (s, y, g)), 10)
    ref = two_loop(*(a.astype(np.float32).astype(np.float64) for a in (s, y, g)))
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_no_pairs_gives_steepest_descent():
    g = np.arange(1.0, 6.0)
    d, _ = _core.lbfgs_direction(np.zeros((0, 5)), np.zeros((0, 5)), g, 3)
    np.testing.assert_array_equal(d, -g)


# ------------------------------------------------------------ the problems
@pytest.mark.parametrize("name", PROBLEMS)
def test_gradient_matches_finite_differences(name):
    p = PROBLEMS[name]
    rng = np.random.default_rng(0)
    x = p.x0 + 0.1 * rng.standard_normal(p.n)
    f, g = p.fun(x)
    for i in rng.choice(p.n, size=min(p.n, 8), replace=False):
        h = 1e-6 * max(1.0, abs(x[i]))
        e = np.zeros(p.n)
        e[i] = h
        fd = (p.fun(x + e)[0] - p.fun(x - e)[0]) / (2 * h)
        roundoff = 1e-15 * abs(f) / h  # f ~ 1e12 (Brown badly scaled) swamps the difference
        assert abs(fd - g[i]) <= 1e-6 * max(1.0, np.abs(g).max()) + roundoff, (i, fd, g[i])


def attainable_gtol(p) -> float:
    """1e-5, relative to f* where f* > 1. Near a minimum the gradient moves
    ~||H|| per unit of x while f moves only ~||H|| per unit squared, so a
    gradient below sqrt(eps*|f*|*||H||) cannot be reached by comparing values
    of f: on Jennrich-Sampson (f* = 124.36, ||H|| ~ 2e5) that is ~7e-5, and
    whether a 1e-5 is reached anyway depended on the last bits of NumPy's exp
    and OpenBLAS's kernels on the machine (it failed on AVX2-only CPUs)."""
    return 1e-5 * max(1.0, abs(p.f_min or 0.0))


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
@pytest.mark.parametrize("first_step", ["l1", "l2"])
@pytest.mark.parametrize("name", PROBLEMS)
def test_converges_on_the_problem_set(name, first_step, method):
    p = PROBLEMS[name]
    gtol = attainable_gtol(p)
    with np.errstate(over="ignore"):  # far line-search trials overflow exp() (handled: f = inf)
        res = fastopt.minimize(p.fun, p.x0, method=method, options=dict(gtol=gtol, ftol=0, first_step=first_step))
    assert res.success, res.message
    assert np.abs(p.fun(res.x)[1]).max() <= gtol
    np.testing.assert_array_equal(res.jac, p.fun(res.x)[1])
    assert res.fun == p.fun(res.x)[0]
    if p.f_min is not None and name != "freudenstein_roth":
        assert res.fun <= p.f_min + 1e-6 * max(1.0, abs(p.f_min)) + 1e-9


@pytest.mark.parametrize("x0", [[-1.2, 1.0], [2.0, -3.0], [0.0, 0.0]])
def test_rosenbrock_to_1e_6(x0):
    res = fastopt.minimize(rosenbrock, np.array(x0), options=dict(gtol=1e-6, ftol=0))
    assert res.status == 0
    assert np.abs(res.jac).max() <= 1e-6
    np.testing.assert_allclose(res.x, [1, 1], atol=1e-5)


def test_extended_rosenbrock_1000_to_1e_6():
    x0 = np.tile([-1.2, 1.0], 500)
    res = fastopt.minimize(extended_rosenbrock, x0, options=dict(gtol=1e-6, ftol=0))
    assert res.success
    assert np.abs(extended_rosenbrock(res.x)[1]).max() <= 1e-6
    np.testing.assert_allclose(res.x, 1, atol=1e-5)


@pytest.mark.parametrize("n", [2, 10, 50])
def test_exact_minimizer_of_quadratics(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n))
    hess = a @ a.T + np.eye(n)
    b = rng.standard_normal(n)
    res = fastopt.minimize(lambda x: (0.5 * x @ hess @ x - b @ x, hess @ x - b), np.zeros(n),
                           options=dict(gtol=1e-7, ftol=0, maxcor=n))
    # gtol 1e-7, not less: near x* f changes by ~|g|^2/lambda, which is below
    # f's rounding once |g| ~ 1e-8, and then no line search can make progress.
    # The eigenvalues are >= 1, so |x - x*| <= |g|.
    assert res.success
    assert np.abs(res.jac).max() <= 1e-7
    np.testing.assert_allclose(res.x, np.linalg.solve(hess, b), rtol=0, atol=1e-7)


def test_logistic_regression_matches_scipy():
    so = pytest.importorskip("scipy.optimize")
    fun = logistic_regression(n_samples=400, n_features=30, seed=4)
    ours = fastopt.minimize(fun, np.zeros(30), options=dict(gtol=1e-9, ftol=0))
    theirs = so.minimize(fun, np.zeros(30), jac=True, method="L-BFGS-B",
                         options=dict(gtol=1e-9, ftol=0, maxcor=10))
    assert ours.success
    assert np.abs(ours.jac).max() <= 1e-9
    np.testing.assert_allclose(ours.x, theirs.x, rtol=0, atol=1e-6)


def test_ill_conditioned_quadratic():
    fun = ill_conditioned_quadratic(n=50, cond=1e4)
    res = fastopt.minimize(fun, np.zeros(50), options=dict(gtol=1e-8, ftol=0))
    assert res.success
    np.testing.assert_allclose(res.x, 1, atol=1e-6)


def test_backtracking_line_search_converges():
    res = fastopt.minimize(rosenbrock, np.array([-1.2, 1.0]),
                           options=dict(gtol=1e-6, ftol=0, line_search="backtracking"))
    assert res.success
    assert np.abs(res.jac).max() <= 1e-6


def test_every_accepted_step_decreases_f():
    values = []
    fastopt.minimize(rosenbrock, np.array([-1.2, 1.0]), options=dict(ftol=0),
                     callback=lambda intermediate_result: values.append(intermediate_result.fun))
    assert len(values) > 10
    assert np.all(np.diff(values) < 0)


# ----------------------------------------------------------------- float32
def test_float32_stays_float32():
    calls = []

    def fun(x):
        calls.append(x.dtype)
        f, g = rosenbrock(x.astype(np.float64))
        return f, g  # float64 gradient is cast into the float32 buffer

    res = fastopt.minimize(fun, np.array([-1.2, 1.0], dtype=np.float32), options=dict(gtol=1e-3, ftol=0))
    assert res.x.dtype == np.float32
    assert res.jac.dtype == np.float32
    assert set(calls) == {np.dtype(np.float32)}
    assert res.success
    assert np.abs(res.jac).max() <= 1e-3
    np.testing.assert_allclose(res.x, [1, 1], atol=2e-3)


def test_float32_large_quadratic():
    n = 20000
    scale = np.linspace(1, 10, n).astype(np.float32)

    def fun(x, g):
        r = x - 1
        np.multiply(scale, r, out=g)
        return float(0.5 * np.dot(r.astype(np.float64), g.astype(np.float64)))

    res = fastopt.minimize(fun, np.zeros(n, np.float32), jac="inplace", options=dict(gtol=1e-4, ftol=0))
    assert res.success
    assert res.x.dtype == np.float32
    np.testing.assert_allclose(res.x, 1, atol=1e-4)


# ------------------------------------------------------------- the callback
def test_callback_stop_iteration_new_style():
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result.nit)
        if intermediate_result.nit == 5:
            raise StopIteration

    res = fastopt.minimize(rosenbrock, np.array([-1.2, 1.0]), callback=callback)
    assert res.status == 99
    assert not res.success
    assert res.nit == 5
    assert seen == [1, 2, 3, 4, 5]
    assert res.message == "STOP: CALLBACK REQUESTED HALT"  # SciPy's L-BFGS-B message


def test_callback_old_style_gets_x_copy():
    xs = []
    res = fastopt.minimize(rosenbrock, np.array([-1.2, 1.0]), callback=xs.append)
    assert len(xs) == res.nit
    np.testing.assert_array_equal(xs[-1], res.x)
    assert len({x.tobytes() for x in xs}) == len(xs)  # copies, not one reused buffer


# ---------------------------------------------------- numerical trouble
def test_nan_region_is_stepped_back_from():
    def fun(x):  # undefined (NaN) for x[0] > 2, minimum at (1, 1)
        if x[0] > 2:
            return np.nan, np.full(2, np.nan)
        return rosenbrock(x)

    res = fastopt.minimize(fun, np.array([1.9, 3.0]), options=dict(gtol=1e-6, ftol=0))
    assert res.success
    assert np.all(np.isfinite(res.x))
    np.testing.assert_allclose(res.x, [1, 1], atol=1e-5)


def test_inf_everywhere_but_start_never_raises():
    def fun(x):
        if np.any(x != 0):
            return np.inf, np.zeros_like(x)
        return 1.0, np.ones_like(x)

    for line_search in ("strong_wolfe", "backtracking"):
        res = fastopt.minimize(fun, np.zeros(3), options=dict(line_search=line_search))
        assert res.status == 2
        assert "LINE SEARCH" in res.message
        np.testing.assert_array_equal(res.x, 0)
        assert res.fun == 1.0
        assert res.nfev <= 1 + 2 * 20


def test_non_finite_at_start():
    res = fastopt.minimize(lambda x: (np.nan, x), np.ones(2))
    assert res.status == 2
    assert "starting point" in res.message
    assert res.nfev == 1


def test_limits():
    res = fastopt.minimize(rosenbrock, np.array([-1.2, 1.0]), options=dict(maxiter=3))
    assert res.status == 1
    assert res.nit == 3
    assert "ITERATIONS" in res.message
    res = fastopt.minimize(rosenbrock, np.array([-1.2, 1.0]), options=dict(maxfun=7))
    assert res.status == 1
    assert res.nfev == 7
    assert "EVALUATIONS" in res.message


def test_unbounded_below_stops_cleanly():
    res = fastopt.minimize(lambda x: (-float(x @ x), -2 * x), np.ones(3), options=dict(maxfun=200))
    assert res.status in (1, 2)
    assert np.all(np.isfinite(res.x))
    assert np.isfinite(res.fun)


# ------------------------------------------------------- API and interop
def test_inplace_gradient_gives_identical_run():
    x0 = np.tile([-1.2, 1.0], 50)

    def inplace(x, g):
        f, g[...] = extended_rosenbrock(x)
        return f

    a = fastopt.minimize(extended_rosenbrock, x0)
    b = fastopt.minimize(inplace, x0, jac="inplace")
    c = fastopt.minimize(lambda x: extended_rosenbrock(x)[0], x0, jac=lambda x: extended_rosenbrock(x)[1])
    for other in (b, c):
        np.testing.assert_array_equal(a.x, other.x)
        assert a.nfev == other.nfev


def test_x_handed_to_fun_is_read_only():
    def fun(x):
        x[0] = 5.0
        return rosenbrock(x)

    with pytest.raises(ValueError, match="read-only"):
        fastopt.minimize(fun, np.array([-1.2, 1.0]))


def test_args_are_passed():
    res = fastopt.lbfgs(lambda x, c: (float((x - c) @ (x - c)), 2 * (x - c)), np.zeros(3), args=(2.0,))
    np.testing.assert_allclose(res.x, 2.0, atol=1e-6)


def test_scipy_custom_method_matches_minimize():
    so = pytest.importorskip("scipy.optimize")
    x0 = np.tile([-1.2, 1.0], 10)
    via_scipy = so.minimize(extended_rosenbrock, x0, jac=True, method=fastopt.lbfgs_minimize,
                            options=dict(gtol=1e-7, maxcor=5))
    direct = fastopt.minimize(extended_rosenbrock, x0, options=dict(gtol=1e-7, maxcor=5))
    np.testing.assert_array_equal(via_scipy.x, direct.x)
    assert via_scipy.nfev == direct.nfev
    assert via_scipy.success
    with pytest.raises(ValueError, match="constraints are not supported"):
        so.minimize(extended_rosenbrock, x0, jac=True, method=fastopt.lbfgs_minimize,
                    constraints=[{"type": "eq", "fun": lambda x: x[0]}])


def test_result_does_not_depend_on_thread_count():
    if not _core.OPENMP:
        pytest.skip("built without OpenMP")
    x0 = np.tile([-1.2, 1.0], 50_000)  # above the parallel grain
    runs = [fastopt.minimize(extended_rosenbrock, x0, options=dict(num_threads=t, maxiter=30)) for t in (1, 2)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(("x0", "error", "match"), [
    (np.zeros((2, 2)), ValueError, "1-D"),
    (np.array([1, 2]), TypeError, "dtype int64"),
    (np.array([1.0, np.nan]), ValueError, "non-finite"),
    (np.array([1.0, np.inf]), ValueError, "non-finite"),
    (np.zeros(0), ValueError, "empty"),
    (np.array([1 + 2j]), TypeError, "complex"),
])
def test_bad_x0(x0, error, match):
    with pytest.raises(error, match=match):
        fastopt.minimize(lambda x: (0.0, x), x0)


@pytest.mark.parametrize(("fun", "error", "match"), [
    (lambda x: (0.0, np.zeros(3)), ValueError, r"shape \(3,\) but x has shape \(2,\)"),
    (lambda x: (0.0, np.zeros((2, 1))), ValueError, r"shape \(2,1\)"),
    (lambda x: 0.0, TypeError, r"pair \(f, g\)"),
    (lambda x: (np.zeros(2), x), TypeError, "scalar"),
    (lambda x: ("a", x), TypeError, "real number"),
])
def test_bad_fun_output(fun, error, match):
    with pytest.raises(error, match=match):
        fastopt.minimize(fun, np.zeros(2))


@pytest.mark.parametrize(("options", "error", "match"), [
    (dict(gtol=-1.0), ValueError, "gtol"),
    (dict(ftol=np.nan), ValueError, "ftol"),
    (dict(maxcor=0), ValueError, "maxcor"),
    (dict(maxiter=-1), ValueError, "maxiter"),
    (dict(maxfun=0), ValueError, "maxfun"),
    (dict(maxls=0), ValueError, "maxls"),
    (dict(maxiter=10.5), TypeError, "maxiter"),
    (dict(line_search="exact"), ValueError, "line_search"),
    (dict(first_step="l3"), ValueError, "first_step"),
    (dict(eps=1e-8), ValueError, "unknown L-BFGS options"),
])
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        fastopt.minimize(rosenbrock, np.zeros(2), options=options)


def test_gradient_is_required():
    with pytest.raises(ValueError, match="needs the gradient"):
        fastopt.minimize(lambda x: 0.0, np.zeros(2), jac=None)
    with pytest.raises(ValueError, match="method"):
        fastopt.minimize(rosenbrock, np.zeros(2), method="newton-cg")


def test_errors_in_fun_propagate():
    def fun(x):
        raise KeyError("from fun")

    with pytest.raises(KeyError, match="from fun"):
        fastopt.minimize(fun, np.zeros(2))


# ------------------------------------------------------- optim.LBFGS
def lbfgs_on_rosenbrock(steps, **kwargs):
    x = np.array([-1.2, 1.0])
    opt = fastopt.optim.LBFGS([x], **kwargs)
    losses = [opt.step(lambda: (rosenbrock(x)[0], [rosenbrock(x)[1]])) for _ in range(steps)]
    return x, opt, losses


def test_optim_lbfgs_converges():
    x, opt, losses = lbfgs_on_rosenbrock(5)
    np.testing.assert_allclose(x, [1, 1], atol=1e-6)
    assert losses[0] == pytest.approx(24.2)
    assert losses[-1] < 1e-10
    assert opt.state_dict()["state"][0]["n_iter"] > 20


@pytest.mark.parametrize("line_search_fn", ["backtracking", None])
def test_optim_lbfgs_other_line_searches(line_search_fn):
    x, _, losses = lbfgs_on_rosenbrock(20, line_search_fn=line_search_fn, lr=1 if line_search_fn else 0.1)
    assert losses[-1] < losses[0]


def test_optim_lbfgs_state_dict_resumes_exactly():
    x, opt, _ = lbfgs_on_rosenbrock(1, max_iter=8)
    saved = opt.state_dict()
    x2 = x.copy()
    opt2 = fastopt.optim.LBFGS([x2], max_iter=8)
    opt2.load_state_dict(saved)
    for _ in range(2):
        opt.step(lambda: (rosenbrock(x)[0], [rosenbrock(x)[1]]))
        opt2.step(lambda: (rosenbrock(x2)[0], [rosenbrock(x2)[1]]))
    np.testing.assert_array_equal(x, x2)
    assert saved["state"][0]["s"].shape == (8, 2)


def test_optim_lbfgs_several_arrays():
    a, b = np.zeros((2, 3)), np.zeros(4)
    opt = fastopt.optim.LBFGS([a, b], history_size=5)

    def closure():
        return float(((a - 1) ** 2).sum() + ((b + 2) ** 2).sum()), [2 * (a - 1), 2 * (b + 2)]

    opt.step(closure)
    np.testing.assert_allclose(a, 1, atol=1e-6)
    np.testing.assert_allclose(b, -2, atol=1e-6)


def test_optim_lbfgs_bad_arguments():
    x = np.zeros(2)
    with pytest.raises(ValueError, match="line_search_fn"):
        fastopt.optim.LBFGS([x], line_search_fn="exact")
    with pytest.raises(ValueError, match="history_size"):
        fastopt.optim.LBFGS([x], history_size=0)
    with pytest.raises(ValueError, match="lr"):
        fastopt.optim.LBFGS([x], lr=-1)
    with pytest.raises(ValueError, match="groups"):
        fastopt.optim.LBFGS([{"params": [x]}, {"params": [np.zeros(1)]}])
    with pytest.raises(TypeError, match="one dtype"):
        fastopt.optim.LBFGS([x, np.zeros(2, np.float32)])
    opt = fastopt.optim.LBFGS([x])
    with pytest.raises(ValueError, match="shape"):
        opt.step(lambda: (0.0, [np.zeros(3)]))


def test_optim_lbfgs_matches_torch_minimum():
    torch = pytest.importorskip("torch")
    x, _, _ = lbfgs_on_rosenbrock(10)
    t = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    topt = torch.optim.LBFGS([t], line_search_fn="strong_wolfe")

    def closure():
        topt.zero_grad()
        loss = (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2
        loss.backward()
        return loss

    for _ in range(10):
        topt.step(closure)
    np.testing.assert_allclose(x, t.detach().numpy(), atol=1e-4)  # torch stops earlier (tolerance_change)


def test_converges_with_another_cpus_numpy_and_blas_kernels():
    """The problem set again, with NumPy's AVX-512 loops disabled and OpenBLAS
    on its Haswell kernels: the objectives' last bits as an AVX2-only CPU
    (such as an AMD EPYC) computes them, where Jennrich-Sampson once failed."""
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR", OPENBLAS_CORETYPE="Haswell")
    command = [sys.executable, "-W", "ignore::ImportWarning", "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-W", "ignore::ImportWarning", f"{__file__}::test_converges_on_the_problem_set"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=os.path.dirname(__file__))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout
