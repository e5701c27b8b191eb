"""fastopt's optimizers as :class:`torch.optim.Optimizer` classes over CPU tensors.

Quickstart::

    import torch
    import fastopt.torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = fastopt.torch.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()

Every optimizer of :mod:`fastopt.optim` except LBFGS is here under the same
name (SGD, Adagrad, RMSprop, Adam, AdamW, Rprop, Quickprop, Adadelta, Adamax,
NAdam, RAdam, ASGD, Adafactor, Lion, LAMB), with the fastopt class's signature
and defaults (which follow torch.optim's), its keyword options
(``max_grad_norm``, ``grad_clip_value``, ``norm_type``, ``nonfinite``, and per
param group ``rounding``, ``master_weights``, ``seed``), and torch's
``foreach``/``fused`` (accepted and ignored: a step is always one fused C++
call) and ``capturable``/``differentiable`` (must be False). The classes are
generated from one adapter, :class:`TorchOptimizer`, by :func:`torch_optimizer`;
the fastopt class is the single source of truth for the rule and its checks.
This module imports torch; ``import fastopt`` does not import this module.

What is zero-copy
-----------------
* Parameters: the adapter holds one NumPy view per parameter tensor
  (``t.detach().numpy()``; bfloat16 through ``t.view(torch.int16)`` and
  ``ml_dtypes.bfloat16``, imported only when a bfloat16 tensor is seen), and the
  C++ step writes the tensor's own memory: ``data_ptr()`` never changes. The
  views are built once and rebuilt only when a tensor's storage, shape,
  strides or dtype change (``p.data = ...``, ``model.to(...)``) or the param
  groups change; the state then follows its tensor.
* Gradients: ``p.grad`` is read through a NumPy view at every step (no copy;
  a non-contiguous gradient is copied). A float16/bfloat16 parameter may have a
  float32 gradient (``p.grad_dtype``).
* State: ``opt.state[p][key]`` is ``torch.from_numpy`` of fastopt's array: the
  same memory, so in-place edits of it act on the optimizer.
* A step costs O(1) Python beyond reading each ``p.grad`` (and checking each
  tensor's ``data_ptr``/shape/strides/dtype): one C++ call per dtype through
  fastopt's cached step plan, which the cached views keep valid.

What differs from torch.optim
-----------------------------
* CPU only, dense contiguous float32/float64/float16/bfloat16 parameters and
  dense gradients: anything else (CUDA or meta tensors, sparse gradients,
  non-contiguous parameters, other dtypes, a gradient whose shape differs
  from its parameter's) raises TypeError/ValueError naming the parameter
  before anything is written.
* Numerics: fastopt's fused rule (docs/algorithms.md) agrees with torch's
  single-tensor implementation to rounding, not bitwise (e.g. NAdam scales
  ``sqrt(v)`` by ``1/sqrt(1-beta2**t)``; Adafactor sums in double; NAdam's
  ``mu_product`` and ASGD's ``eta``/``mu`` are doubles, torch's are float32
  tensors unless the default dtype is float64).
* Scalar state: ``step`` is read as a 0-d tensor of torch's scalar dtype
  (float32, float64 under a float64 default dtype), ``mu_product``, ``eta``,
  ``mu`` as float64 0-d tensors (fastopt keeps them as doubles). They are
  snapshots: assign ``opt.state[p]["step"] = ...`` to change one (an in-place
  ``+= 1`` on the tensor read is lost).
* SGD's state also has ``step`` (torch.optim.SGD keeps none, and ignores the
  key when loading); a torch SGD state without ``step`` loads with step 1 when
  it has a ``momentum_buffer`` (the buffer is then continued, as torch does).
* ``opt.state`` is a live mapping over fastopt's state, not a defaultdict:
  ``opt.state[p]`` of a parameter without state is an empty mapping that
  creates the state when written, ``p in opt.state`` is True only once it has
  state. Assigning a tensor to a state key copies it into fastopt's array
  (checked: shape, dtype, known key) instead of keeping the tensor.
* float16/bfloat16 parameters keep float32 state, also after
  ``load_state_dict`` (torch casts loaded state to the parameter's dtype);
  ``master_weights`` adds the state keys ``master`` (float32) or
  ``master_low_bits`` (uint16), which torch.optim ignores. With
  ``state_bits=8`` a state key holds uint8 codes and ``<key>_absmax`` the
  block scales (docs/algorithms.md, 2.6): such a state dict is fastopt's
  (torch.optim would read the codes as numbers); load it into an optimizer
  with ``state_bits=32`` to have float state again.
* ``load_state_dict`` copies the tensors it is given (torch may keep them
  when dtype and device already match); ``state_dict()`` shares the state
  arrays' memory, as torch's does (``copy.deepcopy`` it for a snapshot). A
  parameter group of a loaded state dict keeps the current value of a
  hyperparameter it lacks (a torch.optim dict has no ``l1``, ``rounding``,
  ...); torch's ``foreach``/``fused``/``capturable``/``differentiable`` are
  dropped from loaded groups. Other keys of a group (``initial_lr`` of a
  scheduler, ``param_names``, your own) are kept and ignored, as in torch.
* Adagrad creates its state at the first step (torch at construction), and
  each group's ``initial_accumulator_value`` fills its ``sum`` (torch uses
  the constructor's for every group).
* Rprop has fastopt's variants (``variant="irprop-"`` is torch's);
  ``"irprop+"`` needs the loss: pass a closure to ``step``.
* ``step(closure=None, *, stats=False)``: with ``stats=True`` the step's
  :class:`fastopt.StepStats` is kept in :attr:`TorchOptimizer.last_stats`.
* The optimizer cannot be pickled or deep-copied: save its ``state_dict()``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Mapping, MutableMapping
from itertools import chain
from typing import Any

import numpy as np
import torch

from . import optim as _optim
from .clip import NonFiniteGradientError
from .optimizers._base import _OWN_ON_LOAD, absmax_key
from .optimizers._base import Optimizer as _NumpyOptimizer

__all__ = ["TorchOptimizer", "torch_optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Rprop", "Quickprop",
           "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Adafactor", "Lion", "LAMB"]

# fastopt's options for the whole optimizer (the per-group ones, rounding,
# master_weights, seed, state_bits and min_8bit_size, are hyperparameters of
# every group).
_STEP_OPTIONS = ("max_grad_norm", "grad_clip_value", "norm_type", "nonfinite")
_GROUP_OPTIONS = ("rounding", "master_weights", "seed", "state_bits", "min_8bit_size")
# torch.optim's implementation switches: accepted, never stored in a group.
_TORCH_SWITCHES = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}
_MASTER_KEYS = ("master", "master_low_bits")
_DOUBLE_STATE = ("mu_product", "eta", "mu")  # fastopt floats, read as float64 0-d tensors
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NARROW = (torch.float16, torch.bfloat16)

_BFLOAT16 = None


def _bfloat16():
    """ml_dtypes.bfloat16, imported the first time a bfloat16 tensor is seen."""
    global _BFLOAT16
    if _BFLOAT16 is None:
        try:
            import ml_dtypes
        except ImportError as e:  # pragma: no cover - ml_dtypes is a test dependency
            raise ImportError("bfloat16 tensors need ml_dtypes (pip install ml_dtypes): NumPy has no bfloat16") from e
        _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
    return _BFLOAT16


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


def _layout_key(p: torch.Tensor) -> tuple:
    """What a cached NumPy view depends on: a change means the view is stale."""
    return p.data_ptr(), p.shape, p.stride(), p.dtype


def _plain(value):
    """A hyperparameter as fastopt takes it: 0-d tensors (a tensor lr) become
    Python numbers; anything else is returned as is (the same object)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a tensor hyperparameter must have one element, got shape {tuple(value.shape)}")
        return value.item()
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        return type(value)(_plain(v) for v in value)
    return value


