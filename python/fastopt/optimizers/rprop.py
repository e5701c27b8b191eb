"""The Rprop family (irprop-, rprop-, rprop+, irprop+): the class and the functional form.

Rule: docs/algorithms.md, "Rprop family"; kernel: csrc/optimizers/rprop.hpp.
"""

from __future__ import annotations

from ._base import SPECS, ArrayOrList, Optimizer, Rounding, StepStats, hyperparameters, write_back

__all__ = ["Rprop", "rprop_", "RPROP_VARIANTS"]

_SPEC = SPECS["rprop"]
RPROP_VARIANTS = next(h[4] for h in _SPEC.hypers if h[0] == "variant")

_DOC = r"""
    With :math:`s = \operatorname{sign}(\text{prev})\operatorname{sign}(g)`
    (``sign(0) = 0``) every variant first adapts the per-weight step size

    .. math::
        \Delta \leftarrow \operatorname{clamp}\big(\Delta \cdot
        (\eta^+ \text{ if } s>0,\; \eta^- \text{ if } s<0,\; 1 \text{ else}),
        \Delta_{min}, \Delta_{max}\big)

    then:

    * ``"irprop-"`` (default; Igel & Huesken 2000; what ``torch.optim.Rprop``
      computes): if s < 0 the gradient is set to 0; ``p -= sign(g)*D``; ``prev = g``.
    * ``"rprop-"``: ``p -= sign(g)*D``; ``prev = g``.
    * ``"rprop+"`` (Riedmiller & Braun 1993, weight backtracking): if s < 0,
      ``p -= prev_update`` (undo the last step), ``prev_update = 0``,
      ``prev = 0``; else ``prev_update = -sign(g)*D``, ``p += prev_update``, ``prev = g``.
    * ``"irprop+"`` (Igel & Huesken 2000): as rprop+, but the last step is undone
      only if the loss rose (``loss > prev_loss``); the loss is required.

    Defaults (torch.optim.Rprop): lr (the initial step size) 1e-2, etas
    (eta_minus, eta_plus) = (0.5, 1.2), step_sizes (min, max) = (1e-6, 50);
    plus weight_decay 0 and maximize False. Regularization uses each weight's
    step size D as its learning rate. Full-batch methods: the sign logic
    assumes the same objective at every step.
"""


class Rprop(Optimizer):
    __doc__ = r"""The Rprop family: per-weight step sizes adapted from gradient signs.
    Pass the loss at every step for ``variant="irprop+"``: ``opt.step(grads, loss=f)``.
    State: ``step``, ``prev``, ``step_size``, and for the + variants
    ``prev_update`` (and ``prev_loss`` for irprop+).
    """ + _DOC

    _name = "rprop"
    _scalar_state_keys = ("prev_loss",)

    def __init__(self, params, lr: float = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50.0), *, variant: str = "irprop-",
                 weight_decay: float = 0.0, maximize: bool = False, l1: float = 0.0,
                 decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, hyperparameters(locals()), **step_options)

    def _initial_value(self, role, group):
        return group["lr"] if role == "step_size" else 0.0

    def _per_step(self, group, scalars, fresh, loss):
        return {"loss_increased": _loss_increased(group["variant"], loss, scalars.get("prev_loss"))}

    def _after_step(self, group, scalars, loss):
        if group["variant"] == "irprop+":
            scalars["prev_loss"] = float(loss)
        return scalars


def _loss_increased(variant: str, loss: float | None, prev_loss: float | None) -> bool:
    if variant == "irprop+" and loss is None:
        raise ValueError("loss is required for variant='irprop+' (it backtracks only when the loss rose)")
    return bool(prev_loss is not None and loss is not None and loss > prev_loss)


def rprop_(params: ArrayOrList, grads: ArrayOrList, prevs: ArrayOrList, step_sizes: ArrayOrList,
           prev_updates: ArrayOrList | None = None, *, etaminus: float = 0.5, etaplus: float = 1.2,
           step_size_min: float = 1e-6, step_size_max: float = 50.0, variant: str = "irprop-",
           weight_decay: float = 0.0, maximize: bool = False, loss: float | None = None,
           prev_loss: float | None = None, l1: float = 0.0, decoupled_weight_decay: bool = False,
           grad_scale: float = 1.0, clip_value: float | None = None,
           rounding: str | Rounding = "nearest", num_threads: int = 0,
           stats: bool = False) -> StepStats | None:
    values = (1e-2, (etaminus, etaplus), (step_size_min, step_size_max), variant, weight_decay, maximize,
              _loss_increased(variant, loss, prev_loss),  # 1e-2 above: the class's initial step size
              l1, decoupled_weight_decay, grad_scale, clip_value)
    result = _SPEC.step(params, grads, (prevs, step_sizes, prev_updates), (values,), None, num_threads, False,
                        stats, *write_back(rounding))
    return result and StepStats.from_sums(*result, grad_scale=grad_scale)


rprop_.__doc__ = r"""The Rprop family (resilient backpropagation), in place.

    ``prevs`` starts at 0 and ``step_sizes`` at the initial step size (the
    class's ``lr``, default 1e-2); ``prev_updates`` (start 0) is needed by the
    ``+`` variants. ``etaminus, etaplus`` and ``step_size_min, step_size_max``
    are the class's ``etas`` and ``step_sizes`` pairs (torch's functional
    names). For irprop+ pass ``loss`` and ``prev_loss`` (None at the first step).
""" + _DOC
