"""NAdam: the class and the functional form.

Rule: docs/algorithms.md, "NAdam"; kernel: csrc/optimizers/nadam.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, pair, write_back

__all__ = ["NAdam", "nadam_", "nadam_mu"]

_SPEC = SPECS["nadam"]

_DOC = r"""
    .. math::
        \mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi}), \quad
        \Pi_t = \Pi_{t-1} \mu_t, \quad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \\
        d = \sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon, \quad
        p \leftarrow p - \eta\frac{1-\mu_t}{1-\Pi_t}\frac{g}{d}
                       - \eta\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\frac{m}{d}

    with :math:`\psi` = ``momentum_decay``. Defaults (torch.optim.NAdam): lr
    2e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0, momentum_decay 4e-3,
    decoupled_weight_decay False. Differences from torch: ``sqrt(v)`` times
    ``1/sqrt(1-beta2**t)`` (in double) instead of ``sqrt(v/(1-beta2**t))``,
    one rounding apart; ``mu_product`` is kept in double (torch: a float32
    tensor unless the default dtype is float64). Reference: Dozat (2016),
    "Incorporating Nesterov Momentum into Adam".
"""


def nadam_mu(step: int, beta1: float, momentum_decay: float) -> float:
    """NAdam's momentum coefficient at ``step``: ``beta1*(1 - 0.5*0.96**(step*momentum_decay))``."""
    return beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))


class NAdam(Optimizer):
    __doc__ = r"""NAdam (torch.optim.NAdam semantics). State: ``step``,
    ``mu_product`` (a float), ``exp_avg``, ``exp_avg_sq``.
    """ + _DOC

    _name = "nadam"
    _scalar_state_keys = ("mu_product",)

    def __init__(self, params, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False, l1: float = 0.0,
                 **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        return {"step": scalars["step"], "mu_product": scalars.get("mu_product", 1.0)}

    def _after_step(self, group, scalars, loss):
        mu = nadam_mu(scalars["step"], pair(group["betas"], "betas")[0], group["momentum_decay"])
        scalars["mu_product"] = scalars.get("mu_product", 1.0) * mu
        return scalars


def nadam_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, exp_avg_sqs: ArrayOrList, *,
           step: int, mu_product: float, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
           eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
           decoupled_weight_decay: bool = False, maximize: bool = False, l1: float = 0.0,
           grad_scale: float = 1.0, clip_value: float | None = None,
           rounding: str | Rounding = "nearest", num_threads: int = 0,
           stats: bool = False) -> StepStats | None:
    values = (lr, betas, eps, momentum_decay, weight_decay, maximize, step, mu_product,
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (exp_avgs, exp_avg_sqs), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


nadam_.__doc__ = r"""NAdam (Dozat 2016), in place. ``mu_product`` is the product of
    mu_1 .. mu_{step-1} (1.0 at step 1); afterwards multiply it by
    ``nadam_mu(step, beta1, momentum_decay)``.
""" + _DOC