def _loss_value(loss):
    """The closure's loss as a float for fastopt (Rprop's irprop+ compares losses), or None."""
    if loss is None:
        return None
    if isinstance(loss, torch.Tensor):
        return loss.item() if loss.numel() == 1 else None
    try:
        return float(loss)
    except (TypeError, ValueError):
        return None


def _scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives ``step`` (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# ----------------------------------------------------------------- state view
class _ParamStateView(MutableMapping):
    """``opt.state[p]``: one parameter's state in torch's key names, read from
    and written to fastopt's state."""

    __slots__ = ("_owner", "_param")

    def __init__(self, owner: TorchOptimizer, param: torch.Tensor):
        self._owner, self._param = owner, param

    def _entry(self):
        owner = self._owner
        return owner._fo.state.get(owner._index(self._param))

    def __getitem__(self, key):
        entry = self._entry()
        if entry is None:
            raise KeyError(key)
        return self._owner._to_torch(key, entry[key])

    def __setitem__(self, key, value):
        owner = self._owner
        i = owner._index(self._param)
        entry = owner._fo.state.get(i)
        merged = {**(entry.copy() if entry is not None else {}), key: value}
        owner._fo.state[i] = owner._from_torch(i, merged)

    def __delitem__(self, key):
        entry = self._entry()
        if entry is None:
            raise KeyError(key)
        del entry[key]

    def __iter__(self) -> Iterator:
        entry = self._entry()
        return iter(list(entry.keys()) if entry is not None else ())

    def __len__(self) -> int:
        entry = self._entry()
        return 0 if entry is None else len(entry)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class _StateView(MutableMapping):
    """``opt.state``: torch's per-parameter state, keyed by parameter tensor,
    over fastopt's state (keyed by parameter index). Arrays are shared."""

    __slots__ = ("_owner",)

    def __init__(self, owner: TorchOptimizer):
        self._owner = owner

    def __getitem__(self, param):
        self._owner._index(param)  # KeyError for a tensor that is not a parameter
        return _ParamStateView(self._owner, param)

    def get(self, param, default=None):
        return self[param] if param in self else default

    def __contains__(self, param) -> bool:
        try:
            return self._owner._index(param) in self._owner._fo.state
        except KeyError:
            return False

    def __setitem__(self, param, value: Mapping):
        owner = self._owner
        i = owner._index(param)
        owner._fo.state[i] = owner._from_torch(i, dict(value))

    def __delitem__(self, param):
        owner = self._owner
        i = owner._index(param)
        if i not in owner._fo.state:
            raise KeyError("this parameter has no state")
        del owner._fo.state[i]

    def __iter__(self) -> Iterator[torch.Tensor]:
        owner = self._owner
        owner._sync_structure()
        return iter([owner._flat[i] for i in sorted(owner._fo.state.keys())])

    def __len__(self) -> int:
        self._owner._sync_structure()
        return len(self._owner._fo.state)

    def clear(self) -> None:
        self._owner._sync_structure()
        self._owner._fo.state.clear()

    def __repr__(self) -> str:
        return repr({k: dict(v.items()) for k, v in self.items()})

    def __deepcopy__(self, memo):
        return copy.deepcopy({k: dict(v.items()) for k, v in self.items()}, memo)


# -------------------------------------------------------------------- adapter
def _step_option(name: str) -> property:
    def get(self):
        return getattr(self._fo, name)

    def set_(self, value):
        setattr(self._fo, name, value)
    return property(get, set_, doc=f"fastopt's ``{name}`` step option (for the whole optimizer).")


class TorchOptimizer(torch.optim.Optimizer):
    """A fastopt optimizer behind the :class:`torch.optim.Optimizer` interface
    (see :mod:`fastopt.torch`). Subclasses come from :func:`torch_optimizer`:
    each wraps one :mod:`fastopt.optim` class, which defines the
    hyperparameters, their defaults and checks, and the state.

    Attributes beyond torch's: :attr:`numpy_optimizer` (the fastopt optimizer
    over NumPy views of the tensors), :attr:`last_stats`, and the step options
    ``max_grad_norm``, ``grad_clip_value``, ``norm_type``, ``nonfinite``
    (readable and settable).
    """

    _fastopt_class: type[_NumpyOptimizer] | None = None
    _signature: inspect.Signature | None = None

    def __init__(self, params, *args, **kwargs):
        cls = type(self)
        if cls._fastopt_class is None:
            raise TypeError("TorchOptimizer is a base class: use fastopt.torch.Adam, ... or torch_optimizer()")
        bound = cls._signature.bind(params, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        params = arguments.pop("params")
        for name in _TORCH_SWITCHES:
            value = arguments.pop(name)
            if name in ("capturable", "differentiable") and value:
                raise ValueError(f"{name}=True is not supported: fastopt.torch steps CPU tensors outside autograd")
        # Before torch's __init__, which assigns self.state and adds the groups.
        self._fo: _NumpyOptimizer | None = None
        self._flat: list[torch.Tensor] = []
        self._keys: list[tuple] = []
        self._bf16: list[bool] = []
        self._sizes: list[int] = []
        self._index_of: dict[int, int] = {}
        self._tensors: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
        self._tensors_version: tuple[int, int] | None = None
        # The hyperparameters' checks and defaults come from the fastopt class:
        # a one-element probe validates them now, as torch's constructors do.
        probe = cls._fastopt_class([np.zeros(1, np.float32)], **arguments)
        self._arguments = arguments
        self._hyper_keys = tuple(probe.defaults)
        self._roles = tuple(name for name, _ in probe._spec.state)
        super().__init__(params, dict(probe.defaults))

    # ------------------------------------------------------------- properties
    @property
    def state(self) -> _StateView:
        """Per-parameter state keyed by parameter tensor, in torch's key names
        (a live view of fastopt's state; arrays share memory)."""
        return _StateView(self)

    @state.setter
    def state(self, value: Mapping) -> None:
        if self._fo is None:  # torch's __init__ assigns an empty defaultdict
            if value:
                raise ValueError("cannot set state before the optimizer has parameters")
            return
        self._sync_structure()
        new = {}
        for param, entry in dict(value).items():
            i = self._index(param)
            new[i] = self._from_torch(i, dict(entry))
        self._fo.state.clear()
        self._fo.state.update(new)

    @property
    def numpy_optimizer(self) -> _NumpyOptimizer:
        """The fastopt optimizer over NumPy views of the parameters (rebuilt
        when a parameter's storage or the param groups change)."""
        self._sync_structure()
        return self._fo

    @property
    def last_stats(self):
        """The :class:`fastopt.StepStats` of the last ``step(stats=True)`` (or skipped step)."""
        return self._fo.last_stats

    max_grad_norm = _step_option("max_grad_norm")
    grad_clip_value = _step_option("grad_clip_value")
    norm_type = _step_option("norm_type")
    nonfinite = _step_option("nonfinite")

    def __getstate__(self):
        raise TypeError(f"{type(self).__name__} cannot be pickled or copied: save and load its state_dict()")

    # ----------------------------------------------------------- param groups
    def _where(self, group_index: int, j: int, p: torch.Tensor, flat_index: int) -> str:
        names = self.param_groups[group_index].get("param_names") if group_index < len(self.param_groups) else None
        name = f" {names[j]!r}" if names and j < len(names) else ""
        return (f"parameter {flat_index}{name} (param_groups[{group_index}]['params'][{j}], shape "
                f"{tuple(p.shape)}, {p.dtype})")

    def _checked_views(self) -> list[list[np.ndarray]]:
        """NumPy views of every parameter, after checking them all (nothing changes on an error)."""
        groups = self.param_groups
        devices = {p.device for g in groups for p in g["params"] if isinstance(p, torch.Tensor)}
        views, k = [], 0
        for n, group in enumerate(groups):
            row = []
            for j, p in enumerate(group["params"]):
                where = self._where(n, j, p, k) if isinstance(p, torch.Tensor) else f"parameter {k}"
                if not isinstance(p, torch.Tensor):
                    raise TypeError(f"{where} is a {type(p).__name__}, not a torch.Tensor")
                if p.layout != torch.strided:
                    raise TypeError(f"{where} has layout {p.layout}; fastopt.torch steps dense (strided) tensors")
                if p.device.type != "cpu":
                    mixed = (f"; the parameters are on mixed devices ({', '.join(sorted(map(str, devices)))})"
                             if len(devices) > 1 else "")
                    raise TypeError(f"{where} is on device '{p.device}': fastopt.torch steps CPU tensors in place "
                                    f"through NumPy views (no CUDA, meta or other devices){mixed}")
                if p.dtype not in _FLOAT_DTYPES:
                    raise TypeError(f"{where} has dtype {p.dtype}; fastopt.torch steps float32, float64, float16 "
                                    "or bfloat16 tensors")
                if not p.is_contiguous():
                    raise ValueError(f"{where} is not contiguous (strides {p.stride()}); it is updated in place "
                                     "through a NumPy view, never copied: make it contiguous first "
                                     "(p.data = p.data.contiguous())")
                row.append(_as_numpy(p))
                k += 1
            views.append(row)
        return views

    def _fastopt_group(self, group: dict, views: list[np.ndarray]) -> dict:
        return {**{k: _plain(group[k]) for k in self._hyper_keys}, "params": views}

    def _cache(self) -> None:
        """Remember what the NumPy views were built from (checked at every step)."""
        self._flat = [p for g in self.param_groups for p in g["params"]]
        self._keys = [_layout_key(p) for p in self._flat]
        self._bf16 = [p.dtype == torch.bfloat16 for p in self._flat]
        self._sizes = [len(g["params"]) for g in self.param_groups]
        self._index_of = {id(p): i for i, p in enumerate(self._flat)}
        self._tensors, self._tensors_version = {}, None  # torch views of state arrays (rebuilt on demand)

    def _in_sync(self) -> bool:
        groups = self.param_groups
        if self._fo is None or len(groups) != len(self._sizes):
            return False
        flat, keys, k = self._flat, self._keys, 0
        for group, size in zip(groups, self._sizes):
            params = group["params"]
            if len(params) != size:
                return False
            for p in params:
                if p is not flat[k] or _layout_key(p) != keys[k]:
                    return False
                k += 1
        return True

    def _sync_structure(self) -> None:
        if not self._in_sync():
            self._rebuild()

    def _rebuild(self) -> None:
        """A new fastopt optimizer over fresh views of the current param groups,
        each parameter keeping its state (converted when its dtype changed).
        Everything is checked first: on an error nothing has changed."""
        views = self._checked_views()
        flat = [p for g in self.param_groups for p in g["params"]]
        old = self._fo
        if old is None:
            kwargs = self._arguments
        else:
            kwargs = {**self._arguments, **{k: getattr(old, k) for k in _STEP_OPTIONS}}
        groups = [self._fastopt_group(g, row) for g, row in zip(self.param_groups, views)]
        new = type(self)._fastopt_class(groups, **kwargs)
        carried = {}
        if old is not None:
            flat_views = [v for row in views for v in row]
            for i, p in enumerate(flat):
                j = self._index_of.get(id(p))
                if j is None or self._flat[j] is not p or j not in old.state:
                    continue
                entry = old.state[j].copy()
                if self._keys[j] != _layout_key(p):  # new storage: convert or refuse the state
                    if p.dtype not in _NARROW:
                        for key in _MASTER_KEYS:
                            entry.pop(key, None)
                    try:
                        entry = new._load_param_state(i, flat_views[i], entry)
                    except (TypeError, ValueError) as e:
                        raise ValueError(f"{self._where(*self._position(i), p, i)} changed (its .data was replaced) "
                                         f"and its optimizer state no longer fits it: {e}. Drop the state first "
                                         "(del opt.state[p]) to start it afresh") from None
                carried[i] = entry
            new.last_stats = old.last_stats
        for i, entry in carried.items():
            new.state[i] = entry
        self._fo = new
        self._cache()

    def _position(self, flat_index: int) -> tuple[int, int]:
        k = flat_index
        for n, group in enumerate(self.param_groups):
            if k < len(group["params"]):
                return n, k
            k -= len(group["params"])
        raise IndexError(flat_index)

    def _index(self, param) -> int:
        """The index of a parameter tensor in param_groups order (fastopt's state key)."""
        # The cached order is fastopt's until the next rebuild, even if
        # param_groups changed since: no O(n) check per state access.
        i = self._index_of.get(id(param))
        if i is None or self._flat[i] is not param:
            self._sync_structure()
            i = self._index_of.get(id(param))
            if i is None:
                raise KeyError("this tensor is not a parameter of the optimizer")
        return i

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` (a group may set any hyperparameter and
        ``rounding``, ``master_weights``, ``seed``); the new parameters are
        checked, and the group is not added if anything is wrong."""
        incremental = self._in_sync()
        n = len(self.param_groups)
        super().add_param_group(param_group)
        try:
            if incremental:
                self._checked_views()  # every parameter, for the mixed-devices message
                group = self.param_groups[n]
                self._fo.add_param_group(self._fastopt_group(group, [_as_numpy(p) for p in group["params"]]))
                self._cache()
            else:
                self._rebuild()
        except BaseException:
            del self.param_groups[n:]
            raise

    # ---------------------------------------------------------------- the step
    def _fast_grads(self) -> list | None:
        """NumPy views of the gradients if the cached parameter views are still
        valid and no gradient needs attention; else None (the checked path)."""
        if not self._in_sync():
            return None
        grads = []
        append = grads.append
        try:
            for p, bf16 in zip(self._flat, self._bf16):
                g = p.grad
                if g is None:
                    append(None)
                elif bf16 and g.dtype == torch.bfloat16:
                    append(g.view(torch.int16).numpy().view(_BFLOAT16))
                else:
                    append(g.numpy())
        except (TypeError, RuntimeError, ValueError):  # sparse, meta, requires_grad, unconvertible dtype
            return None
        return grads

    def _checked_grads(self) -> tuple[list, bool]:
        """The gradients after checking each against its parameter (clear
        errors, nothing written); non-contiguous ones are copied. Returns
        (grads, whether any was copied)."""
        self._sync_structure()
        grads, copied = [], False
        for k, p in enumerate(self._flat):
            g = p.grad
            if g is None:
                grads.append(None)
                continue
            where = self._where(*self._position(k), p, k)
            if g.layout != torch.strided:
                raise TypeError(f"{where} has a sparse gradient ({g.layout}); fastopt.torch needs dense gradients")
            if g.device != p.device:
                raise TypeError(f"{where} has its gradient on device '{g.device}'; it must be on the CPU")
            if g.shape != p.shape:
                raise ValueError(f"{where} has a gradient of shape {tuple(g.shape)}; it must have the parameter's "
                                 "shape")
            allowed = (p.dtype, torch.float32) if p.dtype in _NARROW else (p.dtype,)
            if g.dtype not in allowed:
                raise TypeError(f"{where} has a {g.dtype} gradient; expected "
                                f"{' or '.join(str(d) for d in allowed)}")
            if not g.is_contiguous():
                g, copied = g.contiguous(), True
            grads.append(_as_numpy(g))
        return grads, copied

    def _sync_hyperparameters(self) -> None:
        """Each step reads the torch groups' current values (schedulers write them there)."""
        keys = self._hyper_keys
        for n, (group, fo_group) in enumerate(zip(self.param_groups, self._fo.param_groups)):
            for key in keys:
                try:
                    value = group[key]
                except KeyError:
                    raise KeyError(f"param_groups[{n}] has no {key!r}") from None
                if fo_group[key] is not value:
                    fo_group[key] = _plain(value)

    def step(self, closure=None, *, stats: bool = False):
        """One step over every parameter whose ``.grad`` is not None, in place.

        Args:
            closure: re-evaluates the model and returns the loss (run under
                ``torch.enable_grad()``); needed by Rprop's ``irprop+`` variant.
            stats: keep the step's :class:`fastopt.StepStats` in :attr:`last_stats`.

        Returns the closure's loss (None without a closure).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = self._fast_grads()
        if grads is None:
            grads, _ = self._checked_grads()
        self._sync_hyperparameters()
        value = _loss_value(loss)
        try:
            self._fo.step(grads, loss=value, stats=stats)
        except NonFiniteGradientError:
            raise
        except (TypeError, ValueError):
            grads, copied = self._checked_grads()  # a clear error if a gradient is at fault
            if not copied:
                raise
        else:
            return loss
        self._fo.step(grads, loss=value, stats=stats)
        return loss

    # ----------------------------------------------------------------- state
    def _to_torch(self, key, value):
        """A fastopt state value in torch's form: arrays shared, scalars as 0-d tensors."""
        if isinstance(value, np.ndarray):
            version = (id(self._fo), self._fo.state.version)
            if version != self._tensors_version:  # state arrays replaced: forget the old tensors
                self._tensors, self._tensors_version = {}, version
            hit = self._tensors.get(id(value))
            if hit is None or hit[0] is not value:
                hit = (value, torch.from_numpy(value))
                self._tensors[id(value)] = hit
            return hit[1]
        if key == "step":
            return torch.tensor(float(value), dtype=_scalar_dtype())
        if key in _DOUBLE_STATE and value is not None:
            return torch.tensor(float(value), dtype=torch.float64)
        return value

    def _from_torch(self, i: int, saved: dict) -> dict:
        """One parameter's state from torch's form into fastopt's, checked (keys,
        shapes, dtypes) and copied: float32 for 16-bit parameters."""
        arrays = set(self._roles) | set(_MASTER_KEYS) | {absmax_key(role) for role in self._roles}
        out = {}
        for key, value in saved.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
                if value.layout != torch.strided:
                    value = value.to_dense()
                value = value.cpu()
                if key in arrays or value.numel() != 1:  # (an unknown key is fastopt's to reject)
                    value = (value.float() if value.dtype in _NARROW else value).numpy()
                else:
                    value = value.item()
            elif value is None and key in arrays:  # torch's SGD kept None buffers once
                continue
            out[key] = value
        if issubclass(self._fastopt_class, _optim.SGD) and "momentum_buffer" in out and not out.get("step"):
            out["step"] = 1  # torch keeps no step: continue the buffer (step 0 would restart it)
        return self._fo._load_param_state(i, self._fo.params[i], out)

    def _torch_state(self) -> dict[int, dict]:
        return {i: {k: self._to_torch(k, v) for k, v in entry.items()} for i, entry in self._fo.state.items()}

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {index: {key: tensor}}, "param_groups":
        [{..., "params": [indices]}]}``. State arrays share memory with the
        optimizer (as torch's do); state_dict hooks run as in torch."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        self._sync_structure()
        groups, start = [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(packed)
        state_dict = {"state": self._torch_state(), "param_groups": groups}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of the torch.optim class of the
        same name. Everything is checked before anything changes; tensors are
        copied (float32 state under 16-bit parameters). Hooks run as in torch."""
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self._sync_structure()
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for k, (group, saved) in enumerate(zip(groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict's parameter group {k} has {len(saved['params'])} parameters, "
                                 f"the optimizer's has {len(group['params'])}")
        position = {saved_id: i for i, saved_id in enumerate(chain.from_iterable(g["params"] for g in saved_groups))}
        state = {}
        for saved_id, entry in state_dict["state"].items():
            if saved_id not in position:
                raise ValueError(f"loaded state dict has state for {saved_id!r}, which none of its parameter "
                                 "groups lists")
            i = position[saved_id]
            state[i] = self._from_torch(i, dict(entry))
        fo_groups = [{**{k: _plain(v) for k, v in saved.items() if k in self._hyper_keys},
                      "params": list(range(len(saved["params"])))} for saved in saved_groups]
        self._fo.load_state_dict({"state": state, "param_groups": fo_groups})
        for group, saved in zip(groups, saved_groups):
            updated = {**group, **{k: v for k, v in saved.items()
                                   if k not in _OWN_ON_LOAD and k not in _TORCH_SWITCHES}}
            updated["params"] = group["params"]
            group.clear()
            group.update(updated)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


# ----------------------------------------------------------------- generation
def _signature(fastopt_class: type[_NumpyOptimizer]) -> inspect.Signature:
    """The fastopt class's signature, with its ``**step_options`` spelled out
    and torch's implementation switches appended (keyword-only)."""
    own = [p for name, p in inspect.signature(fastopt_class.__init__).parameters.items()
           if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    base = inspect.signature(_NumpyOptimizer.__init__).parameters
    options = [base[name] for name in _STEP_OPTIONS + _GROUP_OPTIONS]
    switches = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                for name, default in _TORCH_SWITCHES.items()]
    return inspect.Signature(own + options + switches)


def torch_optimizer(fastopt_class: type[_NumpyOptimizer], name: str | None = None) -> type[TorchOptimizer]:
    """A :class:`torch.optim.Optimizer` subclass over CPU tensors for a
    :mod:`fastopt.optim` class (how every class of this module is made)."""
    if not (isinstance(fastopt_class, type) and issubclass(fastopt_class, _NumpyOptimizer)
            and fastopt_class._name):
        raise TypeError(f"expected a fastopt.optim optimizer class, got {fastopt_class!r}")
    name = name or fastopt_class.__name__
    signature = _signature(fastopt_class)

    def __init__(self, params, *args, **kwargs):
        TorchOptimizer.__init__(self, params, *args, **kwargs)

    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = signature.replace(parameters=[self_parameter, *signature.parameters.values()])
    __init__.__qualname__ = f"{name}.__init__"
    doc = (f"{name} over CPU tensors: :class:`fastopt.optim.{fastopt_class.__name__}` as a "
           ":class:`torch.optim.Optimizer` (see :mod:`fastopt.torch` for what is zero-copy and what differs "
           "from torch.optim).\n\n"
           f"    Arguments and defaults are fastopt.optim.{fastopt_class.__name__}'s, plus the keyword options "
           "max_grad_norm, grad_clip_value, norm_type, nonfinite (whole optimizer) and rounding, master_weights, "
           "seed, state_bits, min_8bit_size (per group), and torch's foreach/fused (ignored) and "
           "capturable/differentiable (must be False).\n\n"
           "    " + (fastopt_class.__doc__ or ""))
    return type(name, (TorchOptimizer,), {
        "__init__": __init__, "__doc__": doc, "__module__": __name__, "__qualname__": name,
        "_fastopt_class": fastopt_class, "_signature": signature,
    })


SGD = torch_optimizer(_optim.SGD)
Adagrad = torch_optimizer(_optim.Adagrad)
RMSprop = torch_optimizer(_optim.RMSprop)
Adam = torch_optimizer(_optim.Adam)
AdamW = torch_optimizer(_optim.AdamW)
Rprop = torch_optimizer(_optim.Rprop)
Quickprop = torch_optimizer(_optim.Quickprop)
Adadelta = torch_optimizer(_optim.Adadelta)
Adamax = torch_optimizer(_optim.Adamax)
NAdam = torch_optimizer(_optim.NAdam)
RAdam = torch_optimizer(_optim.RAdam)
ASGD = torch_optimizer(_optim.ASGD)
Adafactor = torch_optimizer(_optim.Adafactor)
Lion = torch_optimizer(_optim.Lion)
LAMB = torch_optimizer(_optim.LAMB)
