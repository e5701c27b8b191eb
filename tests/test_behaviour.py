"""What distinguishes the Rprop variants and Quickprop, checked on tiny
hand-computable problems."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastopt import functional as F
from fastopt import optim

LR = 0.1


def rprop_trajectory(variant, grads, losses=None):
    """Positions of a 1-element parameter after each step of `grads`."""
    p = np.zeros(1)
    opt = optim.Rprop([p], lr=LR, variant=variant)
    out = []
    for k, g in enumerate(grads):
        opt.step([np.array([g])], loss=None if losses is None else losses[k])
        out.append(p[0])
    return out


def test_irprop_minus_does_not_move_on_a_sign_change():
    p1, p2, p3 = rprop_trajectory("irprop-", [1.0, -1.0, -1.0])
    assert p1 == -LR
    assert p2 == p1                      # sign change: no step, step size shrinks
    assert p3 == pytest.approx(p1 + 0.5 * LR)  # then moves with the shrunk step


def test_rprop_minus_moves_on_a_sign_change():
    p1, p2 = rprop_trajectory("rprop-", [1.0, -1.0])
    assert p2 == pytest.approx(p1 + 0.5 * LR)


def test_rprop_plus_undoes_the_last_step():
    p1, p2, p3 = rprop_trajectory("rprop+", [1.0, 1.0, -1.0])
    assert p2 == pytest.approx(p1 - 1.2 * LR)  # same sign: step grows by eta_plus
    assert p3 == pytest.approx(p1)             # sign change: the last step is undone


@pytest.mark.parametrize("loss_rose", [True, False])
def test_irprop_plus_undoes_only_when_the_loss_rose(loss_rose):
    losses = [3.0, 2.0, 2.5 if loss_rose else 1.5]
    p1, p2, p3 = rprop_trajectory("irprop+", [1.0, 1.0, -1.0], losses)
    assert p3 == pytest.approx(p1 if loss_rose else p2)


def test_irprop_plus_requires_the_loss():
    p = np.zeros(3)
    opt = optim.Rprop([p], variant="irprop+")
    with pytest.raises(ValueError, match="loss"):
        opt.step([np.ones(3)])
    assert not p.any()
    assert not opt.state


def quickprop_on_parabola(curvature, minimum, lr, steps):
    """Quickprop on f(x) = sum(curvature/2 * (x - minimum)**2) from x = 0."""
    x = np.zeros_like(minimum)
    d, gp = np.zeros_like(x), np.zeros_like(x)
    path = []
    for _ in range(steps):
        g = curvature * (x - minimum)
        F.quickprop_(x, g, d, gp, lr=lr, decay=0.0)
        path.append(x.copy())
    return path


def test_quickprop_secant_lands_on_the_parabola_minimum_after_overshoot():
    # a*lr = 1.5: the gradient step overshoots, the next (secant) step is exact.
    x1, x2 = quickprop_on_parabola(np.array([2.0]), np.array([1.0]), lr=0.75, steps=2)
    assert x1[0] == pytest.approx(1.5)
    assert x2[0] == pytest.approx(1.0, abs=1e-15)


def test_quickprop_secant_part_of_the_step_lands_on_the_minimum():
    """Without overshoot Fahlman adds the gradient term lr*s (when the slope
    still agrees with the last step) to the secant jump; the secant part alone
    lands on each coordinate's minimum. Here a*lr is in [0.5, 1.2], so every
    coordinate takes the secant branch (max growth needs a*lr < 1/(1+mu))."""
    rng = np.random.default_rng(0)
    curvature, minimum, lr = rng.uniform(1.25, 3.0, 50), rng.standard_normal(50), 0.4
    x1, x2 = quickprop_on_parabola(curvature, minimum, lr, steps=2)
    first_step = x1  # from x0 = 0
    slope = -curvature * (x1 - minimum)
    gradient_term = np.where(np.sign(slope) == np.sign(first_step), lr * slope, 0.0)
    np.testing.assert_allclose(x2 - gradient_term, minimum, rtol=1e-12, atol=1e-12)


finite = dict(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    n=st.integers(1, 40),
    mode_switch=st.sampled_from([0.0, 1e-3]),
    momentum=st.sampled_from([0.0, 0.9]),
)
def test_quickprop_guard_never_yields_nan_or_inf(data, dtype, n, mode_switch, momentum):
    # Values include exact zeros and equal slopes (sp == s, 0/0 without the guard).
    values = st.one_of(st.just(0.0), st.just(1.0), st.just(-1.0), st.floats(**finite, width=32))
    draw = lambda: data.draw(arrays(dtype, n, elements=values))  # noqa: E731
    p, g, d, gp = draw(), draw(), draw(), draw()
    if data.draw(st.booleans()):
        gp = g.copy()  # equal slopes: sp - s == 0
    F.quickprop_(p, g, d, gp, lr=0.01, mode_switch=mode_switch, momentum=momentum)
    assert np.all(np.isfinite(p))
    assert np.all(np.isfinite(d))
    assert np.all(np.isfinite(gp))
