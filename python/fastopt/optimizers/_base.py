"""What every optimizer shares: the class machinery (param groups, state,
the cached step plan), the functional call, and :class:`StepStats`.

An optimizer is declared once in its C++ header (hyperparameters with
defaults and checks, state keys, element rule); ``fastopt._core.optimizers()``
exposes that declaration. A module of this package adds only what Python
needs on top: the class with its torch-style signature and docstring, the
functional form, and, where the optimizer keeps scalar state (NAdam's
``mu_product``, ASGD's ``eta``/``mu``, irprop+'s loss), two small hooks.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .. import _core
from ..clip import NonFiniteGradientError, _norm_type, clip_factor, global_grad_norm

ArrayOrList = Union[np.ndarray, Sequence[np.ndarray]]

SPECS = _core.optimizers()


@dataclass(frozen=True)
class StepStats:
    """Diagnostics of one step, gathered during the update pass (no extra
    pass over memory), with a reduction that is bitwise identical for any
    thread count.

    Attributes:
        grad_norm: L2 norm of the gradients as passed in (before clipping).
        param_norm: L2 norm of the parameters before the step.
        update_norm: L2 norm of the change the step made to the parameters.
        update_ratio: ``update_norm / param_norm`` (the lectures' rule of thumb:
            about 1e-2); ``inf`` when ``param_norm`` is 0 and something moved.
        nonfinite_grads: gradient elements that are NaN or +-Inf.
        grad_scale: the global-norm clipping factor applied (1.0: none).
        skipped: True when the step was skipped (``nonfinite="skip"``).
    """

    grad_norm: float
    param_norm: float
    update_norm: float
    update_ratio: float
    nonfinite_grads: int
    grad_scale: float = 1.0
    skipped: bool = False

    @classmethod
    def from_sums(cls, grad_sq: float, param_sq: float, update_sq: float, nonfinite: int,
                  grad_scale: float = 1.0, skipped: bool = False) -> StepStats:
        param_norm, update_norm = math.sqrt(param_sq), math.sqrt(update_sq)
        if param_norm > 0:
            ratio = update_norm / param_norm
        else:
            ratio = math.inf if update_norm > 0 else 0.0
        return cls(math.sqrt(grad_sq), param_norm, update_norm, ratio, int(nonfinite), grad_scale, skipped)


def gradient_policy(norm: float, nonfinite: int, max_grad_norm: float | None, policy: str,
                    what: str = "gradient") -> tuple[float, StepStats | None]:
    """(global-norm clipping factor, the stats of a skipped step or None) for a
    step whose gradients have this norm and non-finite count; raises
    NonFiniteGradientError under ``policy="raise"`` (see Optimizer)."""
    if nonfinite and policy == "raise":
        raise NonFiniteGradientError(f"{nonfinite} {what} elements are NaN or Inf (nonfinite='raise'); "
                                     "nothing was changed")
    if nonfinite and policy == "skip":
        return 1.0, StepStats(grad_norm=norm, param_norm=math.nan, update_norm=0.0, update_ratio=0.0,
                              nonfinite_grads=nonfinite, skipped=True)
    if max_grad_norm is not None and math.isfinite(norm):
        return clip_factor(norm, max_grad_norm), None
    return 1.0, None


# ------------------------------------------------------- 16-bit parameters
ROUNDINGS = ("nearest", "stochastic")
MASTER_WEIGHTS = (None, "split", "float32")
# The state key of each master_weights mode's array, and its dtype.
MASTER_KEYS = {"split": ("master_low_bits", np.uint16), "float32": ("master", np.float32)}


@dataclass(frozen=True)
class Rounding:
    """How a functional form writes float16/bfloat16 parameters back
    (docs/algorithms.md, "16-bit parameters"; the classes take the same per
    param group as ``rounding=``, ``master_weights=``, ``seed=``).

    Attributes:
        mode: ``"nearest"`` (round to nearest even) or ``"stochastic"``
            (unbiased, from the stream of ``(seed, step, parameter index)``).
        master_weights: None, ``"split"`` (bfloat16: ``masters`` hold the
            uint16 low halves of exact float32 masters) or ``"float32"``
            (``masters`` hold float32 copies; the parameters get their rounding).
        masters: one master array per parameter (see master_weights).
        seed, step: the stochastic rounding stream; pass a new step each step.
    """

    mode: str = "nearest"
    master_weights: str | None = None
    masters: ArrayOrList | None = None
    seed: int = 0
    step: int = 1


def write_back(rounding: str | Rounding) -> tuple[list | None, ArrayOrList | None]:
    """(writes, masters) of OptimizerSpec.step for a functional form's ``rounding``."""
    if isinstance(rounding, Rounding):
        return [(rounding.mode, rounding.master_weights, rounding.seed, rounding.step)], rounding.masters
    if isinstance(rounding, str):
        return (None if rounding == "nearest" else [(rounding, None, 0, 1)]), None
    raise TypeError(f"rounding must be 'nearest', 'stochastic' or a fastopt.Rounding, got {type(rounding).__name__}")


