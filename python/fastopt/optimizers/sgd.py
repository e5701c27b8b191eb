"""SGD with momentum, dampening and Nesterov momentum: the class and the functional form.

Rule: docs/algorithms.md, "SGD"; kernel: csrc/optimizers/sgd.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, rule_doc, write_back

__all__ = ["SGD", "sgd_"]

_SPEC = SPECS["sgd"]

_DOC = rule_doc(r"""
        b \leftarrow \begin{cases} g & t = 1 \\ \mu b + (1-\tau) g & t > 1\end{cases}, \quad
        g \leftarrow \begin{cases} g + \mu b & \text{nesterov} \\ b \end{cases}, \quad
        p \leftarrow p - \eta g

    Defaults (torch.optim.SGD, torch 2.x): lr 1e-3, momentum 0, dampening 0,
    weight_decay 0 (coupled L2; the lectures' penalty ``lambda*||W||^2`` is
    ``weight_decay = 2*lambda``), nesterov False, maximize False.

    Lecture form: ``v = beta*v + eta*g; W = W - v`` keeps the learning rate
    inside the velocity. It equals this (torch) form while ``lr`` is constant
    (``v = lr*b``) and differs when ``lr`` changes. The lectures' Nesterov
    "look-ahead" gradient is the same algorithm after the change of variables
    ``p' = p - lr*momentum*b`` (Sutskever et al. 2013).
""")


class SGD(Optimizer):
    __doc__ = r"""Stochastic gradient descent with momentum and Nesterov momentum
    (torch.optim.SGD semantics). State: ``step``, ``momentum_buffer`` (only
    when momentum != 0).
    """ + _DOC

    _name = "sgd"

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 l1: float = 0.0, decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _per_step(self, group, scalars, fresh, loss):
        # A momentum buffer that did not exist yet starts as the gradient
        # (torch: buf = clone(grad)); the kernel does that at step == 1.
        return {"step": 1 if "momentum_buffer" in fresh else scalars["step"]}


def sgd_(params: ArrayOrList, grads: ArrayOrList, momentum_buffers: ArrayOrList | None = None, *,
         step: int, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
         weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False, l1: float = 0.0,
         decoupled_weight_decay: bool = False, grad_scale: float = 1.0, clip_value: float | None = None,
         rounding: str | Rounding = "nearest", num_threads: int = 0, stats: bool = False) -> StepStats | None:
    values = (lr, momentum, dampening, nesterov, weight_decay, maximize, step,
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (momentum_buffers,), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


sgd_.__doc__ = r"""SGD with momentum, dampening and Nesterov momentum, in place.

    ``momentum_buffers`` is needed only when ``momentum != 0``; at ``step == 1``
    it is overwritten with the gradient (its old contents are ignored).
""" + _DOC
