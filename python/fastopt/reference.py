"""Pure-NumPy versions of every fastopt kernel: the test oracle and the
"plain Python" baseline of the benchmarks.

Each function has the same signature as its twin in :mod:`fastopt.functional`
(less ``num_threads`` and ``stats``) and updates its arrays in place. The
bodies are the update rules of docs/algorithms.md written as plainly as NumPy
allows, one array operation per term, with per-step scalars computed as
Python floats (double precision). Element arithmetic therefore runs in the
arrays' dtype (NumPy's weak-scalar promotion), in the same order as the C++
kernels.

Every optimizer takes the same regularization and clipping arguments (see
:func:`_preprocess`, :func:`_decoupled`, :func:`_prox_l1`): ``l1``,
``decoupled_weight_decay``, ``grad_scale`` and ``clip_value``.

This module never imports the C++ extension. It does no input checking.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "sgd_", "adagrad_", "rmsprop_", "adam_", "adamw_", "rprop_", "quickprop_",
    "adadelta_", "adamax_", "nadam_", "nadam_mu", "radam_", "asgd_", "asgd_schedule",
    "lion_", "lamb_", "adafactor_",
    "narrow_", "random_draws", "round_nearest", "round_stochastic", "widen", "join_master",
    "quantized_", "quantize_blockwise", "dequantize_blockwise", "dynamic_map",
]


def _as_list(x):
    if x is None:
        return None
    return [x] if isinstance(x, np.ndarray) else list(x)


def _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value):
    """The gradient an optimizer uses: maximize (``g = -g``), clipping by a
    global-norm factor (``g = g * grad_scale``) and by value
    (``g = clip(g, -clip_value, clip_value)``), then coupled L2
    (``g = g + weight_decay * p``) unless the decay is decoupled."""
    if maximize:
        g = -g
    if grad_scale != 1:
        g = g * grad_scale
    if clip_value is not None and clip_value != math.inf:
        g = np.clip(g, -clip_value, clip_value)
    if weight_decay != 0 and not decoupled_weight_decay:
        g = g + weight_decay * p
    return g


def _decoupled(p, lr, weight_decay, decoupled_weight_decay):
    """Decoupled weight decay before the update: ``p = p * (1 - lr * wd)``."""
    return p * (1 - lr * weight_decay) if decoupled_weight_decay else p


def _prox_l1(p, tau):
    """The L1 proximal step after the update: ``sign(p) * max(|p| - tau, 0)``
    with ``tau = lr * l1``; weights inside the threshold become exactly 0."""
    if np.all(tau == 0):
        return p
    shrunk = np.abs(p) - tau
    zero_or_nan = np.where(np.isnan(shrunk), shrunk, 0)  # a NaN p or tau stays NaN
    return np.where(tau == 0, p, np.where(shrunk > 0, np.copysign(shrunk, p), zero_or_nan)).astype(p.dtype)


def sgd_(params, grads, momentum_buffers=None, *, step, lr=1e-3, momentum=0.0, dampening=0.0,
         weight_decay=0.0, nesterov=False, maximize=False, l1=0.0, decoupled_weight_decay=False,
         grad_scale=1.0, clip_value=None):
    bufs = _as_list(momentum_buffers)
    for i, (p, g) in enumerate(zip(_as_list(params), _as_list(grads))):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        if momentum != 0:
            b = bufs[i]
            if step == 1:
                b[...] = g
            else:
                b[...] = momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p[...] = _prox_l1(param - lr * g, lr * l1)


def adagrad_(params, grads, sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
             eps=1e-10, maximize=False, l1=0.0, decoupled_weight_decay=False, grad_scale=1.0,
             clip_value=None):
    clr = lr / (1 + (step - 1) * lr_decay)
    for p, g, s in zip(_as_list(params), _as_list(grads), _as_list(sums)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, clr, weight_decay, decoupled_weight_decay)
        s[...] = s + g * g
        p[...] = _prox_l1(param - clr * (g / (np.sqrt(s) + eps)), clr * l1)


def rmsprop_(params, grads, square_avgs, grad_avgs=None, momentum_buffers=None, *, lr=1e-2,
             alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
             maximize=False, l1=0.0, decoupled_weight_decay=False, grad_scale=1.0, clip_value=None):
    grad_avgs, bufs = _as_list(grad_avgs), _as_list(momentum_buffers)
    for i, (p, g, v) in enumerate(zip(_as_list(params), _as_list(grads), _as_list(square_avgs))):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        v[...] = alpha * v + (1 - alpha) * (g * g)
        if centered:
            a = grad_avgs[i]
            a[...] = alpha * a + (1 - alpha) * g
            avg = np.sqrt(np.maximum(v - a * a, 0)) + eps
        else:
            avg = np.sqrt(v) + eps
        if momentum > 0:
            b = bufs[i]
            b[...] = momentum * b + g / avg
            stepped = param - lr * b
        else:
            stepped = param - lr * (g / avg)
        p[...] = _prox_l1(stepped, lr * l1)


def _moments(params, grads, exp_avgs, exp_avg_sqs, betas, lr, weight_decay, decoupled_weight_decay,
             maximize, grad_scale, clip_value):
    """Adam's two moving averages, per array, for the Adam family: yields
    ``(p, param, g, m, v)`` with g preprocessed, param decayed (decoupled
    decay) and ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g`` stored."""
    beta1, beta2 = betas
    for p, g, m, v in zip(_as_list(params), _as_list(grads), _as_list(exp_avgs), _as_list(exp_avg_sqs)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * (g * g)
        yield p, param, g, m, v


def adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
          decoupled_weight_decay=False, l1=0.0, grad_scale=1.0, clip_value=None):
    beta1, beta2 = betas
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    # sqrt(vhat)/sqrt(bc2) is computed as sqrt(vhat) * (1/sqrt(bc2)), with the
    # reciprocal in double: one division per element instead of two.
    inv_bias_correction2_sqrt = 1 / math.sqrt(bias_correction2)
    vmaxes = _as_list(max_exp_avg_sqs)
    moments = _moments(params, grads, exp_avgs, exp_avg_sqs, betas, lr, weight_decay, decoupled_weight_decay,
                       maximize, grad_scale, clip_value)
    for i, (p, param, _g, m, v) in enumerate(moments):
        vhat = v
        if amsgrad:
            vmaxes[i][...] = np.maximum(vmaxes[i], v)
            vhat = vmaxes[i]
        stepped = param - step_size * (m / (np.sqrt(vhat) * inv_bias_correction2_sqrt + eps))
        p[...] = _prox_l1(stepped, lr * l1)


def adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3,
           betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
           l1=0.0, grad_scale=1.0, clip_value=None):
    adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step=step, lr=lr, betas=betas,
          eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
          decoupled_weight_decay=True, l1=l1, grad_scale=grad_scale, clip_value=clip_value)


def rprop_(params, grads, prevs, step_sizes, prev_updates=None, *, variant="irprop-",
           etaminus=0.5, etaplus=1.2, step_size_min=1e-6, step_size_max=50.0, weight_decay=0.0,
           maximize=False, loss=None, prev_loss=None, l1=0.0, decoupled_weight_decay=False,
           grad_scale=1.0, clip_value=None):
    """Regularization uses each weight's step size D as its learning rate."""
    restore = variant == "rprop+" or (
        variant == "irprop+" and prev_loss is not None and loss > prev_loss
    )
    updates = _as_list(prev_updates)
    for i, (p, g, prev, d) in enumerate(
        zip(_as_list(params), _as_list(grads), _as_list(prevs), _as_list(step_sizes))
    ):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        s = np.sign(prev) * np.sign(g)
        factor = np.where(s > 0, etaplus, np.where(s < 0, etaminus, 1.0)).astype(p.dtype)
        d[...] = np.clip(d * factor, step_size_min, step_size_max)
        param = p * (1 - d * weight_decay) if decoupled_weight_decay else p
        if variant in ("irprop-", "rprop-"):
            if variant == "irprop-":
                g = np.where(s < 0, 0, g).astype(p.dtype)
            stepped = param - np.sign(g) * d
            prev[...] = g
        else:  # rprop+ / irprop+: weight backtracking on a sign change
            reversed_ = s < 0
            dw = np.where(reversed_, 0, -np.sign(g) * d).astype(p.dtype)
            undo = updates[i] if restore else np.zeros_like(p)
            stepped = np.where(reversed_, param - undo, param + dw)
            prev[...] = np.where(reversed_, 0, g)
            updates[i][...] = dw
        p[...] = _prox_l1(stepped, d * l1)


