"""Adamax: the class and the functional form.

Rule: docs/algorithms.md, "Adamax"; kernel: csrc/optimizers/adamax.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, rule_doc, write_back

__all__ = ["Adamax", "adamax_"]

_SPEC = SPECS["adamax"]

_DOC = rule_doc(r"""
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        u \leftarrow \max(\beta_2 u, |g| + \epsilon), \quad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t} \frac{m}{u}

    Defaults (torch.optim.Adamax): lr 2e-3, betas (0.9, 0.999), eps 1e-8,
    weight_decay 0. A NaN in either operand of the max propagates, as torch's
    ``amax`` does. Reference: Kingma & Ba (2015), "Adam: A Method for
    Stochastic Optimization", section 7.
""")


class Adamax(Optimizer):
    __doc__ = r"""Adamax, Adam with the infinity norm (torch.optim.Adamax semantics).
    State: ``step``, ``exp_avg``, ``exp_inf``.
    """ + _DOC

    _name = "adamax"

    def __init__(self, params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False,
                 l1: float = 0.0, decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)


def adamax_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, exp_infs: ArrayOrList, *,
            step: int, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
            weight_decay: float = 0.0, maximize: bool = False, decoupled_weight_decay: bool = False,
            l1: float = 0.0, grad_scale: float = 1.0, clip_value: float | None = None,
            rounding: str | Rounding = "nearest", num_threads: int = 0, stats: bool = False) -> StepStats | None:
    values = (lr, betas, eps, weight_decay, maximize, step, l1, decoupled_weight_decay, grad_scale,
              clip_value)
    result = _SPEC.step(params, grads, (exp_avgs, exp_infs), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


adamax_.__doc__ = r"""Adamax (Kingma & Ba 2015), in place.
""" + _DOC
