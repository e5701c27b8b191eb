"""Quickprop: the class and the functional form.

Rule: docs/algorithms.md, "Quickprop"; kernel: csrc/optimizers/quickprop.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["Quickprop", "quickprop_"]

_SPEC = SPECS["quickprop"]

_DOC = r"""
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
    inputs are finite (and far from overflow). Defaults: lr 1e-2 (Fahlman's
    epsilon), mu 1.75 and decay 1e-4 (Fahlman), mode_switch 0 (Fahlman; FANN
    uses 1e-3), momentum 0 (gradient mode only), weight_decay 0. A full-batch
    method. Reference: Fahlman (1988), "An empirical study of learning speed
    in back-propagation networks", CMU-CS-88-162.
"""


class Quickprop(Optimizer):
    __doc__ = r"""Quickprop (Fahlman 1988): a per-weight secant (parabola) step with
    maximum growth factor ``mu``. State: ``step``, ``prev_step``, ``prev_grad``.
    """ + _DOC

    _name = "quickprop"

    def __init__(self, params, lr: float = 1e-2, mu: float = 1.75, decay: float = 1e-4,
                 mode_switch: float = 0.0, momentum: float = 0.0, *, weight_decay: float = 0.0,
                 maximize: bool = False, l1: float = 0.0, decoupled_weight_decay: bool = False,
                 **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        return {}


def quickprop_(params: ArrayOrList, grads: ArrayOrList, prev_steps: ArrayOrList, prev_grads: ArrayOrList,
               *, lr: float = 1e-2, mu: float = 1.75, decay: float = 1e-4, mode_switch: float = 0.0,
               momentum: float = 0.0, weight_decay: float = 0.0, maximize: bool = False,
               l1: float = 0.0, decoupled_weight_decay: bool = False, grad_scale: float = 1.0,
               clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
               stats: bool = False) -> StepStats | None:
    values = (lr, mu, decay, mode_switch, momentum, weight_decay, maximize,
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (prev_steps, prev_grads), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


quickprop_.__doc__ = r"""Quickprop (Fahlman 1988), in place.
""" + _DOC