def quickprop_(params, grads, prev_steps, prev_grads, *, lr=1e-2, mu=1.75, decay=1e-4,
               mode_switch=0.0, momentum=0.0, weight_decay=0.0, maximize=False, l1=0.0,
               decoupled_weight_decay=False, grad_scale=1.0, clip_value=None):
    shrink = mu / (1 + mu)
    for p, g, d, gp in zip(_as_list(params), _as_list(grads), _as_list(prev_steps),
                           _as_list(prev_grads)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        if decay != 0:
            g = g + decay * p
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        s, sp = -g, -gp
        gradient_step = lr * s
        direction = np.where(d > mode_switch, 1, np.where(d < -mode_switch, -1, 0)).astype(p.dtype)
        # Slopes measured along the last step: the d < 0 case is the mirror image of d > 0.
        s_along, sp_along = direction * s, direction * sp
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = sp_along - s_along
            factor = np.clip(s_along / denom, -1, mu)
        max_growth = (s_along > shrink * sp_along) | ~(denom > 0)
        quadratic_step = np.where(s_along > 0, gradient_step, 0) + np.where(
            max_growth, mu * d, d * factor
        )
        step = np.where(
            direction == 0,
            gradient_step + momentum * d,
            np.where(sp_along > 0, quadratic_step, gradient_step),  # guard: no valid secant
        )
        step = np.where(np.isnan(s), s, step).astype(p.dtype)  # a NaN slope: a NaN step
        p[...] = _prox_l1(param + step, lr * l1)
        d[...] = step
        gp[...] = g


# Reductions (LAMB's trust ratio, Adafactor's RMS and row means) use the
# kernels' deterministic order, so the reference matches them bit for bit
# whatever the thread count or SIMD width: the array is cut into chunks of
# 4096 consecutive elements; inside a chunk, element i is added to lane
# i % 8, each lane summed sequentially from 0.0; the eight lanes are combined
# as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); the chunk sums are
# then added sequentially from 0.0, in chunk order. All of it in double.
# (np.sum and math.fsum round differently; Adafactor's column means and mean
# of the row factor are plain sequential sums, cumsum(...)[-1].)
_CHUNK = 4096
_LANES = 8


def _ordered_sum(x):
    """Sum of a 1-D float64 array in the kernels' order (comment above); the
    zeros padding a chunk to a multiple of 8 do not change a sum of
    non-negative terms. An empty array sums to 0.0."""
    total = 0.0
    for start in range(0, x.size, _CHUNK):
        chunk = x[start:start + _CHUNK]
        padded = np.concatenate([chunk, np.zeros(-chunk.size % _LANES)])
        lane = [float(v) for v in padded.reshape(-1, _LANES).cumsum(axis=0)[-1]]
        total += ((lane[0] + lane[1]) + (lane[2] + lane[3])) + (
            (lane[4] + lane[5]) + (lane[6] + lane[7]))
    return total


def _seq_sum(x, axis):
    """Plain sequential sum from 0.0 in index order along ``axis`` (kept)."""
    return np.take(np.cumsum(x, axis=axis), [-1], axis=axis)


def _sign(x):
    """np.sign, as the kernels compute it: sign(+-0) = +0, sign(NaN) = NaN."""
    return np.sign(x)


def adadelta_(params, grads, square_avgs, acc_deltas, *, lr=1.0, rho=0.9, eps=1e-6,
              weight_decay=0.0, maximize=False, decoupled_weight_decay=False, l1=0.0,
              grad_scale=1.0, clip_value=None):
    """``v = rho*v + (1-rho)*g*g``, ``delta = sqrt(u+eps)/sqrt(v+eps) * g``,
    ``u = rho*u + (1-rho)*delta*delta``, ``p = p - lr*delta``."""
    for p, g, v, u in zip(_as_list(params), _as_list(grads), _as_list(square_avgs),
                          _as_list(acc_deltas)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        v[...] = rho * v + (1 - rho) * (g * g)
        delta = (np.sqrt(u + eps) / np.sqrt(v + eps)) * g
        u[...] = rho * u + (1 - rho) * (delta * delta)
        p[...] = _prox_l1(param - lr * delta, lr * l1)


def adamax_(params, grads, exp_avgs, exp_infs, *, step, lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
            weight_decay=0.0, maximize=False, decoupled_weight_decay=False, l1=0.0,
            grad_scale=1.0, clip_value=None):
    """``m = b1*m + (1-b1)*g``, ``u = max(b2*u, |g| + eps)``,
    ``p = p - lr/(1 - b1**step) * m/u``."""
    beta1, beta2 = betas
    clr = lr / (1 - beta1**step)
    for p, g, m, u in zip(_as_list(params), _as_list(grads), _as_list(exp_avgs),
                          _as_list(exp_infs)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        m[...] = beta1 * m + (1 - beta1) * g
        u[...] = np.maximum(beta2 * u, np.abs(g) + eps)
        p[...] = _prox_l1(param - clr * (m / u), lr * l1)


def nadam_mu(step, beta1, momentum_decay):
    """NAdam's momentum coefficient ``b1 * (1 - 0.5 * 0.96**(step*momentum_decay))``."""
    return beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))


def nadam_(params, grads, exp_avgs, exp_avg_sqs, *, step, mu_product, lr=2e-3,
           betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
           decoupled_weight_decay=False, maximize=False, l1=0.0, grad_scale=1.0,
           clip_value=None):
    """With ``mu_product`` the product of mu_1 .. mu_{step-1} (the caller then
    multiplies it by :func:`nadam_mu` of this step), ``prod = mu_product*mu``:
    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``,
    ``denom = sqrt(v)/sqrt(1 - b2**step) + eps``,
    ``p = p - lr*(1-mu)/(1-prod) * g/denom - lr*mu_next/(1-prod*mu_next) * m/denom``."""
    beta1, beta2 = betas
    mu = nadam_mu(step, beta1, momentum_decay)
    mu_next = nadam_mu(step + 1, beta1, momentum_decay)
    prod = mu_product * mu
    prod_next = prod * mu_next
    c_grad = lr * (1 - mu) / (1 - prod)
    c_avg = lr * mu_next / (1 - prod_next)
    inv_bias_correction2_sqrt = 1 / math.sqrt(1 - beta2**step)
    for p, param, g, m, v in _moments(params, grads, exp_avgs, exp_avg_sqs, betas, lr, weight_decay,
                                      decoupled_weight_decay, maximize, grad_scale, clip_value):
        denom = np.sqrt(v) * inv_bias_correction2_sqrt + eps
        p[...] = _prox_l1((param - c_grad * (g / denom)) - c_avg * (m / denom), lr * l1)


def radam_rectified_step(step, lr, betas):
    """RAdam's adaptive step size ``lr*r*sqrt(bc2)/bc1`` at ``step``, with the
    rectification ``r``, when the SMA length ``rho_t`` exceeds 5; else None
    (the un-adapted step ``lr/bc1`` applies)."""
    beta1, beta2 = betas
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2**step / bias_correction2
    if rho_t <= 5:
        return None
    r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return lr * r * math.sqrt(bias_correction2) / bias_correction1


def radam_(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
           weight_decay=0.0, decoupled_weight_decay=False, maximize=False, l1=0.0,
           grad_scale=1.0, clip_value=None):
    """Adam's moments; when the SMA length ``rho_t`` exceeds 5,
    ``p = p - lr*r*sqrt(bc2)/bc1 * m/(sqrt(v) + eps)`` with the rectification r,
    else the unadapted step ``p = p - lr/bc1 * m``."""
    c = radam_rectified_step(step, lr, betas)
    bias_correction1 = 1 - betas[0] ** step
    for p, param, _g, m, v in _moments(params, grads, exp_avgs, exp_avg_sqs, betas, lr, weight_decay,
                                       decoupled_weight_decay, maximize, grad_scale, clip_value):
        if c is not None:
            stepped = param - c * (m / (np.sqrt(v) + eps))
        else:
            stepped = param - (lr / bias_correction1) * m
        p[...] = _prox_l1(stepped, lr * l1)


def asgd_schedule(step, lr, lambd, alpha, t0):
    """ASGD's ``(eta, mu)`` after ``step``: ``eta = lr / (1 + lambd*lr*step)**alpha``,
    ``mu = 1 / max(1, step - t0)``."""
    return lr / (1 + lambd * lr * step) ** alpha, 1 / max(1, step - t0)


def asgd_(params, grads, axs, *, eta, mu, lr=1e-2, lambd=1e-4, weight_decay=0.0, maximize=False,
          decoupled_weight_decay=False, l1=0.0, grad_scale=1.0, clip_value=None):
    """With ``eta``, ``mu`` the values before this step (:func:`asgd_schedule`;
    eta starts at lr, mu at 1): ``p = p*(1 - lambd*eta) - eta*g``, then the
    average ``ax = p`` if mu == 1 else ``ax = ax + mu*(p - ax)``. ``l1``
    thresholds by ``eta*l1``; decoupled decay uses ``lr``."""
    for p, g, ax in zip(_as_list(params), _as_list(grads), _as_list(axs)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        p1 = param * (1 - lambd * eta)
        p2 = p1 - eta * g
        p[...] = _prox_l1(p2, eta * l1)
        ax[...] = p if mu == 1 else ax + mu * (p - ax)


def lion_(params, grads, exp_avgs, *, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
          maximize=False, decoupled_weight_decay=True, l1=0.0, grad_scale=1.0, clip_value=None):
    """``p = p - lr*sign(b1*m + (1-b1)*g)``, then ``m = b2*m + (1-b2)*g``.
    Weight decay is decoupled by default."""
    beta1, beta2 = betas
    for p, g, m in zip(_as_list(params), _as_list(grads), _as_list(exp_avgs)):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        c = beta1 * m + (1 - beta1) * g
        p[...] = _prox_l1(param - lr * _sign(c), lr * l1)
        m[...] = beta2 * m + (1 - beta2) * g


def lamb_(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
          weight_decay=0.0, maximize=False, l1=0.0, grad_scale=1.0, clip_value=None):
    """Per array, the Adam direction plus its own decay term
    ``r = (m/bc1) / (sqrt(v)/sqrt(bc2) + eps) + weight_decay*p``, scaled by the
    trust ratio ``phi = ||p|| / ||r||`` (1 if either norm is 0):
    ``p = p - lr*phi * r``. Norms use :func:`_ordered_sum`."""
    beta1, beta2 = betas
    inv_bias_correction1 = 1 / (1 - beta1**step)
    inv_bias_correction2_sqrt = 1 / math.sqrt(1 - beta2**step)
    for p, g, m, v in zip(_as_list(params), _as_list(grads), _as_list(exp_avgs),
                          _as_list(exp_avg_sqs)):
        g = _preprocess(g, p, maximize, 0.0, False, grad_scale, clip_value)
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * (g * g)
        adam_direction = (inv_bias_correction1 * m) / (np.sqrt(v) * inv_bias_correction2_sqrt + eps)
        r = adam_direction + weight_decay * p
        p_norm_sq = _ordered_sum(np.ravel(p).astype(np.float64) ** 2)
        r_norm_sq = _ordered_sum(np.ravel(r).astype(np.float64) ** 2)
        both_positive = p_norm_sq > 0 and r_norm_sq > 0
        phi = math.sqrt(p_norm_sq) / math.sqrt(r_norm_sq) if both_positive else 1.0
        p[...] = _prox_l1(p - (lr * phi) * r, lr * l1)


def _lerp(a, b, w):
    """torch.lerp's formula: ``a + w*(b - a)`` if w < 0.5 else ``b - (b - a)*(1 - w)``."""
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


def adafactor_(params, grads, row_vars, col_vars, variances, *, step, lr=1e-2, beta2_decay=-0.8,
               eps=(None, 1e-3), d=1.0, weight_decay=0.0, maximize=False, l1=0.0, grad_scale=1.0,
               clip_value=None):
    """torch.optim.Adafactor. With ``w = step**beta2_decay``: an array of ndim >= 2
    keeps factored second moments over its last two axes (row_var: shape[:-1]
    + (1,), col_var: shape[:-2] + (1, C); variances[i] is None), lerped by w
    towards the row and column means of g*g, ``V = row_var*col_var /
    max(mean(row_var), eps1)``; ndim <= 1 keeps ``variance`` (lerped towards
    g*g; row and col None) and ``V = variance``. Then ``u = g/sqrt(max(V, eps1**2))``,
    ``p = p*(1 - lr*wd) - alpha/max(1, rms(u)/d) * u`` with
    ``alpha = max(eps2, rms(p)) * min(lr, 1/sqrt(step))`` (p before the decay);
    eps1 None means the dtype's machine epsilon."""
    eps1, eps2 = eps
    row_vars, col_vars, variances = _as_list(row_vars), _as_list(col_vars), _as_list(variances)
    one_minus_beta2 = step**beta2_decay
    rho = min(lr, 1 / step**0.5)
    for i, (p, g) in enumerate(zip(_as_list(params), _as_list(grads))):
        if p.size == 0:  # nothing to update (its RMS would be 0/0)
            continue
        e1 = float(np.finfo(p.dtype).eps) if eps1 is None else eps1
        g = _preprocess(g, p, maximize, 0.0, False, grad_scale, clip_value)
        p_norm_sq = _ordered_sum(np.ravel(p).astype(np.float64) ** 2)
        alpha = max(eps2, math.sqrt(p_norm_sq) / math.sqrt(p.size)) * rho
        param = _decoupled(p, lr, weight_decay, True)
        if p.ndim >= 2:
            row_var, col_var = row_vars[i], col_vars[i]
            rows, cols = p.shape[-2], p.shape[-1]
            g_sq = g.astype(np.float64) ** 2
            row_sums = np.array([_ordered_sum(g_sq[ix]) for ix in np.ndindex(g_sq.shape[:-1])])
            row_mean = (row_sums.reshape(row_var.shape) / cols).astype(p.dtype)
            col_mean = (_seq_sum(g_sq, -2) / rows).astype(p.dtype)
            row_var[...] = _lerp(row_var, row_mean, one_minus_beta2)
            col_var[...] = _lerp(col_var, col_mean, one_minus_beta2)
            row_var_mean = (_seq_sum(row_var.astype(np.float64), -2) / rows).astype(p.dtype)
            var_estimate = (row_var * col_var) / np.maximum(row_var_mean, e1)
        else:
            variance = variances[i]
            variance[...] = _lerp(variance, g * g, one_minus_beta2)
            var_estimate = variance
        u = g / np.sqrt(np.maximum(var_estimate, e1 * e1))
        u_norm_sq = _ordered_sum(np.ravel(u).astype(np.float64) ** 2)
        denom = max(1.0, math.sqrt(u_norm_sq) / (math.sqrt(p.size) * d))
        p[...] = _prox_l1(param - (alpha / denom) * u, lr * l1)


# ------------------------------------------------------- 16-bit parameters
# docs/algorithms.md, "16-bit parameters": the float32 rule runs on widened
# values (or the float32 master) and the result is written back by one of
# these. ml_dtypes is needed only for bfloat16 arrays, which the caller brings.

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _mix64(z):
    """SplitMix64's output function, on a Python int or a uint64 array (wrapping)."""
    if isinstance(z, np.ndarray):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def random_draws(seed: int, step: int, tensor_id: int, n: int, first: int = 0) -> np.ndarray:
    """The 32-bit draws of elements first .. first+n-1 of tensor ``tensor_id``
    at ``step``: the stream ``s = mix64(mix64(mix64(seed) ^ step) ^ tensor_id)``,
    draw i = the top half of ``mix64(s + (i + 1) * golden)`` (SplitMix64's
    (i+1)-th output)."""
    stream = _mix64(_mix64(_mix64(seed) ^ step) ^ tensor_id)
    index = np.arange(first + 1, first + n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(stream) + index * np.uint64(_GOLDEN)
    return (_mix64(z) >> np.uint64(32)).astype(np.uint32)


def _is_bfloat16(dtype) -> bool:
    return np.dtype(dtype).kind == "V" and np.dtype(dtype).name == "bfloat16"


def widen(x: np.ndarray) -> np.ndarray:
    """A float16/bfloat16 array's exact float32 values."""
    return x.astype(np.float32)


def round_nearest(x: np.ndarray, dtype) -> np.ndarray:
    """float32 -> dtype, round to nearest even (overflow gives infinity)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dtype)


def round_stochastic(x: np.ndarray, dtype, draws: np.ndarray) -> np.ndarray:
    """float32 -> dtype, rounding the magnitude up with probability equal to
    the dropped fraction, from one 32-bit draw per element.

    bfloat16: add the draw's low 16 bits to the float32 bits and truncate.
    float16: with q the float16 spacing at |x| (at least 2^-24) and
    |x| = (n + f) q, take (n + 1) q when ``(draw >> 8) < f * 2^24``, else n q.
    NaN stays NaN; infinities stay; a carry past the largest finite value
    gives infinity."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    draws = draws.astype(np.uint32)
    bits = x.view(np.uint32)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if _is_bfloat16(dtype):
        rounded = ((bits + (draws & np.uint32(0xFFFF))) >> np.uint32(16)).astype(np.uint16)
        quiet_nan = ((bits >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
        return np.where(nan, quiet_nan, rounded).view(dtype)
    a = np.abs(x)
    exponent = np.maximum((a.view(np.uint32) >> np.uint32(23)).astype(np.int32) - 127, -14)
    scale = np.minimum(exponent - 10, 127)
    q = ((scale + 127).astype(np.uint32) << np.uint32(23)).view(np.float32)
    inverse_q = ((127 - scale).astype(np.uint32) << np.uint32(23)).view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        m = a * inverse_q
        n = np.trunc(m)
        f = m - n
        up = (draws >> np.uint32(8)).astype(np.float32) < f * np.float32(16777216.0)
        magnitude = (n + up.astype(np.float32)) * q
        return np.copysign(magnitude, x).astype(np.float16)


def join_master(param: np.ndarray, low_bits: np.ndarray) -> np.ndarray:
    """The split master: float32 with the bfloat16 parameter's bits on top."""
    return ((param.view(np.uint16).astype(np.uint32) << np.uint32(16)) | low_bits).view(np.float32)


def narrow_(rule, params, grads, *state, masters=None, rounding="nearest", master_weights=None, seed=0,
            rounding_step=1, tensor_ids=None, **hyper):
    """``rule`` (a reference optimizer, e.g. :func:`adam_`) on float16/bfloat16
    ``params``: every parameter widened (or its master taken), every gradient
    widened, the float32 rule run on them, each result written back:
    ``master_weights="split"`` stores the master's halves (``params`` its top,
    ``masters`` its low 16 bits), otherwise ``params`` gets the result (or
    the float32 master's) rounding by ``rounding``. ``tensor_ids`` (default
    0, 1, ...) and ``rounding_step`` select the random stream."""
    params, grads = _as_list(params), _as_list(grads)
    masters = _as_list(masters) or [None] * len(params)
    tensor_ids = range(len(params)) if tensor_ids is None else tensor_ids
    if master_weights == "float32":
        wide = masters
    elif master_weights == "split":
        wide = [join_master(p, lo) for p, lo in zip(params, masters)]
    else:
        wide = [widen(p) for p in params]
    rule(wide, [g.astype(np.float32) for g in grads], *state, **hyper)
    for p, value, master, tensor in zip(params, wide, masters, tensor_ids):
        flat = value.reshape(-1)
        if master_weights == "split":
            bits = flat.view(np.uint32)
            p.reshape(-1).view(np.uint16)[...] = (bits >> np.uint32(16)).astype(np.uint16)
            master.reshape(-1)[...] = (bits & np.uint32(0xFFFF)).astype(np.uint16)
        elif rounding == "stochastic":
            draws = random_draws(seed, rounding_step, tensor, flat.size)
            p.reshape(-1)[...] = round_stochastic(flat, p.dtype, draws)
        else:
            p.reshape(-1)[...] = round_nearest(flat, p.dtype)


# ------------------------------------------------------------- 8-bit state
# bitsandbytes' dynamic maps (create_dynamic_map(signed=True/False)), as the
# float32 bit patterns of the 256 values in ascending order.
_SIGNED_MAP_BITS = (
    "bf7e3333bf7a999abf770000bf736666bf6fcccdbf6c3333bf68999abf650000bf616666bf5dcccdbf5a3333bf56999a"
    "bf530000bf4f6666bf4bcccdbf483333bf44999abf410000bf3d6666bf39cccdbf363334bf32999abf2f0000bf2b6666"
    "bf27cccdbf243334bf20999abf1d0000bf196666bf15cccdbf123334bf0e999abf0b0000bf076666bf03ccccbf003333"
    "bef93332bef20000beeaccccbee3999abedc6666bed53333bece0000bec6ccccbebf999abeb86666beb13333beaa0000"
    "bea2ccccbe9b999abe946666be8d3334be860000be7d9999be6f3333be60cccdbe526666be440000be35999abe273333"
    "be18cccdbe0a6666bdf80000bddb3334bdc9eb85bdc428f7bdbe6667bdb8a3d7bdb2e148bdad1eb8bda75c2abda1999a"
    "bd9bd70abd96147bbd9051ebbd8a8f5dbd84cccdbd7e147bbd728f5dbd670a3dbd5b851fbd500000bd447ae1bd38f5c3"
    "bd2d70a3bd21eb85bd166667bd0ae148bcfeb852bce7ae15bcd0a3d7bcb9999abca28f5dbc8b851fbc68f5c3bc3ae148"
    "bc1f3b64bc160418bc0ccccdbc039581bbf4bc6abbe24dd3bbcfdf3bbbbd70a4bbab020dbb989374bb8624ddbb676c8a"
    "bb428f5cbb1db22dbaf1a9fcbaa7ef9dba7765ffba59e83eba3c6a80ba1eecc1ba016f01b9c7e283b98ce705b923d70b"
    "b8ba1f4bb88aefb3b8378034b7b24206b70205ffb65a1a94b513a3b7000000003513a3b7365a1a94370205ff37b24206"
    "38378034388aefb338ba1f4b3923d70b398ce70539c7e2833a016f013a1eecc13a3c6a803a59e83e3a7765ff3aa7ef9d"
    "3af1a9fc3b1db22d3b428f5c3b676c8a3b8624dd3b9893743bab020d3bbd70a43bcfdf3b3be24dd33bf4bc6a3c039581"
    "3c0ccccd3c1604183c1f3b643c3ae1483c68f5c33c8b851f3ca28f5d3cb9999a3cd0a3d73ce7ae153cfeb8523d0ae148"
    "3d1666673d21eb853d2d70a33d38f5c33d447ae13d5000003d5b851f3d670a3d3d728f5d3d7e147b3d84cccd3d8a8f5d"
    "3d9051eb3d96147b3d9bd70a3da1999a3da75c2a3dad1eb83db2e1483db8a3d73dbe66673dc428f73dc9eb853ddb3334"
    "3df800003e0a66663e18cccd3e2733333e35999a3e4400003e5266663e60cccd3e6f33333e7d99993e8600003e8d3334"
    "3e9466663e9b999a3ea2cccc3eaa00003eb133333eb866663ebf999a3ec6cccc3ece00003ed533333edc66663ee3999a"
    "3eeacccc3ef200003ef933323f0033333f03cccc3f0766663f0b00003f0e999a3f1233343f15cccd3f1966663f1d0000"
    "3f20999a3f2433343f27cccd3f2b66663f2f00003f32999a3f3633343f39cccd3f3d66663f4100003f44999a3f483333"
    "3f4bcccd3f4f66663f5300003f56999a3f5a33333f5dcccd3f6166663f6500003f68999a3f6c33333f6fcccd3f736666"
    "3f7700003f7a999a3f7e33333f800000"
)
_UNSIGNED_MAP_BITS = (
    "0000000034ae7baa35500998360e9b383692ccf636de4c513714e5d53783126e37e171a0381fe868384f1800387e479a"
    "3896bb9938ae536438c5eb313906594b394154ca397c5049399ba5e439b923a239d6a16339f41f223a08ce713a178d50"
    "3a264c303a350b103a43c9ef3a5288d03a6147af3a70068e3a7ec56e3a9581063aba5e353adf3b643b020c4a3b147ae1"
    "3b26e9783b3958103b4bc6a73b5e35403b70a3d73b8189373b8ac0823b93f7cf3b9d2f1a3ba666663baf9db23bb8d4fd"
    "3bc20c4a3bcb43953bd47ae13bddb22e3be6e9783bf020c53bf9580f3c0147ae3c05e3543c0a7ef93c0f1aa03c13b645"
    "3c1851eb3c1ced923c2189373c2f5c2a3c4666673c5d70a33c747ae23c85c28f3c9147af3c9ccccd3ca851eb3cb3d70b"
    "3cbf5c293ccae1473cd666673ce1eb873ced70a33cf8f5c33d023d703d0800003d0dc28f3d13851f3d1947af3d1f0a3d"
    "3d24cccd3d2a8f5c3d3051eb3d36147b3d3bd70a3d41999a3d475c283d4d1eb83d52e1473d58a3d73d5e66673d6428f7"
    "3d69eb873d6fae153d7570a33d7b33333d807ae23d835c2a3d863d713d891eb83d8c00003d8ee1483d91c2903d94a3d7"
    "3d97851f3d9a66673d9d47af3da028f63da30a3e3da5eb853da8cccd3dabae153dae8f5c3db170a43db451eb3db73333"
    "3dba147b3dbcf5c33dbfd70b3dc2b8523dc5999a3dc87ae23dcb5c293dd400003de266663df0cccd3dff33333e06cccc"
    "3e0e00003e1533343e1c66663e23999a3e2acccc3e3200003e3933343e4066663e47999a3e4ecccc3e5600003e5d3334"
    "3e6466663e6b999a3e72cccc3e7a00003e8099993e8433333e87cccd3e8b66663e8f00003e92999a3e9633333e99cccc"
    "3e9d66663ea100003ea4999a3ea833333eabcccc3eaf66663eb300003eb6999a3eba33333ebdcccc3ec166663ec50000"
    "3ec8999a3ecc33333ecfcccc3ed366663ed700003eda999a3ede33333ee1cccc3ee566663ee900003eec999a3ef03333"
    "3ef3cccc3ef766663efb00003efe99993f01199a3f02e6663f04b3333f0680003f084ccc3f0a199a3f0be6663f0db334"
    "3f0f80003f114ccd3f13199a3f14e6663f16b3343f1880003f1a4ccd3f1c199a3f1de6663f1fb3343f2180003f234ccd"
    "3f25199a3f26e6663f28b3343f2a80003f2c4ccd3f2e199a3f2fe6663f31b3343f3380003f354ccd3f37199a3f38e666"
    "3f3ab3343f3c80003f3e4ccd3f40199a3f41e6663f43b3343f4580003f474ccc3f49199a3f4ae6663f4cb3343f4e8000"
    "3f504ccc3f52199a3f53e6663f55b3343f5780003f594ccc3f5b199a3f5ce6663f5eb3343f6080003f624ccc3f64199a"
    "3f65e6663f67b3343f6980003f6b4ccc3f6d199a3f6ee6663f70b3343f7280003f744ccc3f76199a3f77e6663f79b334"
    "3f7b80003f7d4ccc3f7f199a3f800000"
)
DYNAMIC_MAP_SIGNED = np.frombuffer(bytes.fromhex(_SIGNED_MAP_BITS), dtype=">u4").astype(np.uint32).view(np.float32)
DYNAMIC_MAP_UNSIGNED = np.frombuffer(bytes.fromhex(_UNSIGNED_MAP_BITS), dtype=">u4").astype(np.uint32).view(np.float32)
QUANT_BLOCK = 256


def dynamic_map(signed: bool) -> np.ndarray:
    return DYNAMIC_MAP_SIGNED if signed else DYNAMIC_MAP_UNSIGNED


def nearest_codes(y: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The index of the entry of ``values`` nearest to each y (float32
    distances; ties: the lower index); NaN counts as 0."""
    y = np.where(np.isnan(y), np.float32(0), y).astype(np.float32)
    lo = np.clip(np.searchsorted(values, y, side="right") - 1, 0, 255)
    hi = np.minimum(lo + 1, 255)
    below = (y - values[lo]).astype(np.float32)
    above = (values[hi] - y).astype(np.float32)
    codes = np.where((hi > lo) & (above < below), hi, lo)
    return np.where(y < values[0], 0, codes).astype(np.uint8)


def quantize_blockwise(x: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codes, absmax) of float32 ``x``: per block of 256 consecutive
    elements, absmax = max |x| (NaN ignored) and each code the nearest map
    entry to x / absmax; a block with absmax 0 gets the zero entry's code."""
    values = dynamic_map(signed)
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    blocks = -(-flat.size // QUANT_BLOCK)
    padded = np.zeros(blocks * QUANT_BLOCK, np.float32)
    padded[:flat.size] = flat
    rows = padded.reshape(blocks, QUANT_BLOCK)
    absmax = np.fmax.reduce(np.abs(rows), axis=1, initial=np.float32(0)).astype(np.float32)
    safe = np.where(absmax == 0, np.float32(1), absmax)[:, None]
    y = np.where(absmax[:, None] == 0, np.float32(0), rows / safe).astype(np.float32)
    codes = nearest_codes(y.reshape(-1), values)[:flat.size]
    return codes.reshape(np.shape(x)), absmax


def dequantize_blockwise(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    """map[codes] * absmax of each element's block, in float32."""
    flat = codes.reshape(-1)
    scale = np.repeat(absmax, QUANT_BLOCK)[:flat.size]
    return (dynamic_map(signed)[flat] * scale).astype(np.float32).reshape(codes.shape)


def quantized_(rule, params, grads, *state, state_maps, **hyper):
    """``rule`` (a reference optimizer, or :func:`narrow_` around one) with
    8-bit state: each state entry that is a ``(codes, absmax)`` pair is
    dequantized to float32, the rule runs on the float32 values, and the
    result is requantized into the pair (``state_maps[k]``: "signed" or
    "unsigned", the map of state argument k)."""
    def entries_of(value):  # a list of arrays and pairs; a lone pair is one entry
        return [value] if isinstance(value, tuple) else _as_list(value)

    wide_state = []
    for entries, kind in zip(state, state_maps):
        entries = entries_of(entries)
        if entries is None:
            wide_state.append(None)
            continue
        wide_state.append([dequantize_blockwise(*e, kind == "signed") if isinstance(e, tuple) else e
                           for e in entries])
    rule(params, grads, *wide_state, **hyper)
    for entries, wide, kind in zip(state, wide_state, state_maps):
        for e, w in zip(entries_of(entries) or [], wide or []):
            if isinstance(e, tuple):
                codes, absmax = quantize_blockwise(w, kind == "signed")
                e[0][...] = codes
                e[1][...] = absmax
