"""Smooth unconstrained test problems with analytic gradients.

Mostly from J. J. Moré, B. S. Garbow and K. E. Hillstrom (1981), "Testing
unconstrained optimization software", ACM TOMS 7(1) 17-41 (numbers below are
theirs), with their standard starting points; plus logistic regression and an
ill-conditioned quadratic. Least-squares problems are written as residuals
r(x) and Jacobian J(x): f = sum r^2, g = 2 J' r. tests/test_lbfgs.py checks
every gradient against central differences; bench/lbfgs.py runs them all
beside SciPy's L-BFGS-B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Problem:
    name: str
    fun: Callable[[np.ndarray], tuple]   # x -> (f, g)
    x0: np.ndarray
    f_min: float | None = None         # known minimum value (None: several local minima or not published)

    @property
    def n(self) -> int:
        return self.x0.size


def least_squares(residuals: Callable) -> Callable:
    """f = sum r_i^2 and its gradient 2 J'r from residuals(x) -> (r, J)."""
    def fun(x):
        r, jac = residuals(x)
        return float(r @ r), 2.0 * (jac.T @ r)
    return fun


# ------------------------------------------------------------ MGH problems
def _rosenbrock(x):  # 1
    return (np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]]),
            np.array([[-20 * x[0], 10.0], [-1.0, 0.0]]))


def _freudenstein_roth(x):  # 2
    a, b = x
    return (np.array([-13 + a + ((5 - b) * b - 2) * b, -29 + a + ((b + 1) * b - 14) * b]),
            np.array([[1.0, 10 * b - 3 * b * b - 2], [1.0, 3 * b * b + 2 * b - 14]]))


def _powell_badly_scaled(x):  # 3
    a, b = x
    return (np.array([1e4 * a * b - 1, np.exp(-a) + np.exp(-b) - 1.0001]),
            np.array([[1e4 * b, 1e4 * a], [-np.exp(-a), -np.exp(-b)]]))


def _brown_badly_scaled(x):  # 4
    a, b = x
    return (np.array([a - 1e6, b - 2e-6, a * b - 2]), np.array([[1.0, 0.0], [0.0, 1.0], [b, a]]))


def _beale(x):  # 5
    a, b = x
    i = np.arange(1, 4)
    y = np.array([1.5, 2.25, 2.625])
    return y - a * (1 - b ** i), np.column_stack([-(1 - b ** i), a * i * b ** (i - 1)])


def _jennrich_sampson(x):  # 6, m = 10
    i = np.arange(1, 11)
    ea, eb = np.exp(i * x[0]), np.exp(i * x[1])
    return 2 + 2 * i - (ea + eb), np.column_stack([-i * ea, -i * eb])


def _helical_valley(x):  # 7
    a, b, c = x
    theta = np.arctan(b / a) / (2 * np.pi) + (0.5 if a < 0 else 0.0)
    rho2 = a * a + b * b
    rho = np.sqrt(rho2)
    dtheta = np.array([-b, a]) / (2 * np.pi * rho2)
    return (np.array([10 * (c - 10 * theta), 10 * (rho - 1), c]),
            np.array([[-100 * dtheta[0], -100 * dtheta[1], 10.0],
                      [10 * a / rho, 10 * b / rho, 0.0], [0.0, 0.0, 1.0]]))


_GAUSSIAN_Y = np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
                        0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009])


def _gaussian(x):  # 9
    t = (8 - np.arange(1, 16)) / 2
    e = np.exp(-x[1] * (t - x[2]) ** 2 / 2)
    return (x[0] * e - _GAUSSIAN_Y,
            np.column_stack([e, -x[0] * e * (t - x[2]) ** 2 / 2, x[0] * e * x[1] * (t - x[2])]))


def _box_3d(x):  # 12, m = 10
    t = 0.1 * np.arange(1, 11)
    ea, eb = np.exp(-t * x[0]), np.exp(-t * x[1])
    c = np.exp(-t) - np.exp(-10 * t)
    return ea - eb - x[2] * c, np.column_stack([-t * ea, t * eb, -c])


def _powell_singular(x):  # 13
    a, b, c, d = x
    s5, s10 = np.sqrt(5), np.sqrt(10)
    return (np.array([a + 10 * b, s5 * (c - d), (b - 2 * c) ** 2, s10 * (a - d) ** 2]),
            np.array([[1, 10, 0, 0], [0, 0, s5, -s5], [0, 2 * (b - 2 * c), -4 * (b - 2 * c), 0],
                      [2 * s10 * (a - d), 0, 0, -2 * s10 * (a - d)]], dtype=float))


