r"""Learning-rate schedules for :mod:`fastopt.optim`, with the semantics of
``torch.optim.lr_scheduler``.

    >>> import numpy as np, fastopt
    >>> w = np.zeros(3)
    >>> opt = fastopt.SGD([w], lr=0.1, momentum=0.9)
    >>> sched = fastopt.schedules.StepLR(opt, step_size=30, gamma=0.1)
    >>> for epoch in range(100):
    ...     opt.step([np.ones(3)])     # train ...
    ...     sched.step()               # ... then move the schedule on, once per epoch
    >>> sched.get_last_lr()
    [0.00010000000000000003]

What is the same as torch (class names, argument names, attributes):

* A scheduler writes ``optimizer.param_groups[i]["lr"]``; the optimizer reads
  it at every step. Constructing one stores ``initial_lr`` in every param group
  (``base_lrs`` are read from there) and performs the initial step, so the
  groups hold the epoch-0 learning rate right away.
* ``step()`` advances ``last_epoch`` by one and sets the new learning rates
  (``ReduceLROnPlateau.step(metric)`` takes the monitored value);
  ``get_last_lr()`` returns them; ``state_dict()`` / ``load_state_dict()``
  save and restore everything but the optimizer.

What differs, on purpose: every value is computed **in closed form** from
``base_lrs`` and ``last_epoch`` (torch's ``_get_closed_form_lr``), where torch's
``step()`` multiplies the current ``lr`` by a per-step ratio. The values are
the same up to rounding (the tests hold them to 1e-12 relative over 200 steps),
but a closed-form value does not accumulate rounding error, does not depend on
how the run was interrupted and resumed, and a manual edit of ``lr`` lasts only
until the next ``step()``. To combine schedules, use :class:`SequentialLR`
(torch's ``ChainedScheduler``, which multiplies schedules together, relies on
the recursive form and has no counterpart here).

``state_dict()`` holds only JSON-friendly values (numbers, strings, lists,
dicts), so :func:`fastopt.save` can store it without pickle.

Lecture forms (docs/algorithms.md, with ``k = last_epoch``): ``eta0/(k+1)`` is
:class:`InverseLR`, ``eta0/(k+1)^2`` :class:`InverseSquareLR`,
``eta0*exp(-beta*k)`` :class:`ExponentialLR` with ``gamma = exp(-beta)``, step
decay ``eta0*gamma^floor(k/s)`` :class:`StepLR`, cosine annealing
:class:`CosineAnnealingLR`, linear warm-up ``eta_base*k/k_warm``
:class:`LinearLR`, and "reduce on plateau" :class:`ReduceLROnPlateau`.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "InverseLR", "InverseSquareLR",
    "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LinearLR", "PolynomialLR",
    "SequentialLR", "ReduceLROnPlateau",
]


def _check_optimizer(optimizer: Any) -> Any:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "lr" in g for g in groups):
        raise TypeError(f"{type(optimizer).__name__} is not an optimizer: a scheduler needs "
                        "param_groups, a list of dicts with an 'lr'")
    return optimizer


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _finite(value: Any, name: str, low: float = -math.inf) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= low):
        raise ValueError(f"{name} must be finite and >= {low}, got {value!r}")
    return value


class LRScheduler:
    """Base class: ``initial_lr``/``base_lrs`` bookkeeping, ``step()``,
    ``get_last_lr()`` and state dicts. A subclass defines :meth:`get_lr`, the
    learning rates at ``last_epoch`` in closed form.

    ``last_epoch=-1`` (default) starts a schedule. A non-default value
    continues one at ``last_epoch + 1`` (it needs ``initial_lr`` in the param
    groups, as torch does); resuming from :meth:`state_dict` is simpler.
    """

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = _check_optimizer(optimizer)
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr': a scheduler resumed "
                                   "with last_epoch >= 0 needs the optimizer state of the run "
                                   "it continues")
        self.base_lrs: list[float] = [float(group["initial_lr"]) for group in groups]
        self.last_epoch = int(last_epoch)
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        """The learning rate of every param group at ``last_epoch``."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (or iteration) and set every group's ``lr``.
        Call it after ``optimizer.step``, as in torch."""
        self._step_count += 1
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _restart(self) -> None:
        """Jump to epoch 0 (what :class:`SequentialLR` does at a milestone)."""
        self.last_epoch = 0
        self._set_lrs(self.get_lr())

    def _set_lrs(self, values: Sequence[float]) -> None:
        groups = self.optimizer.param_groups
        if len(values) != len(groups):
            raise ValueError(f"the scheduler has {len(values)} learning rates but the optimizer "
                             f"has {len(groups)} param groups (was a group added after the "
                             "scheduler?)")
        for group, lr in zip(groups, values):
            group["lr"] = float(lr)
        self._last_lr = [group["lr"] for group in groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step` (a new list)."""
        return list(self._last_lr)

    # ----------------------------------------------------------- state dicts
    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer, as JSON-friendly values (copied)."""
        return {key: _plain(value) for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. It must come from the same class with
        the same number of param groups; this is checked before anything
        changes. The optimizer's ``lr`` values are restored by the optimizer's
        own ``load_state_dict``, as in torch."""
        self._check_state_dict(state_dict)
        for key, value in state_dict.items():
            setattr(self, key, self._restore(key, copy.deepcopy(value)))

    def _check_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError("a scheduler state_dict must be a dict, "
                            f"got {type(state_dict).__name__}")
        expected = set(self.state_dict())
        if set(state_dict) != expected:
            missing = sorted(expected - set(state_dict))
            unknown = sorted(set(state_dict) - expected)
            raise ValueError(f"state_dict does not fit {type(self).__name__}: missing keys "
                             f"{missing}, unknown keys {unknown}")
        groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "_last_lr"):
            if len(state_dict[key]) != groups:
                raise ValueError(f"state_dict['{key}'] has {len(state_dict[key])} entries but the "
                                 f"optimizer has {groups} param groups")

    def _restore(self, key: str, value: Any) -> Any:
        """Turn a JSON-friendly value back into the attribute's type."""
        return value


