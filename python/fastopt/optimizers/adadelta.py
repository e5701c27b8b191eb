"""Adadelta: the class and the functional form.

Rule: docs/algorithms.md, "Adadelta"; kernel: csrc/optimizers/adadelta.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, rule_doc, write_back

__all__ = ["Adadelta", "adadelta_"]

_SPEC = SPECS["adadelta"]

_DOC = rule_doc(r"""
        v \leftarrow \rho v + (1-\rho) g^2, \quad
        \Delta = \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g, \quad
        u \leftarrow \rho u + (1-\rho) \Delta^2, \quad
        p \leftarrow p - \eta \Delta

    Defaults (torch.optim.Adadelta): lr 1.0, rho 0.9, eps 1e-6,
    weight_decay 0. Reference: Zeiler (2012), "ADADELTA: An Adaptive Learning
    Rate Method" (which has no lr; torch's lr scales the step).
""")


class Adadelta(Optimizer):
    __doc__ = r"""Adadelta (torch.optim.Adadelta semantics). State: ``step``,
    ``square_avg``, ``acc_delta``.
    """ + _DOC

    _name = "adadelta"

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False, l1: float = 0.0,
                 decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        return {}


def adadelta_(params: ArrayOrList, grads: ArrayOrList, square_avgs: ArrayOrList, acc_deltas: ArrayOrList, *,
              lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
              maximize: bool = False, decoupled_weight_decay: bool = False, l1: float = 0.0,
              grad_scale: float = 1.0, clip_value: float | None = None,
              rounding: str | Rounding = "nearest", num_threads: int = 0,
              stats: bool = False) -> StepStats | None:
    values = (lr, rho, eps, weight_decay, maximize, l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (square_avgs, acc_deltas), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


adadelta_.__doc__ = r"""Adadelta (Zeiler 2012), in place.
""" + _DOC
