"""torch.optim-style optimizer classes over NumPy arrays.

    >>> import numpy as np, fastopt
    >>> w = np.zeros(3)
    >>> opt = fastopt.optim.Adam([w], lr=1e-2)
    >>> opt.step([np.array([1.0, -2.0, 0.5])])   # arrays carry no .grad: pass the gradients
    >>> w
    array([-0.01,  0.01, -0.01])

Conventions (from torch.optim): ``params`` is a list of arrays or of param-group
dicts (``{"params": [...], "lr": ...}``); hyperparameters live in
``param_groups`` and are read at every step, so schedulers may change them;
``state`` holds torch's key names; ``state_dict()``/``load_state_dict()``
round-trip exactly, so a resumed run is bitwise identical to an uninterrupted
one. ``step(grads)`` takes the gradients aligned with the parameters (a
``None`` gradient skips that parameter, like a torch parameter whose
``.grad`` is None) and updates the arrays in place.

A step over any number of arrays and groups is one call into C++ (one per
dtype when a model mixes float32 and float64). Every check runs before any
array or counter changes: a rejected step leaves the optimizer and the
parameters exactly as they were.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from . import _core
import math

from .clip import NonFiniteGradientError, _norm_type, clip_factor, global_grad_norm
from .functional import RPROP_VARIANTS, StepStats, _hyper, _pair

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Rprop", "Quickprop", "LBFGS"]


def _check_param(p: Any, where: str) -> np.ndarray:
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{where} must be a numpy.ndarray, got {type(p).__name__}")
    if p.dtype not in (np.float32, np.float64) or not p.dtype.isnative:
        raise TypeError(f"{where} has dtype {p.dtype}; fastopt optimizes float32 or float64 arrays")
    if not p.flags.c_contiguous:
        raise ValueError(f"{where} is not C-contiguous; it is updated in place and never copied")
    if not p.flags.writeable:
        raise ValueError(f"{where} is read-only but is updated in place")
    return p


class ParamState(dict):
    """Per-parameter state, keyed by the parameter's index in ``param_groups``
    order (as in torch's ``state_dict``); a parameter array itself is also
    accepted as a key, like ``torch_opt.state[p]``.

    Every change made through this mapping or through a parameter's state
    dict bumps ``version``, which tells the optimizer to rebuild its cached
    step plan (see ``_StepPlan``).
    """

    def __init__(self, index_of: Dict[int, int]):
        super().__init__()
        self._index_of = index_of
        self.version = 0

    def _key(self, key):
        if isinstance(key, np.ndarray):
            try:
                return self._index_of[id(key)]
            except KeyError:
                raise KeyError("this array is not a parameter of the optimizer") from None
        return key

    def __getitem__(self, key):
        return super().__getitem__(self._key(key))

    def __contains__(self, key):
        try:
            return super().__contains__(self._key(key))
        except KeyError:
            return False

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __setitem__(self, key, value):
        self.version += 1
        super().__setitem__(self._key(key), _TrackedState(self, value))

    def __delitem__(self, key):
        self.version += 1
        super().__delitem__(self._key(key))

    def clear(self):
        self.version += 1
        super().clear()


class _TrackedState(dict):
    """One parameter's state dict; any change bumps the owner's version."""

    def __init__(self, owner: ParamState, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = owner

    def _changed(self):
        self._owner.version += 1

    def __setitem__(self, key, value):
        self._changed()
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._changed()
        super().__delitem__(key)

    def update(self, *args, **kwargs):
        self._changed()
        super().update(*args, **kwargs)

    def pop(self, *args):
        self._changed()
        return super().pop(*args)

    def popitem(self):
        self._changed()
        return super().popitem()

    def setdefault(self, key, default=None):
        self._changed()
        return super().setdefault(key, default)

    def clear(self):
        self._changed()
        super().clear()


class Optimizer:
    """Base class: param groups, lazily created state, one kernel call per step.

    A subclass declares

    * ``_roles``: the kernel's state buffers in kernel-argument order (torch key names);
    * ``_roles_needed(group)``: which of them the group's settings use;
    * ``_initial_value(role, group)``: the fill value of a new state buffer;
    * ``_hyper(group, state, fresh_roles, loss)``: the C++ hyperparameter set
      for one parameter at this step (``state["step"]`` already incremented);
    * ``_kernel``: the ``fastopt._core`` entry point.

    Options every optimizer takes (keyword-only), for the whole step:

    * ``max_grad_norm``: clip by the global norm of all the step's gradients,
      computed in C++ with a deterministic reduction (``norm_type`` 2, 1 or
      inf): the gradients are scaled by ``min(1, max_norm/(norm + 1e-6))``
      inside the kernel, as ``torch.nn.utils.clip_grad_norm_`` would, but
      without writing the caller's gradient arrays. Costs one read-only pass
      over the gradients before the update.
    * ``grad_clip_value``: clip each gradient element to ``[-v, v]`` (fused).
    * ``nonfinite``: what a NaN/Inf gradient does: ``"ignore"`` (default, as
      torch: it flows into the update), ``"raise"``
      (:class:`~fastopt.clip.NonFiniteGradientError`, nothing changed) or
      ``"skip"`` (the step is skipped: no buffer or counter changes). The
      check is part of the norm pass above (one read-only pass over the
      gradients when ``max_grad_norm`` is not set).

    and, per param group, ``l1`` (proximal L1 after the update: exact zeros)
    and ``decoupled_weight_decay`` (see :mod:`fastopt.functional`).
    """

    _roles: Sequence[str] = ()
    _kernel = None

    def __init__(self, params, defaults: Dict[str, Any], *, max_grad_norm: Optional[float] = None,
                 grad_clip_value: Optional[float] = None, norm_type: float = 2.0, nonfinite: str = "ignore"):
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"invalid max_grad_norm: {max_grad_norm!r} (must be > 0 or None)")
        if grad_clip_value is not None and not grad_clip_value > 0:
            raise ValueError(f"invalid grad_clip_value: {grad_clip_value!r} (must be > 0 or None)")
        if nonfinite not in ("ignore", "raise", "skip"):
            raise ValueError(f"invalid nonfinite: {nonfinite!r} (expected 'ignore', 'raise' or 'skip')")
        self.max_grad_norm = max_grad_norm
        self.grad_clip_value = grad_clip_value
        self.norm_type = _norm_type(norm_type)
        self.nonfinite = nonfinite
        self.last_stats: Optional[StepStats] = None
        self._grad_scale = 1.0  # this step's global-norm clipping factor
        self.defaults = dict(defaults)
        self.param_groups: List[Dict[str, Any]] = []
        self._index_of: Dict[int, int] = {}
        self.state = ParamState(self._index_of)
        self._n_params = 0
        self._plan: Optional[_StepPlan] = None  # the last step's plan, reused while nothing changed
        if isinstance(params, np.ndarray):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    # ----------------------------------------------------------------- groups
    @property
    def params(self) -> List[np.ndarray]:
        """All parameters, in param_groups order (the order of ``step``'s grads)."""
        return [p for group in self.param_groups for p in group["params"]]

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, np.ndarray):
            params = [params]
        if params is None or isinstance(params, (set, dict)):
            raise TypeError("param group 'params' must be an array or an ordered sequence of arrays")
        params = list(params)
        start = len(self._index_of)
        for k, p in enumerate(params):
            _check_param(p, f"params[{start + k}]")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"unknown hyperparameters in param group: {sorted(unknown)}")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        group["params"] = params
        self._validate_group(group)
        for k, p in enumerate(params):
            self._index_of[id(p)] = start + k
        self._check_distinct(self.params + params)
        self.param_groups.append(group)
        self._n_params += len(params)
        self._plan = None

    @staticmethod
    def _check_distinct(params: List[np.ndarray]) -> None:
        spans = sorted(
            (p.__array_interface__["data"][0], p.nbytes, k) for k, p in enumerate(params) if p.nbytes
        )
        for (start_a, size_a, a), (start_b, _, b) in zip(spans, spans[1:]):
            if start_b < start_a + size_a:
                raise ValueError(f"params[{a}] and params[{b}] share memory; each parameter must "
                                 "appear once and own its memory")

    def _validate_group(self, group: Dict[str, Any]) -> None:
        """Raise ValueError for invalid hyperparameters (builds the C++ set once)."""
        self._hyper(group, {"step": 1}, set(self._roles), loss=0.0)

    # ------------------------------------------------------------------- step
    def step(self, grads, loss: Optional[float] = None, stats: bool = False):
        """Update every parameter in place from ``grads`` (aligned with
        :attr:`params`; ``None`` skips a parameter). Returns ``loss``, or with
        ``stats=True`` a :class:`~fastopt.functional.StepStats` (also kept in
        :attr:`last_stats`)."""
        if isinstance(grads, np.ndarray):
            grads = [grads]
        grads = list(grads)
        if len(grads) != self._n_params:
            raise ValueError(f"grads has {len(grads)} entries but the optimizer has {self._n_params} parameters")
        plan = self._plan
        if plan is None or not plan.still_valid(self, grads):
            plan = _StepPlan(self, grads)

        self._grad_scale = 1.0
        if self.max_grad_norm is not None or self.nonfinite != "ignore":
            norm, nonfinite = global_grad_norm(grads, self.norm_type)
            if nonfinite and self.nonfinite == "raise":
                raise NonFiniteGradientError(f"{nonfinite} gradient elements are NaN or Inf "
                                             "(nonfinite='raise'); nothing was changed")
            if nonfinite and self.nonfinite == "skip":
                self.last_stats = StepStats(grad_norm=norm, param_norm=math.nan, update_norm=0.0,
                                            update_ratio=0.0, nonfinite_grads=nonfinite, skipped=True)
                return self.last_stats if stats else loss
            if self.max_grad_norm is not None and math.isfinite(norm):
                self._grad_scale = clip_factor(norm, self.max_grad_norm)

        sums = plan.run(self, grads, loss, stats)
        self._plan = plan
        if not stats:
            return loss
        self.last_stats = StepStats.from_sums(*sums, grad_scale=self._grad_scale)
        return self.last_stats

    def _shared(self, group) -> Dict[str, Any]:
        """The hyperparameters every optimizer's C++ set takes (SharedHyper)."""
        clip = self.grad_clip_value
        return dict(l1=group["l1"], decoupled_weight_decay=group["decoupled_weight_decay"],
                    grad_scale=self._grad_scale, clip_value=math.inf if clip is None else clip)

    def _roles_needed_tuple(self, group) -> tuple:
        return tuple(self._roles_needed(group))

    def _hyper_key(self, group, state, fresh):
        """Tensors whose keys are equal share one C++ hyperparameter set."""
        return (state["step"], frozenset(fresh))

    def _scalar_state_after_step(self, group, loss) -> Dict[str, Any]:
        """Scalar state stored with each stepped parameter (e.g. irprop+'s loss)."""
        return {}

    def _roles_needed(self, group) -> List[str]:
        return list(self._roles)

    def _initial_value(self, role: str, group) -> float:
        return 0.0

    def _hyper(self, group, state, fresh, loss):
        raise NotImplementedError

    # ----------------------------------------------------------- state dicts
    def state_dict(self) -> Dict[str, Any]:
        """A deep copy of the state (arrays copied) and the param groups, with
        parameters replaced by their indices, as in torch."""
        groups, start = [], 0
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in dict.items(self.state)}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Everything is checked (group and
        parameter counts, each state array's shape, known keys, hyperparameters)
        before anything changes; arrays are copied into the parameters' dtype."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} param groups, optimizer has "
                             f"{len(self.param_groups)}")
        new_groups = []
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {k} has {len(saved['params'])} parameters in "
                                 f"state_dict but {len(group['params'])} in the optimizer")
            new_group = {**group, **{n: copy.deepcopy(v) for n, v in saved.items() if n != "params"}}
            new_group["params"] = group["params"]
            self._validate_group(new_group)
            new_groups.append(new_group)

        params = self.params
        new_state = {}
        for raw_index, saved_state in state_dict["state"].items():
            i = int(raw_index)
            if not 0 <= i < len(params):
                raise ValueError(f"state_dict has state for parameter {i}, optimizer has {len(params)}")
            new_state[i] = self._load_param_state(i, params[i], saved_state)

        for group, new_group in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new_group)
        dict.clear(self.state)
        dict.update(self.state, {i: _TrackedState(self.state, st) for i, st in new_state.items()})
        self.state.version += 1

    def _load_param_state(self, i: int, p: np.ndarray, saved: Dict[str, Any]) -> Dict[str, Any]:
        out = {}
        for key, value in saved.items():
            if key in self._roles:
                value = np.asarray(value)
                if value.shape != p.shape:
                    raise ValueError(f"state[{i}][{key!r}] has shape {value.shape} but parameter {i} "
                                     f"has shape {p.shape}")
                if value.dtype.kind != "f":
                    raise TypeError(f"state[{i}][{key!r}] has dtype {value.dtype}; expected floating point")
                out[key] = np.array(value, dtype=p.dtype, order="C", copy=True)
            elif key == "step":
                step = int(value)
                if step < 0 or step != value:
                    raise ValueError(f"state[{i}]['step'] must be a non-negative integer, got {value!r}")
                out[key] = step
            elif key in self._scalar_state_keys:
                out[key] = None if value is None else float(value)
            else:
                raise ValueError(f"state[{i}] has unknown key {key!r} for {type(self).__name__}")
        return out

    _scalar_state_keys: Sequence[str] = ()

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            lines += [f"    {n}: {v}" for n, v in sorted(group.items()) if n != "params"]
        return "\n".join(lines + [")"])


