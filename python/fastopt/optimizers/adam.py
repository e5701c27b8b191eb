"""Adam, AdamW and AMSGrad: the class and the functional form.

Rule: docs/algorithms.md, "Adam, AdamW, AMSGrad"; kernel: csrc/optimizers/adam.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, rule_doc, write_back

__all__ = ["Adam", "AdamW", "adam_", "adamw_"]

_SPEC = SPECS["adam"]

_DOC = rule_doc(r"""
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \\
        \hat v = \max(v_{max}, v) \;\text{(amsgrad, stored in}\; v_{max}) \;\text{or}\; v, \quad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,
            \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    With ``decoupled_weight_decay=True`` the decay is AdamW's
    ``p <- p*(1 - lr*weight_decay)`` before the update instead of the coupled
    ``g + weight_decay*p``. Defaults (torch.optim.Adam): lr 1e-3, betas
    (0.9, 0.999), eps 1e-8, weight_decay 0, amsgrad False.

    Differences: ``sqrt(vhat)/sqrt(1-beta2**t)`` is computed as
    ``sqrt(vhat) * (1/sqrt(1-beta2**t))`` with the reciprocal in double (one
    division per element fewer than torch, at most one rounding apart). Two of
    the lectures write ``sqrt(vhat + eps)``; torch, Kingma & Ba and the AdamW
    paper put eps outside the root, as here.

    References: Kingma & Ba (2015), "Adam: A Method for Stochastic
    Optimization"; Reddi, Kale & Kumar (2018), "On the Convergence of Adam and
    Beyond" (AMSGrad); Loshchilov & Hutter (2019), "Decoupled Weight Decay
    Regularization" (AdamW).
""")


class Adam(Optimizer):
    __doc__ = r"""Adam (Kingma & Ba 2015) and AMSGrad, torch.optim.Adam semantics.

    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """ + _DOC

    _name = "adam"

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False, l1: float = 0.0,
                 **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): ``p <- p*(1 - lr*weight_decay)``, then
    the Adam update (see :class:`Adam`). Defaults as torch.optim.AdamW: lr 1e-3,
    betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2, amsgrad False."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, l1: float = 0.0, **step_options):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True, l1=l1, **step_options)


def adam_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, exp_avg_sqs: ArrayOrList,
          max_exp_avg_sqs: ArrayOrList | None = None, *, step: int, lr: float = 1e-3,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
          amsgrad: bool = False, maximize: bool = False, decoupled_weight_decay: bool = False,
          l1: float = 0.0, grad_scale: float = 1.0, clip_value: float | None = None,
          rounding: str | Rounding = "nearest", num_threads: int = 0, stats: bool = False) -> StepStats | None:
    values = (lr, betas, eps, amsgrad, weight_decay, maximize, step,
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (exp_avgs, exp_avg_sqs, max_exp_avg_sqs), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


adam_.__doc__ = r"""Adam (Kingma & Ba 2015) and AMSGrad (Reddi et al. 2018), in place.
""" + _DOC


def adamw_(params: ArrayOrList, grads: ArrayOrList, exp_avgs: ArrayOrList, exp_avg_sqs: ArrayOrList,
           max_exp_avg_sqs: ArrayOrList | None = None, *, step: int, lr: float = 1e-3,
           betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
           amsgrad: bool = False, maximize: bool = False, l1: float = 0.0, grad_scale: float = 1.0,
           clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
           stats: bool = False) -> StepStats | None:
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay, in place.

    ``p <- p*(1 - lr*weight_decay)``, then the Adam update of :func:`adam_`
    with no coupled decay term. Default weight_decay 1e-2 (torch.optim.AdamW).
    """
    return adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step=step, lr=lr, betas=betas,
                 eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                 decoupled_weight_decay=True, l1=l1, grad_scale=grad_scale, clip_value=clip_value,
                 rounding=rounding, num_threads=num_threads, stats=stats)