def _plain(value: Any) -> Any:
    """A deep copy using only JSON-friendly containers (Counter -> sorted list)."""
    if isinstance(value, Counter):
        return sorted(value.elements())
    return copy.deepcopy(value)


class StepLR(LRScheduler):
    r"""Decay by ``gamma`` every ``step_size`` epochs.

    .. math:: \eta_k = \eta_0\,\gamma^{\lfloor k / s \rfloor}

    ``step_size`` (required), ``gamma`` 0.1. The lectures' step decay
    ``eta0*gamma^floor(k/s)``.
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _finite(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        decays = self.last_epoch // self.step_size
        return [base_lr * self.gamma ** decays for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""Decay by ``gamma`` at each milestone epoch.

    .. math:: \eta_k = \eta_0\,\gamma^{\#\{m \in \text{milestones}:\, m \le k\}}

    ``milestones`` (required; a milestone listed twice decays twice, as in
    torch), ``gamma`` 0.1.
    """

    def __init__(self, optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1):
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = _finite(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]

    def _restore(self, key, value):
        return Counter(value) if key == "milestones" else value


class ExponentialLR(LRScheduler):
    r"""Decay by ``gamma`` every epoch.

    .. math:: \eta_k = \eta_0\,\gamma^k

    ``gamma`` (required). The lectures' ``eta0*exp(-beta*k)`` is
    ``gamma = exp(-beta)``.
    """

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = _finite(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class InverseLR(LRScheduler):
    r"""The lectures' 1/k decay (not in torch).

    .. math:: \eta_k = \frac{\eta_0}{k + 1}

    The classic Robbins–Monro step sizes: :math:`\sum\eta_k = \infty`,
    :math:`\sum\eta_k^2 < \infty`.
    """

    power = 1

    def get_lr(self):
        return [base_lr / (self.last_epoch + 1) ** self.power for base_lr in self.base_lrs]


class InverseSquareLR(InverseLR):
    r"""The lectures' 1/k² decay (not in torch).

    .. math:: \eta_k = \frac{\eta_0}{(k + 1)^2}

    It decays fast: the total distance :math:`\sum\eta_k` is finite
    (:math:`\pi^2/6 \cdot \eta_0`), so it can stop short of a minimum.
    """

    power = 2


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base lr down to ``eta_min`` over ``T_max``
    epochs (Loshchilov & Hutter 2017, SGDR, without restarts).

    .. math::
        \eta_k = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})
                 \left(1 + \cos\frac{\pi k}{T_{max}}\right)

    ``T_max`` (required), ``eta_min`` 0. Past ``T_max`` the cosine goes on
    (the rate rises again), as in torch. The lectures write it with
    :math:`\eta_{max} = \eta_0`.
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = _finite(eta_min, "eta_min")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        # torch's operation order, so the values agree to the last bit where torch uses this form
        cosine = 1 + math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (base_lr - self.eta_min) * cosine / 2 for base_lr in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    .. math::
        \eta = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})
               \left(1 + \cos\frac{\pi T_{cur}}{T_i}\right)

    where :math:`T_{cur}` counts epochs since the last restart and the period
    :math:`T_i` starts at ``T_0`` and is multiplied by ``T_mult`` at each
    restart. ``T_0`` (required), ``T_mult`` 1, ``eta_min`` 0.
    ``step(epoch)`` with a fractional epoch (``epoch + i / iters``) updates
    within an epoch, as in torch.
    """

    def __init__(self, optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1):
        self.T_0 = _positive_int(T_0, "T_0")
        self.T_i = self.T_0
        self.T_mult = _positive_int(T_mult, "T_mult")
        self.eta_min = _finite(eta_min, "eta_min")
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        cosine = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (base_lr - self.eta_min) * cosine / 2 for base_lr in self.base_lrs]

    def step(self, epoch: int | float | None = None) -> None:
        """Advance one epoch, or go to ``epoch`` (may be fractional)."""
        self._step_count += 1
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            self._seek(epoch)
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())

    def _seek(self, epoch: float) -> None:
        if epoch < 0:
            raise ValueError(f"expected a non-negative epoch, got {epoch}")
        if epoch < self.T_0:
            self.T_i, self.T_cur = self.T_0, epoch
        elif self.T_mult == 1:
            self.T_cur = epoch % self.T_0
        else:
            # Restart n happens at T_0 * (T_mult^n - 1) / (T_mult - 1).
            n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
            self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
            self.T_i = self.T_0 * self.T_mult ** n

    def _restart(self) -> None:
        # torch re-evaluates the stale T_cur here; a restart of the cycle is what is meant.
        self._seek(0)
        super()._restart()


class LinearLR(LRScheduler):
    r"""Scale the base lr by a factor moving linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` epochs, then constant.

    .. math::
        \eta_k = \eta_0\left(f_s + (f_e - f_s)\frac{\min(k, T)}{T}\right)

    Defaults as torch: ``start_factor`` 1/3, ``end_factor`` 1.0,
    ``total_iters`` 5. The lectures' linear warm-up ``eta_base*k/k_warm``
    starts at zero, a wasted step; ``start_factor=1/k_warm``,
    ``total_iters=k_warm - 1`` gives ``eta_base*(k+1)/k_warm``, i.e. the same
    ramp one step ahead, reaching ``eta_base`` at ``k = k_warm - 1``. Follow it
    with another schedule through :class:`SequentialLR`.
    """

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not 0 < start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor}")
        self.start_factor = float(start_factor)
        self.end_factor = float(end_factor)
        self.total_iters = _positive_int(total_iters, "total_iters")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        factor = self.start_factor + (self.end_factor - self.start_factor) * min(
            self.total_iters, self.last_epoch) / self.total_iters
        return [base_lr * factor for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    r"""Polynomial decay to zero over ``total_iters`` epochs, then zero.

    .. math:: \eta_k = \eta_0\left(1 - \frac{\min(k, T)}{T}\right)^{p}

    Defaults as torch: ``total_iters`` 5, ``power`` 1.0 (linear decay).
    """

    def __init__(self, optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1):
        self.total_iters = _positive_int(total_iters, "total_iters")
        self.power = _finite(power, "power", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        factor = (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
        return [base_lr * factor for base_lr in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at ``milestones``
    (epoch numbers, one fewer than schedulers), as torch's SequentialLR.

    Each scheduler starts from its epoch 0 when its turn comes. The usual use
    is a warm-up followed by a decay::

        warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
        decay = CosineAnnealingLR(opt, T_max=95)
        sched = SequentialLR(opt, [warmup, decay], milestones=[5])

    Construct the parts first (on the same optimizer); constructing the
    sequence undoes their initial steps and restarts the first one.
    """

    def __init__(self, optimizer, schedulers: list[LRScheduler], milestones: list[int],
                 last_epoch: int = -1):
        self.optimizer = _check_optimizer(optimizer)
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("SequentialLR needs at least one scheduler")
        for k, scheduler in enumerate(schedulers):
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ValueError(f"schedulers[{k}] is a ReduceLROnPlateau, whose step needs a "
                                 "metric; it cannot be part of a SequentialLR")
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"schedulers[{k}] is a {type(scheduler).__name__}, "
                                "not a fastopt scheduler")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"schedulers[{k}] belongs to another optimizer")
        milestones = [int(m) for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers; got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {milestones}")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self._undo_initial_steps(self)
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    @staticmethod
    def _undo_initial_steps(scheduler) -> None:
        # As torch's recursive_undo: a nested sequence passes it on to its parts.
        if isinstance(scheduler, SequentialLR):
            for part in scheduler._schedulers:
                SequentialLR._undo_initial_steps(part)
        else:
            scheduler.last_epoch -= 1

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._restart()
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def _restart(self) -> None:
        raise NotImplementedError("a SequentialLR inside a SequentialLR cannot be restarted")

    def state_dict(self) -> dict[str, Any]:
        """Own attributes plus the parts' state dicts under ``_schedulers``."""
        state = {key: _plain(value) for key, value in vars(self).items()
                 if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _check_state_dict(self, state_dict):
        super()._check_state_dict(state_dict)
        parts = state_dict["_schedulers"]
        if len(parts) != len(self._schedulers):
            raise ValueError(f"state_dict has {len(parts)} schedulers, this SequentialLR has "
                             f"{len(self._schedulers)}")
        for scheduler, part in zip(self._schedulers, parts):
            scheduler._check_state_dict(part)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._check_state_dict(state_dict)
        for key, value in state_dict.items():
            if key != "_schedulers":
                setattr(self, key, copy.deepcopy(value))
        for scheduler, part in zip(self._schedulers, state_dict["_schedulers"]):
            scheduler.load_state_dict(part)


class ReduceLROnPlateau(LRScheduler):
    r"""Reduce the learning rate when a monitored metric stops improving
    (torch.optim.lr_scheduler.ReduceLROnPlateau semantics).

    Call ``step(metric)`` once per epoch with, e.g., the validation loss. A
    metric is an improvement when it beats the best so far by the threshold
    (mode ``"min"``, ``threshold_mode="rel"``: ``metric < best*(1 - threshold)``;
    ``"abs"``: ``metric < best - threshold``; mirrored for ``"max"``). After
    more than ``patience`` epochs without improvement every group's lr becomes

    .. math:: \eta \leftarrow \max(\eta\cdot\text{factor},\ \text{min\_lr})

    (skipped when the change would be at most ``eps``), then ``cooldown``
    epochs pass in which bad epochs are not counted.

    Defaults as torch: mode "min", factor 0.1, patience 10, threshold 1e-4,
    threshold_mode "rel", cooldown 0, min_lr 0 (a number or one per group),
    eps 1e-8. The lectures: "train at a fixed eta until the monitored loss stops
    improving, then eta = factor*eta, factor 0.1 typical".

    Unlike the other schedules this one reacts to the run, so it sets no
    ``initial_lr`` and has no closed form (as in torch); ``base_lrs`` records
    the learning rates it started from.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8):
        self.optimizer = _check_optimizer(optimizer)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        groups = optimizer.param_groups
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"expected {len(groups)} min_lrs (one per param group), "
                                 f"got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = [float(m) for m in min_lr]
        else:
            self.default_min_lr = float(min_lr)
            self.min_lrs = [float(min_lr)] * len(groups)
        self.factor = float(factor)
        self.mode = mode
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.patience = int(patience)
        self.cooldown = int(cooldown)
        self.eps = float(eps)
        self.last_epoch = 0
        self.base_lrs = [float(group["lr"]) for group in groups]
        self._last_lr = list(self.base_lrs)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def step(self, metrics) -> None:  # type: ignore[override]
        """Record one epoch's metric; reduce the lr if it has stalled."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0   # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, current: float, best: float) -> bool:
        if self.mode == "min":
            return current < (best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                              else best - self.threshold)
        return current > (best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                          else best + self.threshold)

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(self.min_lrs) != len(groups):
            if self.default_min_lr is None:
                raise RuntimeError(f"the optimizer has {len(groups)} param groups but min_lr gave "
                                   f"{len(self.min_lrs)}; set min_lrs to one per group")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def _check_state_dict(self, state_dict):
        super()._check_state_dict(state_dict)
        if (state_dict["mode"] not in ("min", "max")
                or state_dict["threshold_mode"] not in ("rel", "abs")):
            raise ValueError("state_dict has an invalid mode or threshold_mode")