class _StepPlan:
    """Everything a step does that does not change from step to step.

    Built from the current state (creating the state arrays a parameter does
    not have yet, which are stored only once the step has succeeded), then run:
    one kernel call per (dtype, state roles) partition, every call validated
    before any runs, then the step counters committed. The optimizer keeps the
    plan and runs it again at the next step while ``still_valid``: the same
    parameters get gradients, the groups need the same state roles, and every
    state dict, state array and step counter is the one the plan expects. So
    a step over many arrays costs one pass over Python lists, not a rebuild.
    """

    def __init__(self, opt: "Optimizer", grads: List[Any]):
        self.signature = self._signature(opt, grads)
        self.state_version = opt.state.version
        self.calls: Dict[Any, Dict[str, Any]] = {}
        self.entries: List[list] = []  # [index, group, state dict or None, new arrays, step, expected arrays]
        self.has_fresh = False         # some state is created by this step
        self.slots: List[list] = []    # per hyperparameter set: [group, state-like dict, fresh roles]
        index = 0
        for group_number, group in enumerate(opt.param_groups):
            needed = opt._roles_needed_tuple(group)
            for p in group["params"]:
                if grads[index] is not None:
                    state = dict.get(opt.state, index)
                    old = state or {}
                    fresh = {r: np.full_like(p, opt._initial_value(r, group), order="C")
                             for r in needed if r not in old}
                    arrays = {**{r: old[r] for r in needed if r in old}, **fresh}
                    step = old.get("step", 0) + 1
                    like_state = {**old, "step": step}
                    call = self.calls.setdefault((p.dtype, needed), {
                        "params": [], "grad_index": [], "roles": {r: [] for r in needed}, "hyper_index": [],
                        "slots": [], "slot_of": {}})
                    # Each call has its own hyperparameter sets: the kernel checks
                    # the state roles a call needs against every set it is given.
                    key = (group_number,) + opt._hyper_key(group, like_state, fresh)
                    if key not in call["slot_of"]:
                        call["slot_of"][key] = len(call["slots"])
                        slot = [group, like_state, set(fresh)]
                        call["slots"].append(slot)
                        self.slots.append(slot)
                    call["params"].append(p)
                    call["grad_index"].append(index)
                    for r in needed:
                        call["roles"][r].append(arrays[r])
                    call["hyper_index"].append(call["slot_of"][key])
                    self.entries.append([index, group, state, fresh, step, arrays])
                    self.has_fresh = self.has_fresh or state is None or bool(fresh)
                index += 1

    @staticmethod
    def _signature(opt: "Optimizer", grads: List[Any]) -> tuple:
        return (tuple(g is None for g in grads),
                tuple((id(g), len(g["params"]), opt._roles_needed_tuple(g)) for g in opt.param_groups))

    def still_valid(self, opt: "Optimizer", grads: List[Any]) -> bool:
        # Our own commits bypass the version counter; any other change to the
        # state (a new array, a step counter set by hand, load_state_dict)
        # bumps it.
        return opt.state.version == self.state_version and self._signature(opt, grads) == self.signature

    def run(self, opt: "Optimizer", grads: List[Any], loss, stats: bool = False):
        """Runs the step; with ``stats``, returns the statistics' sums over all calls."""
        calls = list(self.calls.values())
        hypers = [[opt._hyper(group, like_state, fresh, loss) for group, like_state, fresh in call["slots"]]
                  for call in calls]
        # Validate every call before running any, so a bad gradient in the
        # second dtype cannot leave the first one updated.
        if len(calls) > 1:
            for call, call_hypers in zip(calls, hypers):
                self._call(opt, call, grads, call_hypers, check_only=True)
        totals = [0.0, 0.0, 0.0, 0]
        for call, call_hypers in zip(calls, hypers):
            sums = self._call(opt, call, grads, call_hypers, check_only=False, stats=stats)
            if stats:
                totals = [a + b for a, b in zip(totals, sums)]
        self._commit(opt, loss)
        return totals if stats else None

    def _call(self, opt, call, grads, hypers, check_only: bool, stats: bool = False):
        roles = [call["roles"].get(r) for r in opt._roles]
        call_grads = [grads[i] for i in call["grad_index"]]
        return type(opt)._kernel(call["params"], call_grads, *roles, hypers, call["hyper_index"], 0, check_only,
                                 stats)

    def _commit(self, opt: "Optimizer", loss) -> None:
        """Store new state and counters; ready the plan for the next step.
        Writes go through dict's own methods, so they do not bump the
        state version (they are what the plan expects)."""
        extras = {id(g): opt._scalar_state_after_step(g, loss) for g in opt.param_groups}
        setitem = dict.__setitem__
        if self.has_fresh:
            for entry in self.entries:
                index, group, state, fresh, step, _ = entry
                if state is None:
                    state = _TrackedState(opt.state)
                    setitem(opt.state, index, state)
                dict.update(state, fresh)
                entry[2], entry[3] = state, {}
            self.has_fresh = False
        any_extra = any(extras.values())
        for entry in self.entries:
            state, step = entry[2], entry[4]
            setitem(state, "step", step)
            if any_extra:
                dict.update(state, extras[id(entry[1])])
            entry[4] = step + 1
        for slot in self.slots:
            group, like_state, _ = slot
            slot[1] = {**like_state, "step": like_state["step"] + 1, **extras[id(group)]}
            slot[2] = set()


