"""RMSprop (plain, centered, with momentum): the class and the functional form.

Rule: docs/algorithms.md, "RMSprop"; kernel: csrc/optimizers/rmsprop.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, rule_doc, write_back

__all__ = ["RMSprop", "rmsprop_"]

_SPEC = SPECS["rmsprop"]

_DOC = rule_doc(r"""
        v \leftarrow \alpha v + (1-\alpha) g^2, \quad
        a \leftarrow \alpha a + (1-\alpha) g \;\text{(centered)}, \\
        d = \sqrt{\max(v - a^2, 0)} + \epsilon \;\text{(centered) or}\; \sqrt{v} + \epsilon, \quad
        b \leftarrow \mu b + g/d,\; p \leftarrow p - \eta b \;\text{(momentum > 0) or}\;
        p \leftarrow p - \eta g / d

    Defaults (torch.optim.RMSprop): lr 1e-2, alpha 0.99, eps 1e-8,
    weight_decay 0, momentum 0, centered False. The ``max(., 0)`` only guards
    a variance that rounding made negative, where torch would return NaN.
    References: Hinton, Coursera lecture 6e (2012); Graves (2013), centered form.
""")


class RMSprop(Optimizer):
    __doc__ = r"""RMSprop (torch.optim.RMSprop semantics). State: ``step``,
    ``square_avg``, ``grad_avg`` (centered), ``momentum_buffer`` (momentum > 0).
    """ + _DOC

    _name = "rmsprop"

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False, l1: float = 0.0, decoupled_weight_decay: bool = False,
                 **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        return {}


def rmsprop_(params: ArrayOrList, grads: ArrayOrList, square_avgs: ArrayOrList,
             grad_avgs: ArrayOrList | None = None, momentum_buffers: ArrayOrList | None = None, *,
             lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
             momentum: float = 0.0, centered: bool = False, maximize: bool = False, l1: float = 0.0,
             decoupled_weight_decay: bool = False, grad_scale: float = 1.0,
             clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
             stats: bool = False) -> StepStats | None:
    values = (lr, alpha, eps, momentum, centered, weight_decay, maximize,
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (square_avgs, grad_avgs, momentum_buffers), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


rmsprop_.__doc__ = r"""RMSprop (Hinton 2012; centered form Graves 2013), in place.
    ``grad_avgs`` is needed when ``centered``, ``momentum_buffers`` when ``momentum > 0``.
""" + _DOC
