"""Lion: the class and the functional form.

Rule: docs/algorithms.md, "Lion"; kernel: csrc/optimizers/lion.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["Lion", "lion_"]

_SPEC = SPECS["lion"]

_DOC = r"""
    .. math::
        c = \beta_1 m + (1-\beta_1) g, \quad
        p \leftarrow p (1 - \eta\lambda) - \eta\, \operatorname{sign}(c), \quad
        m \leftarrow \beta_2 m + (1-\beta_2) g

    with ``sign(0) = 0``. Defaults: lr 1e-4, betas (0.9, 0.99),
    weight_decay 0, decoupled (as in the paper and optax.lion;
    ``decoupled_weight_decay=False`` makes it a coupled L2 term instead).
    torch has no Lion. Reference: Chen et al. (2023), "Symbolic Discovery of
    Optimization Algorithms".
"""


class Lion(Optimizer):
    __doc__ = r"""Lion, evolved sign momentum. State: ``step``, ``exp_avg``.
    """ + _DOC

    _name = "lion"

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, *, maximize: bool = False, l1: float = 0.0,
                 decoupled_weight_decay: bool = True, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        return {}


def lion_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, *, lr: float = 1e-4,
          betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, maximize: bool = False,
          decoupled_weight_decay: bool = True, l1: float = 0.0, grad_scale: float = 1.0,
          clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
          stats: bool = False) -> StepStats | None:
    values = (lr, betas, weight_decay, maximize, l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (exp_avgs,), (values,), None, num_threads, False, stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


lion_.__doc__ = r"""Lion (Chen et al. 2023), in place.
""" + _DOC