def _betas(betas):
    return _pair(betas, "betas")


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum and Nesterov momentum
    (torch.optim.SGD semantics).

    .. math::
        g \leftarrow \pm g + \lambda p;\;
        b \leftarrow g \text{ (first step)},\; \mu b + (1-\tau) g \text{ (later)};\;
        g \leftarrow g + \mu b \text{ (nesterov) or } b;\; p \leftarrow p - \eta g

    Args: ``lr`` (required, as in torch 2.x it defaults to 1e-3), ``momentum``
    0, ``dampening`` 0, ``weight_decay`` 0 (coupled L2; the lectures' penalty
    ``lambda*||W||^2`` is ``weight_decay = 2*lambda``), ``nesterov`` False,
    ``maximize`` False. State: ``step``, ``momentum_buffer`` (only when
    momentum != 0). See :func:`fastopt.functional.sgd_` for the lecture form
    ``v = beta*v + eta*g`` and how it relates.
    """

    _roles = ("momentum_buffer",)
    _kernel = _core.sgd

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 l1: float = 0.0, decoupled_weight_decay: bool = False, **step_options):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                                      l1=l1, decoupled_weight_decay=decoupled_weight_decay), **step_options)

    def _roles_needed(self, group):
        return ["momentum_buffer"] if group["momentum"] != 0 else []

    def _hyper(self, group, state, fresh, loss):
        # A momentum buffer that did not exist yet starts as the gradient
        # (torch: buf = clone(grad)); the kernel does that at step == 1.
        step = 1 if "momentum_buffer" in fresh else state["step"]
        return _hyper(_core.SgdHyper, lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                              weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                      maximize=group["maximize"], step=step, **self._shared(group))


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer 2011; torch.optim.Adagrad semantics).

    .. math::
        g \leftarrow \pm g + \lambda p;\; \tilde\eta = \eta/(1+(t-1)\,\text{lr\_decay});\;
        s \leftarrow s + g^2;\; p \leftarrow p - \tilde\eta\, g/(\sqrt{s}+\epsilon)

    Defaults: lr 1e-2, lr_decay 0, weight_decay 0, initial_accumulator_value 0,
    eps 1e-10. State: ``step``, ``sum``. The lectures put eps inside the root.
    """

    _roles = ("sum",)
    _kernel = _core.adagrad

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False,
                 l1: float = 0.0, decoupled_weight_decay: bool = False, **step_options):
        if not initial_accumulator_value >= 0:
            raise ValueError(f"invalid initial_accumulator_value: {initial_accumulator_value} (must be >= 0)")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize, l1=l1, decoupled_weight_decay=decoupled_weight_decay),
                         **step_options)

    def _initial_value(self, role, group):
        return group["initial_accumulator_value"]

    def _hyper(self, group, state, fresh, loss):
        return _hyper(_core.AdagradHyper, lr=group["lr"], lr_decay=group["lr_decay"],
                                  weight_decay=group["weight_decay"], eps=group["eps"],
                      maximize=group["maximize"], step=state["step"], **self._shared(group))


