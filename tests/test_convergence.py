"""Each optimizer makes real progress on the classic hard problems, and the
full-batch methods beat plain SGD by a wide margin where they should."""

import numpy as np
import pytest

from fastopt import optim

N = 20
_rng = np.random.default_rng(0)
_Q, _ = np.linalg.qr(_rng.standard_normal((N, N)))
HESSIAN = _Q @ np.diag(np.logspace(0, 3, N)) @ _Q.T  # rotated, condition number 1e3


def quadratic(x):
    return 0.5 * x @ HESSIAN @ x, HESSIAN @ x


def rosenbrock(x):
    a, b = x
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    return f, np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


# (class, kwargs on the quadratic, kwargs on Rosenbrock)
OPTIMIZERS = {
    "SGD": (optim.SGD, dict(lr=1e-3), dict(lr=1e-3)),
    "SGD-momentum": (optim.SGD, dict(lr=1e-3, momentum=0.9), dict(lr=1e-3, momentum=0.9)),
    "SGD-nesterov": (optim.SGD, dict(lr=1e-3, momentum=0.9, nesterov=True),
                     dict(lr=1e-3, momentum=0.9, nesterov=True)),
    "Adagrad": (optim.Adagrad, dict(lr=0.5), dict(lr=0.5)),
    "RMSprop": (optim.RMSprop, dict(lr=1e-2), dict(lr=1e-3)),
    "Adam": (optim.Adam, dict(lr=1e-2), dict(lr=1e-2)),
    "AdamW": (optim.AdamW, dict(lr=1e-2, weight_decay=1e-4), dict(lr=1e-2, weight_decay=1e-5)),
    "AMSGrad": (optim.Adam, dict(lr=1e-2, amsgrad=True), dict(lr=1e-2, amsgrad=True)),
    "irprop-": (optim.Rprop, dict(variant="irprop-"), dict(variant="irprop-")),
    "rprop-": (optim.Rprop, dict(variant="rprop-"), dict(variant="rprop-")),
    "rprop+": (optim.Rprop, dict(variant="rprop+"), dict(variant="rprop+")),
    "irprop+": (optim.Rprop, dict(variant="irprop+"), dict(variant="irprop+")),
    "Quickprop": (optim.Quickprop, dict(lr=1e-3, decay=0), dict(lr=1e-4, decay=0)),
}


def minimize(cls, kwargs, fun, x0, steps):
    x = np.array(x0, dtype=float)
    opt = cls([x], **kwargs)
    for _ in range(steps):
        f, g = fun(x)
        opt.step([g], loss=f)
    return fun(x)[0]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_reduces_ill_conditioned_quadratic(name):
    cls, kw, _ = OPTIMIZERS[name]
    f0 = quadratic(np.ones(N))[0]
    assert minimize(cls, kw, quadratic, np.ones(N), 2000) < 1e-3 * f0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_reduces_rosenbrock_from_standard_start(name):
    cls, _, kw = OPTIMIZERS[name]
    # f(-1.2, 1) = 24.2; the minimum is 0 at (1, 1)
    assert minimize(cls, kw, rosenbrock, [-1.2, 1.0], 5000) < 1e-2


CURVATURE = np.logspace(0, 3, N)
MINIMUM = np.linspace(-1, 1, N)


def steps_to_minimum(cls, kwargs, cap, tol=1e-6):
    """Steps until ||x - x*||_inf <= tol on a separable quadratic (None if never)."""
    x = np.zeros(N)
    opt = cls([x], **kwargs)
    for k in range(1, cap + 1):
        opt.step([CURVATURE * (x - MINIMUM)], loss=0.5 * np.sum(CURVATURE * (x - MINIMUM) ** 2))
        if np.max(np.abs(x - MINIMUM)) <= tol:
            return k
    return None


def test_sgd_needs_thousands_of_steps_on_the_separable_quadratic():
    best_lr = 2 / (CURVATURE[0] + CURVATURE[-1])  # the optimal constant step for GD
    assert steps_to_minimum(optim.SGD, dict(lr=best_lr), cap=200) is None
    assert steps_to_minimum(optim.SGD, dict(lr=best_lr), cap=20000) > 5000


@pytest.mark.parametrize(("cls", "kwargs"), [
    (optim.Rprop, dict(variant="irprop-")), (optim.Rprop, dict(variant="rprop-")),
    (optim.Rprop, dict(variant="rprop+")), (optim.Rprop, dict(variant="irprop+")),
    (optim.Quickprop, dict(lr=1e-3, decay=0.0)),
], ids=["irprop-", "rprop-", "rprop+", "irprop+", "quickprop"])
def test_full_batch_methods_reach_the_separable_minimum_far_faster_than_sgd(cls, kwargs):
    steps = steps_to_minimum(cls, kwargs, cap=200)
    assert steps is not None
    assert steps <= 100