# --------------------------------------------------------- 8-bit state
STATE_BITS = (8, 32)
# Group settings load_state_dict keeps from the loading optimizer: a
# checkpoint's state converts to its state format (see StepPlan._in_format).
_OWN_ON_LOAD = ("params", "state_bits", "min_8bit_size")


RULE_DOC_HEADER = r"""
    .. math::
        g \leftarrow \pm g + \lambda p, \quad"""


def rule_doc(rule: str) -> str:
    """An update rule's docstring section: ``rule`` (its formulas, then defaults and references)
    after the gradient preprocessing every elementwise optimizer shares (docs/algorithms.md, 2.1)."""
    return RULE_DOC_HEADER + rule


def state_format(group) -> tuple:
    """What decides which state arrays of a group are 8-bit."""
    return group["state_bits"], group["min_8bit_size"]


def absmax_key(role: str) -> str:
    """The state key of an 8-bit state array's per-block absmax."""
    return role + "_absmax"


def quantize_state(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(codes, absmax) of a float32 state array (docs/algorithms.md, "8-bit optimizer state")."""
    return _core.quantize_blockwise(np.ascontiguousarray(x, dtype=np.float32), kind == "signed")


def dequantize_state(codes: np.ndarray, absmax: np.ndarray, kind: str) -> np.ndarray:
    return _core.dequantize_blockwise(codes, absmax, kind == "signed")


def is_16bit(p: np.ndarray) -> bool:
    return p.dtype.itemsize == 2


def state_dtype(p: np.ndarray) -> np.dtype:
    """State arrays are float32 under float16/bfloat16 parameters, else the parameter's dtype."""
    return np.dtype(np.float32) if is_16bit(p) else p.dtype


def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def pair(value, name: str) -> tuple[float, float]:
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    return first, second


def _check_param(p: Any, where: str) -> np.ndarray:
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{where} must be a numpy.ndarray, got {type(p).__name__}")
    if not (p.dtype in (np.float32, np.float64, np.float16) or _is_bfloat16(p.dtype)) or not p.dtype.isnative:
        raise TypeError(f"{where} has dtype {p.dtype}; fastopt optimizes float32, float64, float16 or "
                        "bfloat16 (ml_dtypes) arrays")
    if not p.flags.c_contiguous:
        raise ValueError(f"{where} is not C-contiguous; it is updated in place and never copied")
    if not p.flags.writeable:
        raise ValueError(f"{where} is read-only but is updated in place")
    return p


def saved_groups(param_groups) -> list[dict[str, Any]]:
    """A state dict's param groups: hyperparameters copied, parameters replaced by their indices (torch's form)."""
    groups, start = [], 0
    for group in param_groups:
        saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
        saved["params"] = list(range(start, start + len(group["params"])))
        start += len(group["params"])
        groups.append(saved)
    return groups


def param_group_list(params) -> list:
    """An optimizer's ``params`` argument (an array, arrays, or param-group dicts) as a list of groups."""
    if isinstance(params, np.ndarray):
        params = [params]
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    return params if isinstance(params[0], dict) else [{"params": params}]


def hyperparameters(arguments: dict[str, Any]) -> dict[str, Any]:
    """A class's defaults from its ``__init__``'s ``locals()``."""
    return {k: v for k, v in arguments.items() if k not in ("self", "params", "step_options", "__class__")}


def one_at_a_time(method):
    """Runs ``method`` holding the optimizer's lock. Steps of one optimizer
    from several threads are serialized (each runs whole, in the order the
    threads take the lock), and a state-dict read or load waits for a running
    step: no thread sees or leaves a half-updated state. Separate optimizers
    share no lock and step in parallel (the kernels release the GIL)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


# ------------------------------------------------------------------- state
_DICT_READS = ("__getitem__", "__contains__", "get", "items", "values", "keys", "__iter__", "__len__",
               "__repr__", "copy")
_DICT_WRITES = ("__setitem__", "__delitem__", "pop", "popitem", "setdefault", "update", "clear")
_LIST_WRITES = ("__setitem__", "__delitem__", "__iadd__", "append", "extend", "insert", "pop", "remove",
                "clear", "sort", "reverse")


def _before(hook: str, names):
    """Class decorator: each named method first calls ``self.<hook>()``, then
    the base class's method (state reads sync the lazy scalar state; writes
    invalidate the step plan)."""
    def decorate(cls):
        base = cls.__mro__[1]

        def wrap(name):
            inherited = getattr(base, name)

            def method(self, *args, **kwargs):
                getattr(self, hook)()
                return inherited(self, *args, **kwargs)
            method.__name__ = name
            return method

        for name in names:
            if name not in vars(cls):  # a method of the class's own already calls the hook
                setattr(cls, name, wrap(name))
        return cls
    return decorate


@_before("_sync", _DICT_READS)
@_before("_changed", _DICT_WRITES)
class ParamState(dict):
    """Per-parameter state, keyed by the parameter's index in ``param_groups``
    order (as in torch's ``state_dict``); a parameter array itself is also
    accepted as a key, like ``torch_opt.state[p]``.

    Every change made through this mapping or through a parameter's state
    dict bumps ``version``, which tells the optimizer to rebuild its step
    plan. Scalar state the plan advances at every step (``step``, ...) is
    written into the per-parameter dicts when they are read, not at every
    step: a step costs no Python work per array.
    """

    def __init__(self, index_of: dict[int, int]):
        super().__init__()
        self._index_of = index_of
        self.version = 0
        self._pending = None  # the plan whose scalar state is not written back yet
        self._restructure = None  # set by the optimizer: re-keys state after param_groups changed

    def _sync(self):
        if self._restructure is not None:
            self._restructure()
        if self._pending is not None:
            plan, self._pending = self._pending, None
            plan.write_scalar_state()

    def _changed(self):
        self._sync()
        self.version += 1

    def _key(self, key):
        if isinstance(key, np.ndarray):
            try:
                return self._index_of[id(key)]
            except KeyError:
                raise KeyError("this array is not a parameter of the optimizer") from None
        return key

    # Keys may be parameter arrays: these translate them (and sync or invalidate first).
    def __getitem__(self, key):
        self._sync()
        return super().__getitem__(self._key(key))

    def __contains__(self, key):
        self._sync()
        try:
            return super().__contains__(self._key(key))
        except KeyError:
            return False

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __setitem__(self, key, value):
        self._changed()
        super().__setitem__(self._key(key), TrackedState(self, value))

    def __delitem__(self, key):
        self._changed()
        super().__delitem__(self._key(key))

    def pop(self, key, *default):
        self._changed()
        return super().pop(self._key(key), *default)

    def setdefault(self, key, default=None):
        self._changed()
        key = self._key(key)
        if not super().__contains__(key):
            super().__setitem__(key, TrackedState(self, default or {}))
        return super().__getitem__(key)

    def update(self, *args, **kwargs):
        self._changed()
        for key, value in dict(*args, **kwargs).items():
            super().__setitem__(self._key(key), TrackedState(self, value))

    def copy(self):
        self._sync()
        return dict(super().items())


@_before("_sync", _DICT_READS)
@_before("_changed", _DICT_WRITES)
class TrackedState(dict):
    """One parameter's state dict; reading brings it up to date, any change
    bumps the owner's version."""

    def __init__(self, owner: ParamState, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = owner

    def _sync(self):
        self._owner._sync()

    def _changed(self):
        self._owner._changed()

    def copy(self):
        self._sync()
        return dict(super().items())


@_before("_changed", _LIST_WRITES)
class TrackedList(list):
    """``param_groups``, and each group's ``params``: adding, replacing or
    removing a group or a parameter re-keys the state (each parameter keeps
    its own) and invalidates the step plan. Hyperparameter values such as
    ``lr`` are read at every step and need neither."""

    def __init__(self, owner: Optimizer, items=()):
        super().__init__(items)
        self._owner = owner

    def _changed(self):
        self._owner._structure_changing()


class Group(dict):
    """A param group: setting its ``params`` re-keys the state and invalidates the step plan."""

    def __init__(self, owner: Optimizer, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = owner
        if "params" in self:
            dict.__setitem__(self, "params", TrackedList(owner, self["params"]))

    def __setitem__(self, key, value):
        if key == "params":
            self._owner._structure_changing()
            value = TrackedList(self._owner, value if not isinstance(value, np.ndarray) else [value])
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self._owner._structure_changing()
        super().__delitem__(key)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self):
        self._owner._structure_changing()
        super().clear()


# --------------------------------------------------------------- optimizer
class Optimizer:
    """Base class: param groups, lazily created state, one kernel call per
    step (one per dtype when a model mixes float32 and float64).

    A subclass sets ``_name`` (its C++ declaration) and defines ``__init__``
    with torch's signature, passing its hyperparameters to this class. The
    hyperparameter names, defaults and checks, the state keys and which of
    them a group needs all come from the declaration. Hooks, for optimizers
    with per-parameter scalar state:

    * ``_per_step(group, scalars, fresh, loss)``: the declaration's per-step
      values (``step`` and the like) for this step, from the parameter's
      scalar state (``step`` already incremented);
    * ``_after_step(group, scalars, loss)``: the scalar state after the step;
    * ``_initial_value(role, group)``: the fill value of a new state array.

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

    float16 and bfloat16 (``ml_dtypes``) parameters take float16/bfloat16 or
    float32 gradients and keep float32 state; the element math is the float32
    rule. Per param group (docs/algorithms.md, "16-bit parameters"):

    * ``rounding``: ``"nearest"`` (default; round to nearest even, as a cast)
      or ``"stochastic"`` (unbiased; the draws depend only on ``seed``, the
      step count and the element's place, not on threads or SIMD target);
    * ``master_weights``: None (default), ``"split"`` (bfloat16 only: the state
      ``master_low_bits`` holds the low 16 bits of an exact float32 master, so
      the run is bitwise the float32 run; the parameter is the master
      truncated) or ``"float32"`` (the state ``master`` is a float32 copy; the
      parameter is its rounding, by ``rounding``);
    * ``seed``: the stochastic rounding seed (an integer, default 0).

    Threads: separate optimizers step in parallel (the kernels release the
    GIL) with the results of stepping them one after another. Steps of one
    optimizer from several threads are serialized: each runs whole, in the
    order the threads reach it; ``state_dict``, ``load_state_dict`` and
    ``add_param_group`` wait for a running step. Never a torn state.
    """

    _name: str = ""
    # The rule reduces over each whole array (LAMB's trust ratio, Adafactor's
    # factored moments): a sharded optimizer must keep every array whole.
    _per_array_rule: bool = False
    _pairs: dict[str, tuple[str, str]] = {}  # {"betas": ("beta1", "beta2")}: from the declaration
    _scalar_state_keys: Sequence[str] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls._name:
            cls._pairs = SPECS[cls._name].pairs
            cls._pair_of = {first: pair for pair, (first, _second) in cls._pairs.items()}
            cls._second_halves = {second for _first, second in cls._pairs.values()}

    def __init__(self, params, defaults: dict[str, Any], *, max_grad_norm: float | None = None,
                 grad_clip_value: float | None = None, norm_type: float = 2.0, nonfinite: str = "ignore",
                 rounding: str = "nearest", master_weights: str | None = None, seed: int = 0,
                 state_bits: int = 32, min_8bit_size: int = 4096):
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"invalid max_grad_norm: {max_grad_norm!r} (must be > 0 or None)")
        if grad_clip_value is not None and not grad_clip_value > 0:
            raise ValueError(f"invalid grad_clip_value: {grad_clip_value!r} (must be > 0 or None)")
        if nonfinite not in ("ignore", "raise", "skip"):
            raise ValueError(f"invalid nonfinite: {nonfinite!r} (expected 'ignore', 'raise' or 'skip')")
        self._lock = threading.RLock()  # see one_at_a_time
        self.max_grad_norm = max_grad_norm
        self.grad_clip_value = grad_clip_value
        self.norm_type = _norm_type(norm_type)
        self.nonfinite = nonfinite
        self.last_stats: StepStats | None = None
        self._grad_scale = 1.0  # this step's global-norm clipping factor
        self.defaults = {**defaults, "rounding": rounding, "master_weights": master_weights, "seed": seed,
                         "state_bits": state_bits, "min_8bit_size": min_8bit_size}
        self._index_of: dict[int, int] = {}
        self.state = ParamState(self._index_of)
        self.param_groups: list[dict[str, Any]] = TrackedList(self)
        self._n_params = 0
        self._params_before: list[int] | None = None  # ids, while param_groups is being changed
        self._groups_unchecked = False  # param_groups changed and re-keyed by a read, not checked yet
        self._plan: StepPlan | None = None
        self._plan_version = -1
        if self._name:
            self._spec = SPECS[self._name]
            self._fields = self._spec.hypers
            self._state_maps = {name: kind for (name, _), kind in zip(self._spec.state, self._spec.state_maps)
                                if kind is not None}
        for group in param_group_list(params):
            self.add_param_group(group)

    # ----------------------------------------------------------------- groups
    @property
    def params(self) -> list[np.ndarray]:
        """All parameters, in param_groups order (the order of ``step``'s grads)."""
        return [p for group in self.param_groups for p in group["params"]]

    @one_at_a_time
    def add_param_group(self, param_group: dict[str, Any]) -> None:
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
        self._check_distinct(self.params + params)
        self.param_groups.append(Group(self, group))

    # --------------------------------------------- param_groups edited in place
    def _structure_changing(self) -> None:
        """Called before param_groups or a group's params change: remember
        which parameter each state index belongs to, so the state can follow
        its parameter (``_restructure``, at the next read or step)."""
        if self._params_before is None:
            self.state._sync()
            self._params_before = [id(p) for g in self.param_groups for p in g["params"]]
            self.state._restructure = functools.partial(self._restructure, check=False)
        self.state.version += 1

    def _restructure(self, check: bool = True) -> None:
        """Re-key the state after param_groups changed: each parameter keeps
        its state, a removed parameter's state goes, a new one starts fresh.
        A step (``check``) validates the groups and parameters first, and a
        rejected change stays pending; a state read re-keys without judging
        them, and the next step checks them."""
        before = self._params_before
        if before is None:
            self.state._restructure = None
            return
        for k, group in enumerate(self.param_groups):
            if not isinstance(group, Group):  # a dict placed in param_groups directly
                list.__setitem__(self.param_groups, k, Group(self, {**self.defaults, **group}))
        if check:
            self._check_groups()
        self._groups_unchecked = not check
        params = self.params
        self._params_before = None
        self.state._restructure = None
        index_of = {id(p): k for k, p in enumerate(params)}
        moved = {index_of[before[i]]: st for i, st in dict.items(self.state)
                 if i < len(before) and before[i] in index_of}
        dict.clear(self.state)
        dict.update(self.state, moved)
        self._index_of.clear()
        self._index_of.update(index_of)
        self._n_params = len(params)

    def _check_groups(self) -> None:
        for group in self.param_groups:
            self._validate_group(group)
        params = self.params
        for k, p in enumerate(params):
            _check_param(p, f"params[{k}]")
        self._check_distinct(params)
        self._groups_unchecked = False

    @staticmethod
    def _check_distinct(params: list[np.ndarray]) -> None:
        spans = sorted(
            (p.__array_interface__["data"][0], p.nbytes, k) for k, p in enumerate(params) if p.nbytes
        )
        for (start_a, size_a, a), (start_b, _, b) in zip(spans, spans[1:]):
            if start_b < start_a + size_a:
                raise ValueError(f"params[{a}] and params[{b}] share memory; each parameter must "
                                 "appear once and own its memory")

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Raise TypeError/ValueError for invalid hyperparameters (checked by
        the C++ declaration, which names the argument) and 16-bit options."""
        self._spec.needed_state(self._values(group, self._per_step(group, {"step": 1}, set(), 0.0)), 1)
        rounding, master, seed = group["rounding"], group["master_weights"], group["seed"]
        if rounding not in ROUNDINGS:
            raise ValueError(f"invalid rounding: {rounding!r} (expected 'nearest' or 'stochastic')")
        if master not in MASTER_WEIGHTS:
            raise ValueError(f"invalid master_weights: {master!r} (expected None, 'split' or 'float32')")
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
        if not 0 <= seed < 2**64:
            raise ValueError(f"invalid seed: {seed} (must be in [0, 2**64))")
        self._validate_state_bits(group)
        if master == "split":
            for p in group["params"]:
                if isinstance(p, np.ndarray) and p.dtype == np.float16:
                    raise ValueError("master_weights='split' needs bfloat16 parameters (a float16 value is not "
                                     "the top half of a float32); use master_weights='float32'")

    def _validate_state_bits(self, group: dict[str, Any]) -> None:
        bits, min_size = group["state_bits"], group["min_8bit_size"]
        if isinstance(bits, (bool, np.bool_)) or bits not in STATE_BITS:
            raise ValueError(f"invalid state_bits: {bits!r} (expected 32 or 8)")
        if isinstance(min_size, (bool, np.bool_)) or not isinstance(min_size, (int, np.integer)):
            raise TypeError(f"min_8bit_size must be an integer, got {type(min_size).__name__}")
        if min_size < 0:
            raise ValueError(f"invalid min_8bit_size: {min_size} (must be >= 0)")
        if bits == 8:
            if not any(self._spec.state_maps):
                raise ValueError(f"state_bits=8: {type(self).__name__} has no 8-bit state ({self._no_8bit_reason})")
            for p in group["params"]:
                if isinstance(p, np.ndarray) and p.dtype == np.float64:
                    raise ValueError("state_bits=8 takes float32, float16 or bfloat16 parameters; a float64 "
                                     "parameter keeps float64 state (put it in a group with state_bits=32)")

    # Why an optimizer without a dynamic map for any state key has no 8-bit form.
    _no_8bit_reason = "its state is not a moving average or a momentum"

    def _quantized(self, group, role: str, p: np.ndarray) -> str | None:
        """The map of role's 8-bit form ("signed"/"unsigned") when p keeps it
        8-bit in this group, else None (float state)."""
        if group["state_bits"] != 8 or p.size < group["min_8bit_size"]:
            return None
        if dict(self._spec.state)[role] != "param":
            return None
        return self._state_maps.get(role)

    # ---------------------------------------------------- hyperparameter sets
    def _values(self, group, per_step: dict[str, Any]) -> tuple:
        """The C++ hyperparameter set of ``group`` for this step, as step()
        takes it: the declaration's fields in order (a pair such as
        ``betas`` as one item), from the group, the per-step values and the
        step options; a field this class does not offer takes its default."""
        values = []
        pair_of = self._pair_of
        for name, default, _check, origin, _choices in self._fields:
            if name in self._second_halves:
                continue
            if origin == "per_step":
                values.append(per_step[name])
            elif name == "grad_scale":
                values.append(self._grad_scale)
            elif name == "clip_value":
                values.append(self.grad_clip_value)
            elif name in pair_of:
                values.append(group[pair_of[name]])
            else:
                values.append(group.get(name, default))
        return tuple(values)

    def _per_step(self, group, scalars: dict[str, Any], fresh, loss) -> dict[str, Any]:
        return {"step": scalars["step"]}

    def _after_step(self, group, scalars: dict[str, Any], loss) -> dict[str, Any]:
        return scalars

    def _initial_value(self, role: str, group) -> float:
        return 0.0

    @staticmethod
    def _master_needed(group, p: np.ndarray) -> str | None:
        """The state key of p's master array, if its group keeps one."""
        master = group["master_weights"]
        return MASTER_KEYS[master][0] if master and is_16bit(p) else None

    def _roles_needed(self, group, p: np.ndarray) -> tuple[str, ...]:
        values = self._values(group, self._per_step(group, {"step": 1}, set(), 0.0))
        return tuple(self._spec.needed_state(values, p.ndim))

    # ------------------------------------------------------------------- step
    @one_at_a_time
    def step(self, grads, loss: float | None = None, stats: bool = False):
        """Update every parameter in place from ``grads`` (aligned with
        :attr:`params`; ``None`` skips a parameter). Returns ``loss``, or with
        ``stats=True`` a :class:`StepStats` (also kept in :attr:`last_stats`)."""
        grads = self._aligned_grads(grads)
        self._grad_scale = 1.0
        if self.max_grad_norm is not None or self.nonfinite != "ignore":
            present = [g for g in grads if g is not None]
            self._grad_scale, skipped = gradient_policy(*global_grad_norm(present, self.norm_type),
                                                        self.max_grad_norm, self.nonfinite)
            if skipped:
                self.last_stats = skipped
                return self.last_stats if stats else loss

        sums = self._run_plan(grads, loss, stats)
        if not stats:
            return loss
        self.last_stats = StepStats.from_sums(*sums, grad_scale=self._grad_scale)
        return self.last_stats

    def _aligned_grads(self, grads) -> list:
        """grads as a list aligned with the parameters, after pending param_groups changes."""
        if isinstance(grads, np.ndarray):
            grads = [grads]
        if not isinstance(grads, list):
            grads = list(grads)
        if self._params_before is not None:
            self._restructure()
        elif self._groups_unchecked:
            self._check_groups()
        if len(grads) != self._n_params:
            raise ValueError(f"grads has {len(grads)} entries but the optimizer has {self._n_params} parameters")
        return grads

    @one_at_a_time
    def _step_scaled(self, grads, loss, grad_scale: float, stats: bool):
        """A step whose global-norm clipping factor the caller computed (a
        sharded optimizer: the norm is over every rank's gradients). Returns
        the statistics' sums with ``stats``."""
        grads = self._aligned_grads(grads)
        self._grad_scale = grad_scale
        return self._run_plan(grads, loss, stats)

    def _run_plan(self, grads, loss, stats):
        for attempt in (0, 1):
            if self._plan is not None and self._plan.state_format_changed():
                for group in self.param_groups:
                    self._validate_state_bits(group)
                self._plan = None
            if self._plan is None or self._plan_version != self.state.version or not self._plan.calls:
                self.state._sync()
                self._plan = StepPlan(self, grads)
                self._plan_version = self.state.version
            try:
                return self._plan.run(self, grads, loss, stats)
            except _core.StalePlan:  # None gradients changed, or a group now needs new state
                if attempt:
                    raise
                self._plan = None
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """NumPy arrays carry no ``.grad``: nothing to clear (torch compatibility)."""

    # ----------------------------------------------------------- state dicts
    @one_at_a_time
    def state_dict(self) -> dict[str, Any]:
        """A deep copy of the state (arrays copied) and the param groups, with
        parameters replaced by their indices, as in torch."""
        state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in self.state.items()}
        return {"state": state, "param_groups": saved_groups(self.param_groups)}

    @one_at_a_time
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
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
            new_group = {**group, **{n: copy.deepcopy(v) for n, v in saved.items() if n not in _OWN_ON_LOAD}}
            new_group["params"] = list(group["params"])
            self._validate_group(new_group)
            new_groups.append(new_group)

        params = self.params
        new_state = {}
        for raw_index, saved_state in state_dict["state"].items():
            i = int(raw_index)
            if not 0 <= i < len(params):
                raise ValueError(f"state_dict has state for parameter {i}, optimizer has {len(params)}")
            new_state[i] = self._load_param_state(i, params[i], saved_state)

        self.state._changed()
        for group, new_group in zip(self.param_groups, new_groups):
            dict.clear(group)
            dict.update(group, new_group)
            dict.__setitem__(group, "params", TrackedList(self, new_group["params"]))
        dict.clear(self.state)
        dict.update(self.state, {i: TrackedState(self.state, st) for i, st in new_state.items()})

    def _state_shape(self, role: str, p: np.ndarray) -> tuple:
        rule = dict(self._spec.state)[role]
        if rule == "rows":
            return p.shape[:-1] + (1,)
        if rule == "cols":
            return p.shape[:-2] + (1,) + p.shape[-1:]
        return p.shape

    def _load_param_state(self, i: int, p: np.ndarray, saved: dict[str, Any]) -> dict[str, Any]:
        out = {}
        roles = [name for name, _ in self._spec.state]
        absmax_roles = {absmax_key(r): r for r in self._state_maps}
        for key, value in saved.items():
            if key in roles and np.asarray(value).dtype == np.uint8 and key in self._state_maps:
                out[key] = self._load_codes(i, p, key, np.asarray(value), saved)
            elif key in absmax_roles and absmax_roles[key] in saved:
                blocks = -(-p.size // _core.QUANT_BLOCK)
                value = np.asarray(value)
                if value.shape != (blocks,) or value.dtype != np.float32:
                    raise ValueError(f"state[{i}][{key!r}] must be float32 of shape ({blocks},) (one absmax per "
                                     f"block of 256), got {value.dtype} {value.shape}")
                out[key] = np.array(value, order="C", copy=True)
            elif key in roles:
                value = np.asarray(value)
                shape = self._state_shape(key, p)
                if value.shape != shape:
                    raise ValueError(f"state[{i}][{key!r}] has shape {value.shape} but parameter {i} "
                                     f"needs shape {shape}")
                if value.dtype.kind != "f":
                    raise TypeError(f"state[{i}][{key!r}] has dtype {value.dtype}; expected floating point")
                out[key] = np.array(value, dtype=state_dtype(p), order="C", copy=True)
            elif key in ("master", "master_low_bits") and is_16bit(p):
                value = np.asarray(value)
                want = np.float32 if key == "master" else np.uint16
                if value.shape != p.shape:
                    raise ValueError(f"state[{i}][{key!r}] has shape {value.shape} but parameter {i} has "
                                     f"shape {p.shape}")
                if value.dtype != want:
                    raise TypeError(f"state[{i}][{key!r}] has dtype {value.dtype}; expected {np.dtype(want)}")
                out[key] = np.array(value, order="C", copy=True)
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

    def _load_codes(self, i: int, p: np.ndarray, key: str, codes: np.ndarray, saved: dict) -> np.ndarray:
        if codes.shape != p.shape:
            raise ValueError(f"state[{i}][{key!r}] has shape {codes.shape} but parameter {i} has shape {p.shape}")
        if absmax_key(key) not in saved:
            raise ValueError(f"state[{i}][{key!r}] holds 8-bit codes but state[{i}] has no "
                             f"{absmax_key(key)!r}")
        return np.array(codes, order="C", copy=True)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            lines += [f"    {n}: {v}" for n, v in sorted(group.items()) if n != "params"]
        return "\n".join(lines + [")"])


# --------------------------------------------------------------- step plan
class _Slot:
    """Parameters that share one C++ hyperparameter set: the same group, the
    same scalar state (step count, ...) and the same state arrays to create."""

    __slots__ = ("group", "scalars", "fresh", "entries", "state_format")

    def __init__(self, group, scalars, fresh):
        self.group, self.scalars, self.fresh, self.entries = group, scalars, fresh, []
        self.state_format = state_format(group)


class StepPlan:
    """Everything a step does that does not change from step to step.

    Built from the current state (creating the state arrays a parameter does
    not have yet, which are stored only once the step has succeeded): one C++
    plan (``OptimizerSpec.plan``) per dtype, holding the checked pointers of
    the parameters and state arrays. A step then costs, in Python, one
    hyperparameter tuple per slot (group and step count) and one call per
    dtype: nothing per array. The optimizer rebuilds the plan when its state
    or groups change (``ParamState.version``) or a gradient turns None.
    """

    def __init__(self, opt: Optimizer, grads: list[Any]):
        self.calls = []      # per dtype: (cpp plan, slots, 16-bit parameters?)
        self.slots: list[_Slot] = []
        self.committed = False  # new state arrays stored in opt.state
        by_dtype: dict[Any, dict[str, Any]] = {}
        index = 0
        roles = [name for name, _ in opt._spec.state]
        for group_number, group in enumerate(opt.param_groups):
            for p in group["params"]:
                g = grads[index]
                if g is not None:
                    self._add(opt, by_dtype, roles, group_number, group, p, index)
                index += 1
        n_none = sum(g is None for g in grads)
        for call in by_dtype.values():
            state = [call["state"][r] for r in roles]
            narrow = is_16bit(call["params"][0])
            plan = opt._spec.plan(call["params"], state, call["hyper_index"], call["grad_index"], len(grads),
                                  n_none, call["masters"] if narrow else None)
            self.calls.append((plan, call["slots"], narrow))
        self.opt = opt

    def _add(self, opt, by_dtype, roles, group_number, group, p, index):
        state = dict.get(opt.state, index)
        old = dict(state) if state is not None else {}
        needed = opt._roles_needed(group, p)
        fresh = {r: np.full(opt._state_shape(r, p), opt._initial_value(r, group), dtype=state_dtype(p), order="C")
                 for r in needed if r not in old}
        arrays = {r: old.get(r, fresh.get(r)) for r in needed}
        for r in needed:
            arrays[r] = self._in_format(opt, group, p, r, arrays[r], old, fresh)
        master_key = opt._master_needed(group, p)
        if master_key and master_key not in old:
            fresh[master_key] = (p.astype(np.float32) if master_key == "master"
                                 else np.zeros(p.shape, np.uint16))  # the master is p itself
        scalars = {k: v for k, v in old.items() if not isinstance(v, np.ndarray)}
        scalars["step"] = old.get("step", 0)
        call = by_dtype.setdefault(p.dtype, {"params": [], "grad_index": [], "hyper_index": [], "masters": [],
                                             "state": {r: [] for r in roles}, "slots": [], "slot_of": {}})
        key = (group_number, tuple(sorted(scalars.items())), frozenset(fresh))
        if key not in call["slot_of"]:
            call["slot_of"][key] = len(call["slots"])
            slot = _Slot(group, scalars, set(fresh))
            call["slots"].append(slot)
            self.slots.append(slot)
        slot = call["slots"][call["slot_of"][key]]
        slot.entries.append((index, state, fresh))
        call["params"].append(p)
        call["masters"].append(old.get(master_key, fresh.get(master_key)) if master_key else None)
        call["grad_index"].append(index)
        call["hyper_index"].append(call["slot_of"][key])
        for r in roles:
            call["state"][r].append(arrays.get(r))

    def state_format_changed(self) -> bool:
        """A group's state_bits or min_8bit_size changed since the plan was built."""
        return any(slot.state_format != state_format(slot.group) for slot in self.slots)

    @staticmethod
    def _in_format(opt, group, p, role, array, old, fresh):
        """The state array of ``role`` as the group keeps it: float, or an
        8-bit (codes, absmax) pair. A state in the other form (a loaded
        checkpoint, a changed ``state_bits``) is converted, and stored with
        the step: quantized blockwise, or dequantized (its absmax key dropped)."""
        kind = opt._quantized(group, role, p)
        is_codes = array.dtype == np.uint8
        key = absmax_key(role)
        if kind and is_codes:
            return (array, old[key])
        if kind:
            fresh[role], fresh[key] = quantize_state(array, kind)
            return (fresh[role], fresh[key])
        if is_codes:
            fresh[role] = dequantize_state(array, old[key], opt._state_maps[role]).astype(state_dtype(p))
            fresh[key] = None  # dropped at commit
            return fresh[role]
        return array

    def run(self, opt: Optimizer, grads: list[Any], loss, stats: bool = False):
        """Runs the step; with ``stats``, returns the statistics' sums over all calls."""
        hypers, writes = [], []
        for _, slots, narrow in self.calls:
            sets, write = [], []
            for slot in slots:
                step = slot.scalars["step"] + 1
                scalars = {**slot.scalars, "step": step}
                sets.append(opt._values(slot.group, opt._per_step(slot.group, scalars, slot.fresh, loss)))
                if narrow:
                    group = slot.group
                    write.append((group["rounding"], group["master_weights"], group["seed"], step))
            hypers.append(sets)
            writes.append(write if narrow else None)
        # Validate every call before running any, so a bad gradient in the
        # second dtype cannot leave the first one updated.
        if len(self.calls) > 1:
            for (plan, _, _), sets, write in zip(self.calls, hypers, writes):
                plan.run(grads, sets, 0, True, False, write)
        totals = [0.0, 0.0, 0.0, 0]
        for (plan, _, _), sets, write in zip(self.calls, hypers, writes):
            sums = plan.run(grads, sets, 0, False, stats, write)
            if stats:
                totals = [a + b for a, b in zip(totals, sums)]
        self._commit(opt, loss)
        return totals if stats else None

    def _commit(self, opt: Optimizer, loss) -> None:
        """Advance every slot's scalar state; store new state arrays once.
        Per-parameter dicts get the scalar state when next read."""
        for slot in self.slots:
            scalars = {**slot.scalars, "step": slot.scalars["step"] + 1}
            slot.scalars = opt._after_step(slot.group, scalars, loss)
            slot.fresh = set()
        if not self.committed:
            for slot in self.slots:
                for k, (index, state, fresh) in enumerate(slot.entries):
                    if state is None:
                        state = TrackedState(opt.state)
                        dict.__setitem__(opt.state, index, state)
                    dict.update(state, {key: v for key, v in fresh.items() if v is not None})
                    for key in [key for key, v in fresh.items() if v is None]:
                        dict.pop(state, key, None)
                    slot.entries[k] = (index, state, {})
            self.committed = True
        opt.state._pending = self

    def write_scalar_state(self) -> None:
        for slot in self.slots:
            for _, state, _ in slot.entries:
                dict.update(state, slot.scalars)