class RMSprop(Optimizer):
    r"""RMSprop (Hinton 2012; centered: Graves 2013; torch.optim.RMSprop semantics).

    .. math::
        v \leftarrow \alpha v + (1-\alpha) g^2;\;
        d = \sqrt{v - a^2} + \epsilon \text{ (centered, } a \leftarrow \alpha a + (1-\alpha) g)
        \text{ or } \sqrt{v} + \epsilon;\;
        p \leftarrow p - \eta g/d \text{ (or through } b \leftarrow \mu b + g/d)

    Defaults: lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0, momentum 0,
    centered False. State: ``step``, ``square_avg``, ``grad_avg`` (centered),
    ``momentum_buffer`` (momentum > 0).
    """

    _roles = ("square_avg", "grad_avg", "momentum_buffer")
    _kernel = _core.rmsprop

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False, l1: float = 0.0, decoupled_weight_decay: bool = False,
                 **step_options):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize,
                                      l1=l1, decoupled_weight_decay=decoupled_weight_decay), **step_options)

    def _roles_needed(self, group):
        return (["square_avg"] + (["grad_avg"] if group["centered"] else [])
                + (["momentum_buffer"] if group["momentum"] > 0 else []))

    def _hyper(self, group, state, fresh, loss):
        return _hyper(_core.RmspropHyper, lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                                  weight_decay=group["weight_decay"], momentum=group["momentum"],
                      centered=group["centered"], maximize=group["maximize"], **self._shared(group))


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015) and AMSGrad (Reddi et al. 2018), torch.optim.Adam semantics.

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g;\; v \leftarrow \beta_2 v + (1-\beta_2) g^2;\;
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t}+\epsilon}

    with :math:`\hat v = \max(v_{max}, v)` under ``amsgrad``. Defaults: lr 1e-3,
    betas (0.9, 0.999), eps 1e-8, weight_decay 0 (coupled L2), amsgrad False;
    ``decoupled_weight_decay=True`` makes it AdamW. State: ``step``,
    ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad). Two of the
    lectures put eps inside the root; torch and the paper put it outside.
    """

    _roles = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _kernel = _core.adam

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, l1: float = 0.0, **step_options):
        super().__init__(params, dict(lr=lr, betas=tuple(_betas(betas)), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay, l1=l1), **step_options)

    def _roles_needed(self, group):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])

    def _hyper(self, group, state, fresh, loss):
        beta1, beta2 = _betas(group["betas"])
        return _hyper(_core.AdamHyper, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                               weight_decay=group["weight_decay"], amsgrad=group["amsgrad"],
                      maximize=group["maximize"], step=state["step"], **self._shared(group))


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): ``p <- p*(1 - lr*weight_decay)``, then
    the Adam update (see :class:`Adam`). Defaults as torch.optim.AdamW: lr 1e-3,
    betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2, amsgrad False."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 l1: float = 0.0, **step_options):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True, l1=l1,
                         **step_options)


class Rprop(Optimizer):
    r"""The Rprop family: per-weight step sizes adapted from gradient signs.

    ``variant``: ``"irprop-"`` (default, what torch.optim.Rprop computes),
    ``"rprop-"``, ``"rprop+"`` (Riedmiller & Braun 1993, weight backtracking)
    or ``"irprop+"`` (Igel & Huesken 2000: backtrack only when the loss rose;
    pass the loss at every step: ``opt.step(grads, loss=f)``). See
    :func:`fastopt.functional.rprop_` for the exact rules.

    Args as torch: ``lr`` = initial step size (1e-2), ``etas`` =
    (eta_minus, eta_plus) (0.5, 1.2), ``step_sizes`` = (min, max) (1e-6, 50);
    plus ``weight_decay`` 0 and ``maximize`` False. State: ``step``, ``prev``,
    ``step_size``, and for the + variants ``prev_update`` (and ``prev_loss``
    for irprop+). Full-batch methods: use the whole-data gradient.
    """

    _roles = ("prev", "step_size", "prev_update")
    _kernel = _core.rprop
    _scalar_state_keys = ("prev_loss",)

    def __init__(self, params, lr: float = 1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), *,
                 variant: str = "irprop-", weight_decay: float = 0.0, maximize: bool = False,
                 l1: float = 0.0, decoupled_weight_decay: bool = False, **step_options):
        if variant not in RPROP_VARIANTS:
            raise ValueError(f"invalid variant: {variant!r} (expected one of {RPROP_VARIANTS})")
        super().__init__(params, dict(lr=lr, etas=tuple(_pair(etas, "etas")),
                                      step_sizes=tuple(_pair(step_sizes, "step_sizes")),
                                      variant=variant, weight_decay=weight_decay, maximize=maximize,
                                      l1=l1, decoupled_weight_decay=decoupled_weight_decay), **step_options)

    def _validate_group(self, group):
        if not (np.isfinite(group["lr"]) and group["lr"] > 0):
            raise ValueError(f"invalid lr (initial step size): {group['lr']} (must be > 0)")
        super()._validate_group(group)

    def _roles_needed(self, group):
        return ["prev", "step_size"] + (["prev_update"] if group["variant"].endswith("+") else [])

    def _initial_value(self, role, group):
        return group["lr"] if role == "step_size" else 0.0

    def _hyper(self, group, state, fresh, loss):
        etaminus, etaplus = _pair(group["etas"], "etas")
        smin, smax = _pair(group["step_sizes"], "step_sizes")
        return _hyper(_core.RpropHyper, etaminus=etaminus, etaplus=etaplus, step_size_min=smin,
                                step_size_max=smax, weight_decay=group["weight_decay"],
                                maximize=group["maximize"], variant=group["variant"], loss=loss,
                      prev_loss=state.get("prev_loss"), **self._shared(group))

    def _hyper_key(self, group, state, fresh):
        return (state.get("prev_loss"),)

    def _scalar_state_after_step(self, group, loss):
        return {"prev_loss": float(loss)} if group["variant"] == "irprop+" else {}


class Quickprop(Optimizer):
    r"""Quickprop (Fahlman 1988): a per-weight secant (parabola) step with
    maximum growth factor ``mu``; see :func:`fastopt.functional.quickprop_`.

    Defaults: lr 1e-2 (Fahlman's epsilon), mu 1.75, decay 1e-4 (added to the
    gradient as ``decay*p``), mode_switch 0 (Fahlman; FANN 1e-3), momentum 0
    (used in gradient mode only), weight_decay 0, maximize False. State:
    ``step``, ``prev_step``, ``prev_grad``. A full-batch method.
    """

    _roles = ("prev_step", "prev_grad")
    _kernel = _core.quickprop

    def __init__(self, params, lr: float = 1e-2, mu: float = 1.75, decay: float = 1e-4,
                 mode_switch: float = 0.0, momentum: float = 0.0, *, weight_decay: float = 0.0,
                 maximize: bool = False, l1: float = 0.0, decoupled_weight_decay: bool = False,
                 **step_options):
        super().__init__(params, dict(lr=lr, mu=mu, decay=decay, mode_switch=mode_switch,
                                      momentum=momentum, weight_decay=weight_decay, maximize=maximize,
                                      l1=l1, decoupled_weight_decay=decoupled_weight_decay), **step_options)

    def _hyper(self, group, state, fresh, loss):
        return _hyper(_core.QuickpropHyper, lr=group["lr"], mu=group["mu"], decay=group["decay"],
                                    mode_switch=group["mode_switch"], momentum=group["momentum"],
                      weight_decay=group["weight_decay"], maximize=group["maximize"], **self._shared(group))


class LBFGS(Optimizer):
    r"""L-BFGS with torch.optim.LBFGS's interface: ``step(closure)`` runs up to
    ``max_iter`` iterations, re-evaluating the model through ``closure``.

    NumPy arrays carry no ``.grad``, so ``closure()`` returns ``(loss, grads)``
    (``grads`` aligned with the parameters, like :meth:`Optimizer.step`'s);
    the parameters are updated in place before every call. The iteration is
    :func:`fastopt.lbfgs` (C++ two-pass direction, Moré–Thuente line search),
    resumed across ``step`` calls with the same memory. ``step`` returns the
    loss of its first evaluation, as torch does.

    Args (torch names and defaults, except ``line_search_fn``): ``lr`` 1
    (scales every first trial step), ``max_iter`` 20 (iterations per step),
    ``max_eval`` ``max_iter * 5 // 4`` (evaluations per step),
    ``tolerance_grad`` 1e-7 (stop when :math:`\lVert g\rVert_\infty \le` it),
    ``tolerance_change`` 1e-9, ``history_size`` 100, ``line_search_fn``
    ``"strong_wolfe"`` (Moré–Thuente; torch's default is None),
    ``"backtracking"`` (Armijo) or None (the fixed step ``lr``, no search).

    Differences from torch: ``tolerance_change`` is applied to the relative
    reduction :math:`(f_k - f_{k+1})/\max(|f_k|, |f_{k+1}|, 1)` (torch tests the
    absolute change of f and the step's max-norm); pairs with
    :math:`s^\top y \le 10^{-10} y^\top y` are skipped (the same rule); one
    param group only (as torch); all parameters share one dtype. State (in
    ``state[0]``, torch keeps it on the first parameter): ``s``, ``y`` (the
    stored pairs, oldest first), ``sy``, ``yy`` (their products),
    ``gamma`` (torch's ``H_diag``), ``n_iter``, ``func_evals``, ``skipped``.
    """

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: Optional[int] = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: Optional[str] = "strong_wolfe"):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                      history_size=history_size, line_search_fn=line_search_fn))
        self._solver = None

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)
        dtypes = {p.dtype for p in self.param_groups[0]["params"]}
        if len(dtypes) > 1:
            self.param_groups.clear()
            raise TypeError(f"LBFGS parameters must share one dtype, got {sorted(map(str, dtypes))}")

    def _validate_group(self, group):
        if group["line_search_fn"] not in ("strong_wolfe", "backtracking", None):
            raise ValueError(f"invalid line_search_fn: {group['line_search_fn']!r} "
                             "(expected 'strong_wolfe', 'backtracking' or None)")
        for name in ("max_iter", "max_eval", "history_size"):
            value = group[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if group["history_size"] < 1:
            raise ValueError(f"invalid history_size: {group['history_size']} (must be >= 1)")
        self._options(group)  # validated in C++ (ValueError names the argument)

    @staticmethod
    def _options(group):
        try:
            return _core.LbfgsOptions(
                gtol=group["tolerance_grad"], ftol=group["tolerance_change"], maxiter=group["max_iter"],
                maxfun=group["max_eval"], line_search=group["line_search_fn"] or "fixed",
                initial_step=group["lr"])
        except ValueError as e:
            raise ValueError(str(e).replace("maxiter", "max_iter").replace("maxfun", "max_eval")
                             .replace("initial_step (lr)", "lr").replace("gtol", "tolerance_grad")
                             .replace("ftol", "tolerance_change")) from None

    def _get_solver(self, n: int, dtype):
        if self._solver is None:
            self._solver = _core.Lbfgs(n, np.dtype(dtype), int(self.param_groups[0]["history_size"]))
        return self._solver

    def step(self, closure):
        """Run up to ``max_iter`` iterations; ``closure()`` returns ``(loss, grads)``."""
        group = self.param_groups[0]
        params = group["params"]
        offsets = np.cumsum([0] + [p.size for p in params])
        n = int(offsets[-1])
        x = np.concatenate([p.ravel() for p in params]).astype(params[0].dtype, copy=False)
        solver = self._get_solver(n, x.dtype)
        first_loss = []

        def scatter(flat):
            for p, a, b in zip(params, offsets[:-1], offsets[1:]):
                p.reshape(-1)[...] = flat[a:b]

        def fun(flat_x, flat_g):
            scatter(flat_x)
            loss, grads = closure()
            if isinstance(grads, np.ndarray):
                grads = [grads]
            grads = list(grads)
            if len(grads) != len(params):
                raise ValueError(f"closure returned {len(grads)} gradients for {len(params)} parameters")
            for k, (p, g, a, b) in enumerate(zip(params, grads, offsets[:-1], offsets[1:])):
                g = np.asarray(g)
                if g.shape != p.shape:
                    raise ValueError(f"closure returned grads[{k}] of shape {g.shape} for a parameter of "
                                     f"shape {p.shape}")
                flat_g[a:b] = g.reshape(-1)
            loss = float(loss)
            if not first_loss:
                first_loss.append(loss)
            return loss

        self.last_result = solver.run(fun, x, self._options(group), True, None)
        scatter(x)
        return first_loss[0]

    def state_dict(self):
        groups = [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"},
                   "params": list(range(len(g["params"])))} for g in self.param_groups]
        state = {} if self._solver is None else {0: self._solver.get_state()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.param_groups[0]["params"]):
            raise ValueError("state_dict does not match this optimizer's parameters (one group, "
                             f"{len(self.param_groups[0]['params'])} parameters)")
        saved = groups[0]
        group = {**self.param_groups[0], **{k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}}
        group["params"] = self.param_groups[0]["params"]
        self._validate_group(group)
        solver = None
        if state_dict["state"]:
            params = group["params"]
            solver = _core.Lbfgs(sum(p.size for p in params), params[0].dtype, int(group["history_size"]))
            solver.set_state(dict(state_dict["state"][0]))
        self.param_groups[0] = group
        self._solver = solver
