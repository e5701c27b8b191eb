"""ASGD, averaged stochastic gradient descent: the class and the functional form.

Rule: docs/algorithms.md, "ASGD"; kernel: csrc/optimizers/asgd.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["ASGD", "asgd_", "asgd_schedule"]

_SPEC = SPECS["asgd"]

_DOC = r"""
    With :math:`\eta, \mu` the values before the step (:math:`\eta_0` = lr,
    :math:`\mu_0 = 1`):

    .. math::
        p \leftarrow p (1 - \lambda\eta) - \eta g, \quad
        \bar p \leftarrow p \text{ if } \mu = 1 \text{ else } \bar p + \mu (p - \bar p),

    then :math:`\eta = \text{lr}/(1 + \lambda\,\text{lr}\,t)^\alpha` and
    :math:`\mu = 1/\max(1, t - t_0)`. Defaults (torch.optim.ASGD): lr 1e-2,
    lambd 1e-4, alpha 0.75, t0 1e6, weight_decay 0. ``l1`` thresholds by
    ``eta*l1``. torch keeps eta and mu in float32 tensors unless the default
    dtype is float64; fastopt keeps them in double. Reference: Polyak &
    Juditsky (1992), "Acceleration of Stochastic Approximation by Averaging".
"""


def asgd_schedule(step: int, lr: float, lambd: float, alpha: float, t0: float) -> tuple[float, float]:
    """ASGD's ``(eta, mu)`` after ``step``: ``lr/(1 + lambd*lr*step)**alpha`` and ``1/max(1, step - t0)``."""
    return lr / (1 + lambd * lr * step) ** alpha, 1 / max(1, step - t0)


class ASGD(Optimizer):
    __doc__ = r"""ASGD (torch.optim.ASGD semantics). State: ``step``, ``eta``,
    ``mu`` (floats), ``ax`` (the average).
    """ + _DOC

    _name = "asgd"
    _scalar_state_keys = ("eta", "mu")

    def __init__(self, params, lr: float = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
                 weight_decay: float = 0.0, *, maximize: bool = False, l1: float = 0.0,
                 decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        return {"eta": scalars.get("eta", group["lr"]), "mu": scalars.get("mu", 1.0)}

    def _after_step(self, group, scalars, loss):
        scalars["eta"], scalars["mu"] = asgd_schedule(scalars["step"], group["lr"], group["lambd"],
                                                      group["alpha"], group["t0"])
        return scalars


def asgd_(params: ArrayOrList, grads: ArrayOrList, axs: ArrayOrList, *, eta: float, mu: float,
          lr: float = 1e-2, lambd: float = 1e-4, weight_decay: float = 0.0, maximize: bool = False,
          decoupled_weight_decay: bool = False, l1: float = 0.0, grad_scale: float = 1.0,
          clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
          stats: bool = False) -> StepStats | None:
    values = (lr, lambd, 0.75, 1e6, weight_decay, maximize, eta, mu,  # 0.75, 1e6: the class's alpha, t0
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (axs,), (values,), None, num_threads, False, stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


asgd_.__doc__ = r"""ASGD (Polyak & Juditsky 1992), in place. ``eta`` and ``mu`` are the
    values before this step; afterwards ``eta, mu = asgd_schedule(step, lr, lambd, alpha, t0)``.
    ``lr`` is used only by decoupled weight decay.
""" + _DOC
