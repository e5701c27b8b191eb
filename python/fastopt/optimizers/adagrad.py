"""Adagrad: the class and the functional form.

Rule: docs/algorithms.md, "Adagrad"; kernel: csrc/optimizers/adagrad.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, rule_doc, write_back

__all__ = ["Adagrad", "adagrad_"]

_SPEC = SPECS["adagrad"]

_DOC = rule_doc(r"""
        \tilde\eta = \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}, \quad
        s \leftarrow s + g^2, \quad
        p \leftarrow p - \tilde\eta\, \frac{g}{\sqrt{s} + \epsilon}

    Defaults (torch.optim.Adagrad): lr 1e-2, lr_decay 0, weight_decay 0,
    initial_accumulator_value 0 (the class's: the fill of a new ``sum``),
    eps 1e-10. The lectures put eps inside the square root, ``sqrt(s + eps)``;
    this follows torch. Reference: Duchi, Hazan & Singer (2011), "Adaptive
    Subgradient Methods for Online Learning and Stochastic Optimization".
""")


class Adagrad(Optimizer):
    __doc__ = r"""Adagrad (torch.optim.Adagrad semantics). State: ``step``, ``sum``.
    """ + _DOC

    _name = "adagrad"

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 l1: float = 0.0, decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _initial_value(self, role, group):
        return group["initial_accumulator_value"]


def adagrad_(params: ArrayOrList, grads: ArrayOrList, sums: ArrayOrList, *, step: int, lr: float = 1e-2,
             lr_decay: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-10,
             maximize: bool = False, l1: float = 0.0, decoupled_weight_decay: bool = False,
             grad_scale: float = 1.0, clip_value: float | None = None,
             rounding: str | Rounding = "nearest", num_threads: int = 0,
             stats: bool = False) -> StepStats | None:
    values = (lr, lr_decay, 0.0, eps, weight_decay, maximize, step,  # 0.0: initial_accumulator_value (class only)
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (sums,), (values,), None, num_threads, False, stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


adagrad_.__doc__ = r"""Adagrad (Duchi, Hazan & Singer 2011), in place; ``sums`` is the state
    ``sum`` (filled with the initial accumulator value before the first step).
""" + _DOC
