"""Pure-NumPy versions of every fastopt kernel: the test oracle and the
"plain Python" baseline of the benchmarks.

Each function has the same signature as its twin in :mod:`fastopt.functional`
(less ``num_threads`` and ``stats``) and updates its arrays in place. The
bodies are the update rules of ALGORITHMS.md written as plainly as NumPy
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

__all__ = ["sgd_", "adagrad_", "rmsprop_", "adam_", "adamw_", "rprop_", "quickprop_"]


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
    return np.where(shrunk > 0, np.copysign(shrunk, p), 0).astype(p.dtype)


def sgd_(params, grads, momentum_buffers=None, *, step, lr, momentum=0.0, dampening=0.0,
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


def adagrad_(params, grads, state_sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
             eps=1e-10, maximize=False, l1=0.0, decoupled_weight_decay=False, grad_scale=1.0,
             clip_value=None):
    clr = lr / (1 + (step - 1) * lr_decay)
    for p, g, s in zip(_as_list(params), _as_list(grads), _as_list(state_sums)):
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
    for i, (p, g, m, v) in enumerate(
        zip(_as_list(params), _as_list(grads), _as_list(exp_avgs), _as_list(exp_avg_sqs))
    ):
        g = _preprocess(g, p, maximize, weight_decay, decoupled_weight_decay, grad_scale, clip_value)
        param = _decoupled(p, lr, weight_decay, decoupled_weight_decay)
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * (g * g)
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
        ).astype(p.dtype)
        p[...] = _prox_l1(param + step, lr * l1)
        d[...] = step
        gp[...] = g
