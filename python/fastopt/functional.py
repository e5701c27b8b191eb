"""Stateless, in-place optimizer kernels on NumPy arrays.

Every function here updates its parameter and state arrays **in place** in one
fused pass over memory, in C++, and returns ``None``. Each buffer argument is
either one ``numpy.ndarray`` or a list of them; a list is updated in ONE call
into C++ (one GIL release, one parallel region), whatever its length.

Rules shared by every function:

* Arrays are float32 or float64, one dtype per call, C-contiguous, and
  writeable where they are updated. Nothing is converted or copied: an
  in-place update of a silent copy would be lost. Bad input raises
  ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, layout,
  read-only, shared memory, invalid hyperparameter, missing state) naming the
  argument, before any array is written.
* ``step`` is the 1-based step count *after* incrementing, as in torch.optim.
* Per-step scalars (bias corrections, ``1 - beta``) are computed in double
  precision; element arithmetic runs in the arrays' dtype, without fused
  multiply-add, in the operation order of :mod:`fastopt.reference`.
* ``num_threads=0`` uses the OpenMP default; results are bitwise identical for
  any thread count.
* Every optimizer also takes, in the same pass over memory:

  - ``weight_decay`` (coupled L2: ``g + weight_decay*p``; the lectures'
    ``lambda*||W||^2`` is ``weight_decay = 2*lambda``) or, with
    ``decoupled_weight_decay=True``, ``p <- p*(1 - lr*weight_decay)`` before
    the update (AdamW's rule, for any optimizer);
  - ``l1``: a proximal soft-threshold after the update,
    ``p <- sign(p)*max(|p| - lr*l1, 0)``, which makes weights exactly zero
    (a subgradient term would not); with ``weight_decay`` it is the elastic net;
  - ``grad_scale`` (a factor on the gradient: global-norm clipping, see
    :func:`fastopt.clip_grad_norm_`) and ``clip_value`` (clip each gradient
    element to ``[-clip_value, clip_value]``), applied after ``maximize`` and
    before the coupled decay. The caller's gradient arrays are never written.

  ``lr`` above is the optimizer's step size: Adagrad's decayed rate, and for
  Rprop each weight's own step size. The L1 threshold follows the rule
  ``lr*l1`` with that (base) rate: with a plain gradient step (SGD,
  Quickprop) it recovers a lasso's exact sparsity pattern; with adaptive
  methods (Adam, RMSprop, Adagrad) the per-weight step differs from ``lr``, so
  fewer weights settle at exactly 0, and for Adagrad, whose effective step
  shrinks over time, the shrinkage grows relative to the data term.
* ``stats=True`` returns a :class:`StepStats` (gradient, parameter and update
  norms, non-finite gradient count), gathered during the same pass.

The update rules are those of the project's ALGORITHMS.md and follow
``torch.optim`` (argument names, defaults, order of operations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

ArrayOrList = Union[np.ndarray, Sequence[np.ndarray]]

__all__ = ["sgd_", "adagrad_", "rmsprop_", "adam_", "adamw_", "rprop_", "quickprop_", "RPROP_VARIANTS",
           "StepStats"]

RPROP_VARIANTS = ("irprop-", "rprop-", "rprop+", "irprop+")


def _hyper(kind, **values):
    """Build a C++ hyperparameter set (validated in C++: ValueError names the
    argument), naming the argument of a pybind11 TypeError."""
    try:
        return kind(**values)
    except TypeError as error:
        _name_bad_scalar(error, values)


def _name_bad_scalar(error: TypeError, values) -> None:
    """Re-raise ``error``; if it is pybind11's generic "incompatible
    arguments" error for a non-numeric hyperparameter, say which one instead.
    Runs on the error path only, so valid calls pay nothing for it."""
    if "incompatible" in str(error):
        for name, value in values.items():
            if name == "step" and not isinstance(value, (int, np.integer)):
                raise TypeError(f"step must be an integer, got {type(value).__name__}") from None
            if value is None and name in ("loss", "prev_loss"):
                continue
            if not isinstance(value, (int, float, bool, np.number, np.bool_, str)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
            if isinstance(value, str) and name != "variant":
                raise TypeError(f"{name} must be a number, got str") from None
    raise error


def _pair(value, name: str) -> Tuple[float, float]:
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    return first, second


@dataclass(frozen=True)
class StepStats:
    """Diagnostics of one step, gathered during the update pass (no extra
    pass over memory), with a reduction that is bitwise identical for any
    thread count.

    Attributes:
        grad_norm: L2 norm of the gradients as passed in (before clipping).
        param_norm: L2 norm of the parameters before the step.
        update_norm: L2 norm of the change the step made to the parameters.
        update_ratio: ``update_norm / param_norm`` (the lectures' rule of thumb:
            about 1e-2); ``inf`` when ``param_norm`` is 0 and something moved.
        nonfinite_grads: gradient elements that are NaN or +-Inf.
        grad_scale: the global-norm clipping factor applied (1.0: none).
        skipped: True when the step was skipped (``nonfinite="skip"``).
    """

    grad_norm: float
    param_norm: float
    update_norm: float
    update_ratio: float
    nonfinite_grads: int
    grad_scale: float = 1.0
    skipped: bool = False

    @classmethod
    def from_sums(cls, grad_sq: float, param_sq: float, update_sq: float, nonfinite: int,
                  grad_scale: float = 1.0, skipped: bool = False) -> "StepStats":
        param_norm, update_norm = math.sqrt(param_sq), math.sqrt(update_sq)
        if param_norm > 0:
            ratio = update_norm / param_norm
        else:
            ratio = math.inf if update_norm > 0 else 0.0
        return cls(math.sqrt(grad_sq), param_norm, update_norm, ratio, int(nonfinite), grad_scale, skipped)


def sgd_(
    params: ArrayOrList,
    grads: ArrayOrList,
    momentum_buffers: Optional[ArrayOrList] = None,
    *,
    step: int,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    l1: float = 0.0,
    decoupled_weight_decay: bool = False,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""SGD with momentum, dampening and Nesterov momentum, in place.

    .. math::
        g \leftarrow \pm g + \lambda p, \quad
        b \leftarrow \begin{cases} g & t = 1 \\ \mu b + (1-\tau) g & t > 1\end{cases}, \quad
        g \leftarrow \begin{cases} g + \mu b & \text{nesterov} \\ b \end{cases}, \quad
        p \leftarrow p - \eta g

    ``momentum_buffers`` is needed only when ``momentum != 0``; at ``step == 1``
    it is overwritten with the gradient (its old contents are ignored).

    Lecture form: ``v = beta*v + eta*g; W = W - v`` keeps the learning rate
    inside the velocity. It equals this (torch) form while ``lr`` is constant
    (``v = lr*b``) and differs when ``lr`` changes. The lectures' Nesterov
    "look-ahead" gradient is the same algorithm after the change of variables
    ``p' = p - lr*momentum*b`` (Sutskever et al. 2013).
    """
    try:
        result = _core.sgd_step(params, grads, momentum_buffers, lr, momentum, dampening, weight_decay,
            nesterov, maximize, step, l1, decoupled_weight_decay,
            grad_scale, math.inf if clip_value is None else clip_value, num_threads, stats)
    except TypeError as error:
        _name_bad_scalar(error, dict(lr=lr, momentum=momentum, dampening=dampening,
            weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, step=step,
            l1=l1, grad_scale=grad_scale,
            clip_value=math.inf if clip_value is None else clip_value, num_threads=num_threads))
    return None if result is None else StepStats.from_sums(*result, grad_scale=grad_scale)