def _wood(x):  # 14
    a, b, c, d = x
    s90, s10 = np.sqrt(90), np.sqrt(10)
    return (np.array([10 * (b - a * a), 1 - a, s90 * (d - c * c), 1 - c, s10 * (b + d - 2), (b - d) / s10]),
            np.array([[-20 * a, 10, 0, 0], [-1, 0, 0, 0], [0, 0, -2 * s90 * c, s90], [0, 0, -1, 0],
                      [0, s10, 0, s10], [0, 1 / s10, 0, -1 / s10]], dtype=float))


_KO_Y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246])
_KO_U = np.array([4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])


def _kowalik_osborne(x):  # 15
    u = _KO_U
    num = u * u + u * x[1]
    den = u * u + u * x[2] + x[3]
    return (_KO_Y - x[0] * num / den,
            np.column_stack([-num / den, -x[0] * u / den, x[0] * num * u / den ** 2, x[0] * num / den ** 2]))


def _biggs_exp6(x):  # 18, m = 13
    t = 0.1 * np.arange(1, 14)
    y = np.exp(-t) - 5 * np.exp(-10 * t) + 3 * np.exp(-4 * t)
    e1, e2, e5 = np.exp(-t * x[0]), np.exp(-t * x[1]), np.exp(-t * x[4])
    r = x[2] * e1 - x[3] * e2 + x[5] * e5 - y
    return r, np.column_stack([-t * x[2] * e1, t * x[3] * e2, e1, -e2, -t * x[5] * e5, e5])


def _watson(x):  # 20
    n = x.size
    t = np.arange(1, 30) / 29
    j = np.arange(n)
    powers = t[:, None] ** j[None, :]                      # t^(j), j = 0..n-1
    dpowers = np.zeros_like(powers)
    dpowers[:, 1:] = j[1:] * t[:, None] ** (j[1:] - 1)    # (j) t^(j-1)
    s1 = dpowers @ x
    s2 = powers @ x
    r = np.concatenate([s1 - s2 ** 2 - 1, [x[0], x[1] - x[0] ** 2 - 1]])
    jac = np.vstack([dpowers - 2 * s2[:, None] * powers, np.eye(1, n, 0), np.eye(1, n, 1)])
    jac[-1, 0] = -2 * x[0]
    return r, jac


def _penalty_1(x):  # 23
    a = np.sqrt(1e-5)
    n = x.size
    return (np.concatenate([a * (x - 1), [x @ x - 0.25]]), np.vstack([a * np.eye(n), 2 * x[None, :]]))


def _penalty_2(x):  # 24
    n = x.size
    a = np.sqrt(1e-5)
    i = np.arange(2, n + 1)
    y = np.exp(i / 10) + np.exp((i - 1) / 10)
    e = np.exp(x / 10)
    r = np.concatenate([[x[0] - 0.2], a * (e[1:] + e[:-1] - y), a * (e[1:] - np.exp(-0.1)),
                        [np.sum((n - np.arange(n)) * x * x) - 1]])
    jac = np.zeros((2 * n, n))
    jac[0, 0] = 1
    k = np.arange(n - 1)
    jac[1 + k, k + 1] = a * e[1:] / 10
    jac[1 + k, k] = a * e[:-1] / 10
    jac[n + k, k + 1] = a * e[1:] / 10
    jac[-1] = 2 * (n - np.arange(n)) * x
    return r, jac


def _variably_dimensioned(x):  # 25
    n = x.size
    j = np.arange(1, n + 1)
    s = j @ (x - 1)
    return (np.concatenate([x - 1, [s, s * s]]), np.vstack([np.eye(n), j[None, :], 2 * s * j[None, :]]))


def _trigonometric(x):  # 26
    n = x.size
    i = np.arange(1, n + 1)
    r = n - np.sum(np.cos(x)) + i * (1 - np.cos(x)) - np.sin(x)
    jac = np.tile(np.sin(x), (n, 1)) + np.diag(i * np.sin(x) - np.cos(x))
    return r, jac


def _brown_almost_linear(x):  # 27
    n = x.size
    r = np.concatenate([x[:-1] + x.sum() - (n + 1), [np.prod(x) - 1]])
    jac = np.ones((n, n)) + np.eye(n)
    jac[-1] = [np.prod(np.delete(x, k)) for k in range(n)]
    return r, jac


def _discrete_boundary_value(x):  # 28
    n = x.size
    h = 1 / (n + 1)
    t = np.arange(1, n + 1) * h
    xp = np.concatenate([[0.0], x, [0.0]])
    r = 2 * x - xp[:-2] - xp[2:] + h * h * (x + t + 1) ** 3 / 2
    jac = np.diag(2 + 1.5 * h * h * (x + t + 1) ** 2) - np.eye(n, k=1) - np.eye(n, k=-1)
    return r, jac


