"""Adafactor (torch's variant): the class and the functional form.

Rule: docs/algorithms.md, "Adafactor"; kernel: csrc/optimizers/adafactor.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["Adafactor", "adafactor_"]

_SPEC = SPECS["adafactor"]

_DOC = r"""
    With :math:`w = t^{\text{beta2\_decay}}`, :math:`\rho = \min(\text{lr}, 1/\sqrt t)`
    and :math:`\alpha = \max(\epsilon_2, \operatorname{RMS}(p))\,\rho`:
    arrays of two or more dimensions keep factored second moments over their
    last two axes (``row_var``: shape[:-1] + (1,), ``col_var``:
    shape[:-2] + (1, C)),

    .. math::
        r \leftarrow \operatorname{lerp}(r, \operatorname{mean}_c g^2, w), \quad
        c \leftarrow \operatorname{lerp}(c, \operatorname{mean}_r g^2, w), \quad
        V = \frac{r c^\top}{\max(\operatorname{mean}(r), \epsilon_1)},

    others a full ``variance`` :math:`V \leftarrow \operatorname{lerp}(V, g^2, w)`;
    then :math:`u = g/\sqrt{\max(V, \epsilon_1^2)}` and
    :math:`p \leftarrow p (1 - \text{lr}\,\lambda) - \frac{\alpha}{\max(1, \operatorname{RMS}(u)/d)} u`.

    Defaults (torch.optim.Adafactor): lr 1e-2, beta2_decay -0.8,
    eps (None, 1e-3) (None: the dtype's machine epsilon), d 1.0,
    weight_decay 0 (decoupled). Sums are in double in a fixed order
    (docs/algorithms.md): torch computes them in the array's dtype.
    Reference: Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates
    with Sublinear Memory Cost".
"""


class Adafactor(Optimizer):
    __doc__ = r"""Adafactor (torch.optim.Adafactor semantics). State: ``step``,
    ``row_var`` and ``col_var`` (2-D and up) or ``variance``.
    """ + _DOC

    _name = "adafactor"
    _per_array_rule = True

    def __init__(self, params, lr: float = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, maximize: bool = False, l1: float = 0.0, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)


def adafactor_(params: ArrayOrList, grads: ArrayOrList, row_vars: ArrayOrList, col_vars: ArrayOrList,
               variances: ArrayOrList, *, step: int, lr: float = 1e-2, beta2_decay: float = -0.8,
               eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0, weight_decay: float = 0.0,
               maximize: bool = False, l1: float = 0.0, grad_scale: float = 1.0,
               clip_value: float | None = None, rounding: str | Rounding = "nearest", num_threads: int = 0,
               stats: bool = False) -> StepStats | None:
    values = (lr, beta2_decay, eps, d, weight_decay, maximize, step, l1, False, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (row_vars, col_vars, variances), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


adafactor_.__doc__ = r"""Adafactor, in place. ``row_vars[i]``/``col_vars[i]`` are used for
    arrays of two or more dimensions (``variances[i]`` None there), ``variances[i]``
    below (row/col None): one list entry per parameter.
""" + _DOC