def adagrad_(
    params: ArrayOrList,
    grads: ArrayOrList,
    state_sums: ArrayOrList,
    *,
    step: int,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    l1: float = 0.0,
    decoupled_weight_decay: bool = False,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""Adagrad (Duchi, Hazan & Singer 2011), in place.

    .. math::
        g \leftarrow \pm g + \lambda p, \quad
        \tilde\eta = \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}, \quad
        s \leftarrow s + g^2, \quad
        p \leftarrow p - \tilde\eta\, \frac{g}{\sqrt{s} + \epsilon}

    Defaults: lr 1e-2, eps 1e-10 (torch.optim.Adagrad). The lectures put eps
    inside the square root, ``sqrt(s + eps)``; this follows torch.
    """
    try:
        result = _core.adagrad_step(params, grads, state_sums, lr, lr_decay, weight_decay, eps, maximize,
            step, l1, decoupled_weight_decay, grad_scale, math.inf if clip_value is None else clip_value, num_threads, stats)
    except TypeError as error:
        _name_bad_scalar(error, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            eps=eps, maximize=maximize, step=step, l1=l1, grad_scale=grad_scale,
            clip_value=math.inf if clip_value is None else clip_value, num_threads=num_threads))
    return None if result is None else StepStats.from_sums(*result, grad_scale=grad_scale)


def rmsprop_(
    params: ArrayOrList,
    grads: ArrayOrList,
    square_avgs: ArrayOrList,
    grad_avgs: Optional[ArrayOrList] = None,
    momentum_buffers: Optional[ArrayOrList] = None,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    l1: float = 0.0,
    decoupled_weight_decay: bool = False,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""RMSprop (Hinton 2012; centered form Graves 2013), in place.

    .. math::
        g \leftarrow \pm g + \lambda p, \quad
        v \leftarrow \alpha v + (1-\alpha) g^2, \quad
        a \leftarrow \alpha a + (1-\alpha) g \;\text{(centered)}, \\
        d = \sqrt{\max(v - a^2, 0)} + \epsilon \;\text{(centered) or}\; \sqrt{v} + \epsilon, \quad
        b \leftarrow \mu b + g/d,\; p \leftarrow p - \eta b \;\text{(momentum > 0) or}\;
        p \leftarrow p - \eta g / d

    ``grad_avgs`` is needed when ``centered``, ``momentum_buffers`` when
    ``momentum > 0``. Defaults: lr 1e-2, alpha 0.99, eps 1e-8 (torch). The
    ``max(., 0)`` only guards a variance that rounding made negative, where
    torch would return NaN.
    """
    try:
        result = _core.rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha,
            eps, weight_decay, momentum, centered, maximize, l1, decoupled_weight_decay,
            grad_scale, math.inf if clip_value is None else clip_value, num_threads, stats)
    except TypeError as error:
        _name_bad_scalar(error, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
            momentum=momentum, centered=centered, maximize=maximize, l1=l1, grad_scale=grad_scale,
            clip_value=math.inf if clip_value is None else clip_value, num_threads=num_threads))
    return None if result is None else StepStats.from_sums(*result, grad_scale=grad_scale)