def _discrete_integral_equation(x):  # 29
    n = x.size
    h = 1 / (n + 1)
    t = np.arange(1, n + 1) * h
    c = (x + t + 1) ** 3
    dc = 3 * (x + t + 1) ** 2
    lower = np.tril(np.ones((n, n)))        # j <= i
    upper = 1 - lower                       # j > i
    r = x + h * ((1 - t) * (lower @ (t * c)) + t * (upper @ ((1 - t) * c))) / 2
    jac = np.eye(n) + h * ((1 - t)[:, None] * lower * (t * dc)[None, :]
                           + t[:, None] * upper * ((1 - t) * dc)[None, :]) / 2
    return r, jac


def _broyden_tridiagonal(x):  # 30
    n = x.size
    xp = np.concatenate([[0.0], x, [0.0]])
    r = (3 - 2 * x) * x - xp[:-2] - 2 * xp[2:] + 1
    jac = np.diag(3 - 4 * x) - np.eye(n, k=-1) - 2 * np.eye(n, k=1)
    return r, jac


def _broyden_banded(x):  # 31
    n = x.size
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    band = ((j >= i - 5) & (j <= i + 1) & (j != i)).astype(float)
    r = x * (2 + 5 * x * x) + 1 - band @ (x * (1 + x))
    jac = np.diag(2 + 15 * x * x) - band * (1 + 2 * x)[None, :]
    return r, jac


def _linear_full_rank(x, m=20):  # 32
    n = x.size
    a = np.eye(m, n) - 2.0 / m
    return a @ x - 1, a


# ----------------------------------------------- vectorized large problems
def extended_rosenbrock(x):  # 21
    a, b = x[0::2], x[1::2]
    r1, r2 = 10 * (b - a * a), 1 - a
    g = np.empty_like(x)
    g[0::2] = -40 * a * r1 - 2 * r2
    g[1::2] = 20 * r1
    return float(r1 @ r1 + r2 @ r2), g


def extended_powell(x):  # 22
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    r1, r2, r3, r4 = a + 10 * b, np.sqrt(5) * (c - d), (b - 2 * c) ** 2, np.sqrt(10) * (a - d) ** 2
    g = np.empty_like(x)
    g[0::4] = 2 * r1 + 4 * np.sqrt(10) * (a - d) * r4
    g[1::4] = 20 * r1 + 4 * (b - 2 * c) * r3
    g[2::4] = 2 * np.sqrt(5) * r2 - 8 * (b - 2 * c) * r3
    g[3::4] = -2 * np.sqrt(5) * r2 - 4 * np.sqrt(10) * (a - d) * r4
    return float(r1 @ r1 + r2 @ r2 + r3 @ r3 + r4 @ r4), g


# ------------------------------------------------------- non-MGH problems
def logistic_regression(n_samples=500, n_features=20, l2=1e-2, seed=0):
    """Mean logistic loss + (l2/2)||w||^2 on a fixed random data set; the
    regularization makes the minimizer unique."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_samples, n_features))
    w_true = rng.standard_normal(n_features)
    labels = (rng.random(n_samples) < 1 / (1 + np.exp(-a @ w_true))).astype(float)

    def fun(w):
        z = a @ w
        loss = np.mean(np.logaddexp(0, z) - labels * z) + 0.5 * l2 * (w @ w)
        p = 0.5 * (1 + np.tanh(0.5 * z))  # sigmoid without overflow
        return float(loss), a.T @ (p - labels) / n_samples + l2 * w

    return fun


def ill_conditioned_quadratic(n=100, cond=1e6, seed=0):
    """0.5 (x - 1)' A (x - 1), A rotated with eigenvalues log-spaced over `cond`."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    hess = (q * np.logspace(0, np.log10(cond), n)) @ q.T

    def fun(x):
        r = x - 1
        hr = hess @ r
        return float(0.5 * r @ hr), hr

    fun.hessian = hess
    return fun


def _alternating(n, a, b):
    x = np.full(n, float(a))
    x[1::2] = b
    return x


