"""Careful in-place NumPy versions of each step: every operation writes into
a preallocated buffer (``out=``), so no array is allocated per step. This is
the best a NumPy user can do without a fused kernel; it still makes one pass
over memory per operation.

Each factory takes the step's buffers and hyperparameters (the same as the
functional kernel) and returns a zero-argument callable doing one step.
"""

from __future__ import annotations

import math

import numpy as np


def sgd(p, g, b, *, lr, momentum, step, **_):
    tmp = np.empty_like(p)

    def run():
        np.multiply(b, momentum, out=b)
        np.add(b, g, out=b)  # dampening 0
        np.multiply(b, lr, out=tmp)
        np.subtract(p, tmp, out=p)
    return run


def adagrad(p, g, s, *, lr, step, lr_decay=0.0, eps=1e-10, **_):
    tmp = np.empty_like(p)
    clr = lr / (1 + (step - 1) * lr_decay)

    def run():
        np.multiply(g, g, out=tmp)
        np.add(s, tmp, out=s)
        np.sqrt(s, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, clr, out=tmp)
        np.subtract(p, tmp, out=p)
    return run


def rmsprop(p, g, v, *, lr, alpha=0.99, eps=1e-8, **_):
    tmp = np.empty_like(p)

    def run():
        np.multiply(v, alpha, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1 - alpha, out=tmp)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.divide(g, tmp, out=tmp)
        np.multiply(tmp, lr, out=tmp)
        np.subtract(p, tmp, out=p)
    return run


def _adam(p, g, m, v, vmax, *, lr, step, betas=(0.9, 0.999), eps=1e-8, decay=1.0):
    beta1, beta2 = betas
    step_size = lr / (1 - beta1**step)
    inv_bc2_sqrt = 1 / math.sqrt(1 - beta2**step)
    tmp = np.empty_like(p)

    def run():
        if decay != 1.0:
            np.multiply(p, decay, out=p)
        np.multiply(m, beta1, out=m)
        np.multiply(g, 1 - beta1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(v, beta2, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1 - beta2, out=tmp)
        np.add(v, tmp, out=v)
        vhat = v
        if vmax is not None:
            np.maximum(vmax, v, out=vmax)
            vhat = vmax
        np.sqrt(vhat, out=tmp)
        np.multiply(tmp, inv_bc2_sqrt, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.divide(m, tmp, out=tmp)
        np.multiply(tmp, step_size, out=tmp)
        np.subtract(p, tmp, out=p)
    return run


def adam(p, g, m, v, *, lr, step, **kw):
    return _adam(p, g, m, v, None, lr=lr, step=step, **kw)


def adamw(p, g, m, v, vmax=None, *, lr, step, weight_decay=1e-2, amsgrad=False, **kw):
    return _adam(p, g, m, v, vmax if amsgrad else None, lr=lr, step=step, decay=1 - lr * weight_decay, **kw)


def rprop(p, g, prev, d, *, etaminus=0.5, etaplus=1.2, step_size_min=1e-6, step_size_max=50.0, **_):
    agreement, sign_g, factor = np.empty_like(p), np.empty_like(p), np.empty_like(p)
    mask = np.empty(p.shape, dtype=bool)

    def run():  # irprop-
        np.sign(prev, out=agreement)
        np.sign(g, out=sign_g)
        np.multiply(agreement, sign_g, out=agreement)
        factor.fill(1)
        np.greater(agreement, 0, out=mask)
        np.copyto(factor, etaplus, where=mask)
        np.less(agreement, 0, out=mask)
        np.copyto(factor, etaminus, where=mask)
        np.multiply(d, factor, out=d)
        np.clip(d, step_size_min, step_size_max, out=d)
        np.copyto(prev, g)
        np.copyto(prev, 0, where=mask)
        np.sign(prev, out=sign_g)
        np.multiply(sign_g, d, out=sign_g)
        np.subtract(p, sign_g, out=p)
    return run


def quickprop(p, g, d, gp, *, lr, mu=1.75, decay=1e-4, **_):
    shrink = mu / (1 + mu)
    grad, slope, sp, denom, factor, step, tmp = (np.empty_like(p) for _ in range(7))
    mask, growth = np.empty(p.shape, dtype=bool), np.empty(p.shape, dtype=bool)

    def run():  # mode_switch 0, momentum 0: direction = sign(d)
        np.multiply(p, decay, out=grad)
        np.add(g, grad, out=grad)
        np.sign(d, out=tmp)                       # direction of the last step
        np.multiply(grad, -1, out=slope)
        np.multiply(slope, tmp, out=slope)        # slope along the last step
        np.multiply(gp, -1, out=sp)
        np.multiply(sp, tmp, out=sp)
        np.subtract(sp, slope, out=denom)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(slope, denom, out=factor)
        np.clip(factor, -1, mu, out=factor)
        np.multiply(sp, shrink, out=step)
        np.greater(slope, step, out=growth)
        np.less_equal(denom, 0, out=mask)
        np.logical_or(growth, mask, out=growth)
        np.copyto(factor, mu, where=growth)
        np.multiply(d, factor, out=step)          # max growth or secant jump
        np.multiply(grad, -lr, out=tmp)           # gradient step lr*s
        np.greater(slope, 0, out=mask)
        np.add(step, tmp, out=step, where=mask)
        np.less_equal(sp, 0, out=mask)            # guard, and gradient mode (d == 0)
        np.copyto(step, tmp, where=mask)
        np.add(p, step, out=p)
        np.copyto(d, step)
        np.copyto(gp, grad)
    return run