def adam_(
    params: ArrayOrList,
    grads: ArrayOrList,
    exp_avgs: ArrayOrList,
    exp_avg_sqs: ArrayOrList,
    max_exp_avg_sqs: Optional[ArrayOrList] = None,
    *,
    step: int,
    lr: float = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    l1: float = 0.0,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""Adam (Kingma & Ba 2015) and AMSGrad (Reddi et al. 2018), in place.

    .. math::
        g \leftarrow \pm g + \lambda p, \quad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \\
        \hat v = \max(v_{max}, v) \;\text{(amsgrad, stored in}\; v_{max}) \;\text{or}\; v, \quad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,
            \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``decoupled_weight_decay=True`` the decay is AdamW's
    ``p <- p*(1 - lr*weight_decay)`` before the update instead of the coupled
    ``g + weight_decay*p``. Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8.
    Two of the lectures write ``sqrt(vhat + eps)``; torch, Kingma & Ba and the
    AdamW paper put eps outside the root, as here. ``sqrt(vhat)/sqrt(1-beta2**t)``
    is computed as ``sqrt(vhat) * (1/sqrt(1-beta2**t))`` with the reciprocal in
    double (one division per element fewer than torch, at most one rounding apart).
    """
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair of numbers, got {betas!r}") from None
    try:
        result = _core.adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, beta1, beta2,
            eps, weight_decay, amsgrad, maximize, step, l1, decoupled_weight_decay, grad_scale,
            math.inf if clip_value is None else clip_value, num_threads, stats)
    except TypeError as error:
        _name_bad_scalar(error, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay, step=step, l1=l1, grad_scale=grad_scale,
            clip_value=math.inf if clip_value is None else clip_value, num_threads=num_threads))
    return None if result is None else StepStats.from_sums(*result, grad_scale=grad_scale)


def adamw_(
    params: ArrayOrList,
    grads: ArrayOrList,
    exp_avgs: ArrayOrList,
    exp_avg_sqs: ArrayOrList,
    max_exp_avg_sqs: Optional[ArrayOrList] = None,
    *,
    step: int,
    lr: float = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
    l1: float = 0.0,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay, in place.

    ``p <- p*(1 - lr*weight_decay)``, then the Adam update of :func:`adam_`
    with no coupled decay term. Default weight_decay 1e-2 (torch.optim.AdamW).
    """
    return adam_(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step=step, lr=lr, betas=betas,
        eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
        decoupled_weight_decay=True, l1=l1, grad_scale=grad_scale, clip_value=clip_value,
        num_threads=num_threads, stats=stats,
    )


def rprop_(
    params: ArrayOrList,
    grads: ArrayOrList,
    prevs: ArrayOrList,
    step_sizes: ArrayOrList,
    prev_updates: Optional[ArrayOrList] = None,
    *,
    variant: str = "irprop-",
    etaminus: float = 0.5,
    etaplus: float = 1.2,
    step_size_min: float = 1e-6,
    step_size_max: float = 50.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    loss: Optional[float] = None,
    prev_loss: Optional[float] = None,
    l1: float = 0.0,
    decoupled_weight_decay: bool = False,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""The Rprop family (resilient backpropagation), in place.

    With :math:`s = \operatorname{sign}(\text{prev})\operatorname{sign}(g)`
    (``sign(0) = 0``) every variant first adapts the per-weight step size

    .. math::
        \Delta \leftarrow \operatorname{clamp}\big(\Delta \cdot
        (\eta^+ \text{ if } s>0,\; \eta^- \text{ if } s<0,\; 1 \text{ else}),
        \Delta_{min}, \Delta_{max}\big)

    then:

    * ``"irprop-"`` (default; Igel & Huesken 2000; what ``torch.optim.Rprop``
      computes): if s < 0 the gradient is set to 0; ``p -= sign(g)*D``; ``prev = g``.
    * ``"rprop-"``: ``p -= sign(g)*D``; ``prev = g``.
    * ``"rprop+"`` (Riedmiller & Braun 1993, weight backtracking): if s < 0,
      ``p -= prev_update`` (undo the last step), ``prev_update = 0``,
      ``prev = 0``; else ``prev_update = -sign(g)*D``, ``p += prev_update``, ``prev = g``.
    * ``"irprop+"`` (Igel & Huesken 2000): as rprop+, but the last step is undone
      only if ``loss > prev_loss``; ``loss`` is required (``prev_loss`` is None at
      the first step).

    ``prev`` starts at 0 and ``step_sizes`` at the initial step size (torch's
    ``lr``, default 1e-2); ``prev_updates`` (start 0) is needed by the ``+``
    variants. These are full-batch methods: the sign logic assumes the same
    objective at every step.
    """
    try:
        result = _core.rprop_step(params, grads, prevs, step_sizes, prev_updates, etaminus, etaplus,
            step_size_min, step_size_max, weight_decay, maximize, variant, loss, prev_loss, l1,
            decoupled_weight_decay, grad_scale, math.inf if clip_value is None else clip_value, num_threads, stats)
    except TypeError as error:
        _name_bad_scalar(error, dict(etaminus=etaminus, etaplus=etaplus,
            step_size_min=step_size_min, step_size_max=step_size_max, weight_decay=weight_decay,
            maximize=maximize, variant=variant, loss=loss, prev_loss=prev_loss,
            l1=l1, grad_scale=grad_scale,
            clip_value=math.inf if clip_value is None else clip_value, num_threads=num_threads))
    return None if result is None else StepStats.from_sums(*result, grad_scale=grad_scale)


def quickprop_(
    params: ArrayOrList,
    grads: ArrayOrList,
    prev_steps: ArrayOrList,
    prev_grads: ArrayOrList,
    *,
    lr: float = 1e-2,
    mu: float = 1.75,
    decay: float = 1e-4,
    mode_switch: float = 0.0,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    l1: float = 0.0,
    decoupled_weight_decay: bool = False,
    grad_scale: float = 1.0,
    clip_value: Optional[float] = None,
    num_threads: int = 0,
    stats: bool = False,
) -> Optional[StepStats]:
    r"""Quickprop (Fahlman 1988), in place.

    With ``g <- ±g + weight_decay*p + decay*p``, slope ``s = -g``, previous slope
    ``sp = -prev_grad``, previous step ``d`` and ``shrink = mu/(1+mu)``:

    * ``|d| <= mode_switch`` (gradient mode): ``step = lr*s + momentum*d``.
    * ``d > mode_switch`` (``d < -mode_switch`` is the mirror image):
      if ``sp <= 0`` there is no valid secant and ``step = lr*s`` (this
      project's guard; Fahlman and FANN have none). Otherwise
      ``step = (lr*s if s > 0 else 0) + (mu*d if s > shrink*sp else d*s/(sp - s))``:
      maximum growth, or the jump to the minimum of the parabola through the
      last two slopes (factor ``s/(sp - s)`` in (-1, mu], clamped to it).

    Then ``p += step``, ``prev_step = step``, ``prev_grad = g``; state starts
    at 0, so the first step is a gradient step. No step is NaN or Inf when the
    inputs are finite (and far from overflow). Defaults: mu 1.75 and
    decay 1e-4 (Fahlman), ``mode_switch`` 0 (Fahlman; FANN uses 1e-3),
    lr 1e-2. A full-batch method.
    """
    try:
        result = _core.quickprop_step(params, grads, prev_steps, prev_grads, lr, mu, decay, mode_switch,
            momentum, weight_decay, maximize, l1, decoupled_weight_decay,
            grad_scale, math.inf if clip_value is None else clip_value, num_threads, stats)
    except TypeError as error:
        _name_bad_scalar(error, dict(lr=lr, mu=mu, decay=decay, mode_switch=mode_switch,
            momentum=momentum, weight_decay=weight_decay, maximize=maximize,
            l1=l1, grad_scale=grad_scale,
            clip_value=math.inf if clip_value is None else clip_value, num_threads=num_threads))
    return None if result is None else StepStats.from_sums(*result, grad_scale=grad_scale)