def problem_set() -> list[Problem]:
    """The benchmark set: 28 problems."""
    ls = least_squares
    p = Problem
    return [
        p("rosenbrock", ls(_rosenbrock), np.array([-1.2, 1.0]), 0.0),
        p("freudenstein_roth", ls(_freudenstein_roth), np.array([0.5, -2.0])),
        p("powell_badly_scaled", ls(_powell_badly_scaled), np.array([0.0, 1.0]), 0.0),
        p("brown_badly_scaled", ls(_brown_badly_scaled), np.array([1.0, 1.0]), 0.0),
        p("beale", ls(_beale), np.array([1.0, 1.0]), 0.0),
        p("jennrich_sampson", ls(_jennrich_sampson), np.array([0.3, 0.4]), 124.362182355),
        p("helical_valley", ls(_helical_valley), np.array([-1.0, 0.0, 0.0]), 0.0),
        p("gaussian", ls(_gaussian), np.array([0.4, 1.0, 0.0]), 1.12793276961e-8),
        p("box_3d", ls(_box_3d), np.array([0.0, 10.0, 20.0]), 0.0),
        p("powell_singular", ls(_powell_singular), np.array([3.0, -1.0, 0.0, 1.0]), 0.0),
        p("wood", ls(_wood), np.array([-3.0, -1.0, -3.0, -1.0]), 0.0),
        p("kowalik_osborne", ls(_kowalik_osborne), np.array([0.25, 0.39, 0.415, 0.39]), 3.07505603849e-4),
        p("biggs_exp6", ls(_biggs_exp6), np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0])),
        p("watson_6", ls(_watson), np.zeros(6), 2.28767005355e-3),
        p("extended_rosenbrock_1000", extended_rosenbrock, _alternating(1000, -1.2, 1.0), 0.0),
        p("extended_powell_100", extended_powell, np.tile([3.0, -1.0, 0.0, 1.0], 25), 0.0),
        p("penalty_1_10", ls(_penalty_1), np.arange(1.0, 11.0), 7.08765146709e-5),
        p("penalty_2_10", ls(_penalty_2), np.full(10, 0.5), 2.93660539e-4),
        p("variably_dimensioned_10", ls(_variably_dimensioned), 1 - np.arange(1, 11) / 10, 0.0),
        p("trigonometric_10", ls(_trigonometric), np.full(10, 0.1)),
        p("brown_almost_linear_10", ls(_brown_almost_linear), np.full(10, 0.5), 0.0),
        p("discrete_boundary_value_10", ls(_discrete_boundary_value),
          (lambda t: t * (t - 1))(np.arange(1, 11) / 11), 0.0),
        p("discrete_integral_equation_10", ls(_discrete_integral_equation),
          (lambda t: t * (t - 1))(np.arange(1, 11) / 11), 0.0),
        p("broyden_tridiagonal_10", ls(_broyden_tridiagonal), np.full(10, -1.0), 0.0),
        p("broyden_banded_10", ls(_broyden_banded), np.full(10, -1.0), 0.0),
        p("linear_full_rank_10", ls(_linear_full_rank), np.ones(10), 10.0),
        p("logistic_regression_20", logistic_regression(), np.zeros(20)),
        p("quadratic_cond1e6_100", ill_conditioned_quadratic(), np.zeros(100), 0.0),
    ]


# ------------------------------------------------ data for the L1 tests

def sparse_regression(seed=0, n=200, d=30, active=5):
    """Least squares whose lasso solution is sparse: 5 active weights of 30."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w_true = np.zeros(d)
    w_true[:active] = rng.uniform(1, 2, active) * rng.choice([-1, 1], active)
    y = x @ w_true + 0.01 * rng.standard_normal(n)
    return x, y, w_true


def l1_logistic(x, labels, scale=1.0):
    """f(w) = scale * sum log(1 + exp(-y x'w)) (liblinear's loss, C = scale), labels in {-1, 1}."""
    def fun(w):
        z = labels * (x @ w)
        f = scale * float(np.logaddexp(0.0, -z).sum())
        return f, x.T @ (-labels * scale * np.exp(-np.logaddexp(0.0, z)))
    return fun


def lasso_loss(x, y):
    """f(w) = ||y - x w||^2 / (2 n) (scikit-learn's Lasso loss)."""
    n = x.shape[0]

    def fun(w):
        r = x @ w - y
        return float(r @ r) / (2 * n), x.T @ r / n
    return fun


def l1_classification(n_samples, n_features, sparse_design, seed):
    """Labels in {-1, 1} from 10 active weights; sparse_design: 95% of x zero (stored dense)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features))
    if sparse_design:  # most entries zero, as in bag-of-words designs
        x *= rng.random((n_samples, n_features)) < 0.05
    w = np.zeros(n_features)
    w[:10] = rng.uniform(1, 3, 10) * rng.choice([-1, 1], 10)
    labels = np.where(x @ w + 0.5 * rng.standard_normal(n_samples) > 0, 1.0, -1.0)
    return x, labels
