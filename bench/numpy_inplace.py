"""Careful in-place NumPy versions of each step: every operation writes into
a preallocated buffer (``out=``), so no array of N elements is allocated per
step (Adafactor allocates some of its small row/column statistics). This is
the best a NumPy user can do without a fused kernel; it still makes one pass
over memory per operation.

Each factory takes the step's buffers and hyperparameters (the same as the
functional kernel) and returns a zero-argument callable doing one step.
"""

from __future__ import annotations

import math

import numpy as np

from fastopt import reference as R


def _ema_(x, beta, term, tmp):
    """x = beta*x + (1 - beta)*term; `term` may be `tmp` itself."""
    np.multiply(x, beta, out=x)
    np.multiply(term, 1 - beta, out=tmp)
    np.add(x, tmp, out=x)


def _adam_moments_(m, v, g, tmp, beta1, beta2):
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*(g*g)."""
    _ema_(m, beta1, g, tmp)
    np.multiply(g, g, out=tmp)
    _ema_(v, beta2, tmp, tmp)


def _adam_denominator(v, r2, eps, out):
    """out = sqrt(v)*r2 + eps."""
    np.sqrt(v, out=out)
    np.multiply(out, r2, out=out)
    np.add(out, eps, out=out)


def _root_plus_eps(x, eps, out):
    """out = sqrt(x) + eps."""
    np.sqrt(x, out=out)
    np.add(out, eps, out=out)


def _subtract_scaled_ratio_(p, c, num, den, tmp):
    """p = p - c*(num/den); `tmp` may be `den`."""
    np.divide(num, den, out=tmp)
    np.multiply(tmp, c, out=tmp)
    np.subtract(p, tmp, out=p)


def _sum_sq(x) -> float:
    """Sum of squares without a temporary (BLAS dot, accumulating in the
    array's dtype), as a NumPy user writes a norm; the kernels' ordered sum in
    double differs from it in the low bits."""
    flat = x.reshape(-1)
    return float(np.dot(flat, flat))


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
        _root_plus_eps(s, eps, tmp)
        _subtract_scaled_ratio_(p, clr, g, tmp, tmp)
    return run


def rmsprop(p, g, v, *, lr, alpha=0.99, eps=1e-8, **_):
    tmp = np.empty_like(p)

    def run():
        np.multiply(g, g, out=tmp)
        _ema_(v, alpha, tmp, tmp)
        _root_plus_eps(v, eps, tmp)
        _subtract_scaled_ratio_(p, lr, g, tmp, tmp)
    return run


def _adam(p, g, m, v, vmax, *, lr, step, betas=(0.9, 0.999), eps=1e-8, decay=1.0):
    beta1, beta2 = betas
    step_size = lr / (1 - beta1**step)
    inv_bc2_sqrt = 1 / math.sqrt(1 - beta2**step)
    tmp = np.empty_like(p)

    def run():
        if decay != 1.0:
            np.multiply(p, decay, out=p)
        _adam_moments_(m, v, g, tmp, beta1, beta2)
        vhat = v
        if vmax is not None:
            np.maximum(vmax, v, out=vmax)
            vhat = vmax
        _adam_denominator(vhat, inv_bc2_sqrt, eps, tmp)
        _subtract_scaled_ratio_(p, step_size, m, tmp, tmp)
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


def adadelta(p, g, v, u, *, lr=1.0, rho=0.9, eps=1e-6, **_):
    delta, tmp = np.empty_like(p), np.empty_like(p)

    def run():
        np.multiply(g, g, out=tmp)
        _ema_(v, rho, tmp, tmp)
        np.add(u, eps, out=delta)
        np.sqrt(delta, out=delta)
        np.add(v, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(delta, tmp, out=delta)
        np.multiply(delta, g, out=delta)          # delta = sqrt(u+eps)/sqrt(v+eps) * g
        np.multiply(delta, delta, out=tmp)
        _ema_(u, rho, tmp, tmp)
        np.multiply(delta, lr, out=delta)
        np.subtract(p, delta, out=p)
    return run


def adamax(p, g, m, u, *, step, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, **_):
    beta1, beta2 = betas
    clr = lr / (1 - beta1**step)
    tmp = np.empty_like(p)

    def run():
        _ema_(m, beta1, g, tmp)
        np.multiply(u, beta2, out=u)
        np.abs(g, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.maximum(u, tmp, out=u)
        _subtract_scaled_ratio_(p, clr, m, u, tmp)
    return run


def nadam(p, g, m, v, *, step, mu_product, lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
          momentum_decay=4e-3, **_):
    beta1, beta2 = betas
    mu = R.nadam_mu(step, beta1, momentum_decay)
    mu_next = R.nadam_mu(step + 1, beta1, momentum_decay)
    prod = mu_product * mu
    c_grad = lr * (1 - mu) / (1 - prod)
    c_avg = lr * mu_next / (1 - prod * mu_next)
    inv_bc2_sqrt = 1 / math.sqrt(1 - beta2**step)
    den, tmp = np.empty_like(p), np.empty_like(p)

    def run():
        _adam_moments_(m, v, g, tmp, beta1, beta2)
        _adam_denominator(v, inv_bc2_sqrt, eps, den)
        _subtract_scaled_ratio_(p, c_grad, g, den, tmp)
        _subtract_scaled_ratio_(p, c_avg, m, den, tmp)
    return run


def radam(p, g, m, v, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **_):
    c = R.radam_rectified_step(step, lr, betas)
    bc1 = 1 - betas[0] ** step
    tmp = np.empty_like(p)

    def run():
        _adam_moments_(m, v, g, tmp, *betas)
        if c is not None:
            _root_plus_eps(v, eps, tmp)
            _subtract_scaled_ratio_(p, c, m, tmp, tmp)
        else:
            np.multiply(m, lr / bc1, out=tmp)
            np.subtract(p, tmp, out=p)
    return run


def asgd(p, g, ax, *, eta, mu, lambd=1e-4, **_):
    tmp = np.empty_like(p)

    def run():
        np.multiply(p, 1 - lambd * eta, out=p)
        np.multiply(g, eta, out=tmp)
        np.subtract(p, tmp, out=p)
        if mu == 1:
            np.copyto(ax, p)
        else:
            np.subtract(p, ax, out=tmp)
            np.multiply(tmp, mu, out=tmp)
            np.add(ax, tmp, out=ax)
    return run


def lion(p, g, m, *, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, **_):
    beta1, beta2 = betas
    c, tmp = np.empty_like(p), np.empty_like(p)

    def run():
        if weight_decay != 0:  # decoupled (Lion's default)
            np.multiply(p, 1 - lr * weight_decay, out=p)
        np.multiply(m, beta1, out=c)
        np.multiply(g, 1 - beta1, out=tmp)
        np.add(c, tmp, out=c)
        np.sign(c, out=c)                         # np.sign(NaN) is NaN, the rule's sign 0
        np.multiply(c, lr, out=c)
        np.subtract(p, c, out=p)
        _ema_(m, beta2, g, tmp)
    return run


def lamb(p, g, m, v, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, **_):
    beta1, beta2 = betas
    ib1 = 1 / (1 - beta1**step)
    inv_bc2_sqrt = 1 / math.sqrt(1 - beta2**step)
    r, tmp = np.empty_like(p), np.empty_like(p)

    def run():
        _adam_moments_(m, v, g, tmp, beta1, beta2)
        np.multiply(m, ib1, out=r)
        _adam_denominator(v, inv_bc2_sqrt, eps, tmp)
        np.divide(r, tmp, out=r)
        np.multiply(p, weight_decay, out=tmp)
        np.add(r, tmp, out=r)                     # r = Adam direction + weight_decay*p
        p_sq, r_sq = _sum_sq(p), _sum_sq(r)
        phi = math.sqrt(p_sq) / math.sqrt(r_sq) if p_sq > 0 and r_sq > 0 else 1.0
        np.multiply(r, lr * phi, out=r)
        np.subtract(p, r, out=p)
    return run


def _lerp_(a, b, w, tmp):
    """a = lerp(a, b, w) with torch's two formulas (`tmp` distinct from b)."""
    np.subtract(b, a, out=tmp)
    if w < 0.5:
        np.multiply(tmp, w, out=tmp)
        np.add(a, tmp, out=a)
    else:
        np.multiply(tmp, 1 - w, out=tmp)
        np.subtract(b, tmp, out=a)


def adafactor(p, g, row_var, col_var, variance, *, step, lr=1e-2, beta2_decay=-0.8,
              eps=(None, 1e-3), d=1.0, weight_decay=0.0, **_):
    """Factored (ndim >= 2, over the last two axes) or not, as
    reference.adafactor_; the row and column statistics (R + C elements) are
    small arrays, some allocated per step."""
    eps1, eps2 = eps
    e1 = float(np.finfo(p.dtype).eps) if eps1 is None else eps1
    omb = step**beta2_decay
    rho = min(lr, 1 / step**0.5)
    sqrt_n = math.sqrt(p.size)
    sq, tmp = np.empty_like(p), np.empty_like(p)
    factored = p.ndim >= 2
    if factored:
        rows, cols = p.shape[-2:]
        row_mean, col_mean = np.empty_like(row_var), np.empty_like(col_var)
        row_tmp, col_tmp = np.empty_like(row_var), np.empty_like(col_var)

    def run():
        alpha = max(eps2, math.sqrt(_sum_sq(p)) / sqrt_n) * rho     # p before the decay
        np.multiply(g, g, out=sq)
        if factored:
            np.sum(sq, axis=-1, keepdims=True, out=row_mean)
            np.divide(row_mean, cols, out=row_mean)
            np.sum(sq, axis=-2, keepdims=True, out=col_mean)
            np.divide(col_mean, rows, out=col_mean)
            _lerp_(row_var, row_mean, omb, row_tmp)
            _lerp_(col_var, col_mean, omb, col_tmp)
            rm = (row_var.sum(axis=-2, keepdims=True, dtype=np.float64) / rows).astype(p.dtype)
            np.multiply(row_var, col_var, out=tmp)
            np.divide(tmp, np.maximum(rm, e1), out=tmp)
            vest = tmp
        else:
            _lerp_(variance, sq, omb, tmp)
            vest = variance
        np.maximum(vest, e1 * e1, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)                               # u
        den = max(1.0, math.sqrt(_sum_sq(tmp)) / (sqrt_n * d))
        if weight_decay != 0:
            np.multiply(p, 1 - lr * weight_decay, out=p)
        np.multiply(tmp, alpha / den, out=tmp)
        np.subtract(p, tmp, out=p)
    return run
