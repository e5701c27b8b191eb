"""RAdam: the class and the functional form.

Rule: docs/algorithms.md, "RAdam"; kernel: csrc/optimizers/radam.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["RAdam", "radam_"]

_SPEC = SPECS["radam"]

_DOC = r"""
    Adam's moments; with :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::
        p \leftarrow p - \frac{\eta\, r_t \sqrt{1-\beta_2^t}}{1-\beta_1^t}
            \frac{m}{\sqrt{v} + \epsilon} \quad (\rho_t > 5), \qquad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t} m \quad \text{otherwise},

    :math:`r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}`.
    Defaults (torch.optim.RAdam): lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    weight_decay 0, decoupled_weight_decay False. Reference: Liu et al.
    (2020), "On the Variance of the Adaptive Learning Rate and Beyond".
"""


class RAdam(Optimizer):
    __doc__ = r"""RAdam, rectified Adam (torch.optim.RAdam semantics). State:
    ``step``, ``exp_avg``, ``exp_avg_sq``.
    """ + _DOC

    _name = "radam"

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False, l1: float = 0.0, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)


def radam_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, exp_avg_sqs: ArrayOrList, *, step: int,
           lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
           decoupled_weight_decay: bool = False, maximize: bool = False, l1: float = 0.0, grad_scale: float = 1.0,
           clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
           stats: bool = False) -> StepStats | None:
    values = (lr, betas, eps, weight_decay, maximize, step, l1, decoupled_weight_decay, grad_scale,
              clip_value)
    result = _SPEC.step(params, grads, (exp_avgs, exp_avg_sqs), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


radam_.__doc__ = r"""RAdam (Liu et al. 2020), in place.
""" + _DOC
