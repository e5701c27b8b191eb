"""LAMB: the class and the functional form.

Rule: docs/algorithms.md, "LAMB"; kernel: csrc/optimizers/lamb.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["LAMB", "lamb_"]

_SPEC = SPECS["lamb"]

_DOC = r"""
    Adam's moments and direction plus LAMB's own decay term, scaled per array
    by the trust ratio:

    .. math::
        r = \frac{m/(1-\beta_1^t)}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon} + \lambda p, \quad
        \phi = \frac{\lVert p\rVert_2}{\lVert r\rVert_2} \;(1 \text{ if either is } 0), \quad
        p \leftarrow p - \eta\,\phi\, r

    The norms are sums in double in a fixed order (docs/algorithms.md), the
    same bits for any thread count. Defaults (optax.lamb): lr 1e-3, betas
    (0.9, 0.999), eps 1e-6, weight_decay 0. torch has no LAMB. Reference:
    You et al. (2020), "Large Batch Optimization for Deep Learning: Training
    BERT in 76 minutes".
"""


class LAMB(Optimizer):
    __doc__ = r"""LAMB, layer-wise adaptive moments. State: ``step``,
    ``exp_avg``, ``exp_avg_sq``. One call runs both passes (norms, update)
    over every array.
    """ + _DOC

    _name = "lamb"
    _per_array_rule = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, *, maximize: bool = False, l1: float = 0.0,
                 **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)


def lamb_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, exp_avg_sqs: ArrayOrList, *,
          step: int, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
          weight_decay: float = 0.0, maximize: bool = False, l1: float = 0.0, grad_scale: float = 1.0,
          clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
          stats: bool = False) -> StepStats | None:
    values = (lr, betas, eps, weight_decay, maximize, step, l1, False, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (exp_avgs, exp_avg_sqs), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


lamb_.__doc__ = r"""LAMB (You et al. 2020), in place; each array of a list gets its own
    trust ratio.
""" + _DOC
