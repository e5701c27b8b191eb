"""Checkpoints: an optimizer, its scheduler and the parameters in one ``.npz``.

    fastopt.save("run.npz", opt, sched)          # weights = the optimizer's parameters
    fastopt.load("run.npz", opt, sched)          # in place; the run resumes bitwise

The file is an ordinary NumPy ``.npz`` (a zip of ``.npy`` arrays):

* every array of the state (parameters, optimizer buffers) is stored as
  itself, bit for bit, under a readable name such as
  ``optimizer/state/0/exp_avg`` or ``params/0``;
* everything else (step counts, hyperparameters, scheduler state, ``extra``)
  is one JSON string, the array ``__meta__``, in which each stored array
  appears as ``{"__array__": name}``.

Nothing is pickled, and :func:`load` reads with ``allow_pickle=False``, so a
checkpoint from elsewhere cannot run code.

:func:`save` writes a temporary file in the target's directory, flushes and
fsyncs it, then renames it over the target with ``os.replace`` (atomic on
POSIX and Windows) and fsyncs the directory. A crash or an error at any point
leaves either the old checkpoint or the new one, never a torn file; on an
error the temporary file is removed. (A killed process cannot clean up: a
hidden ``.NAME.*.tmp`` file may remain beside the checkpoint.)

:func:`load` checks everything (file format, optimizer and scheduler classes,
parameter count, shapes and dtypes, state) before it changes anything: on an
error the parameters, the optimizer and the scheduler are as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastopt-checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"
_ARRAY, _TUPLE, _ITEMS = "__array__", "__tuple__", "__items__"


# ------------------------------------------------------------------ encoding
def _encode(value: Any, name: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON-friendly data; its arrays go into ``arrays``."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{name} is an object array, which cannot be stored without pickle")
        key = name
        while key in arrays or key == _META:   # e.g. state keys 0 and "0" in one dict
            key += "'"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{name}/{k}", arrays) for k, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}/{k}", arrays) for k, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{name}/{k}", arrays) for k, v in value.items()}
        # Keys JSON cannot keep (ints: the optimizer's per-parameter state).
        return {_ITEMS: [[_encode(k, name, {}), _encode(v, f"{name}/{k}", arrays)]
                         for k, v in value.items()]}
    raise TypeError(f"{name} is a {type(value).__name__}, which a checkpoint cannot store "
                    "(arrays, numbers, strings, None, lists, tuples and dicts only)")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_ARRAY}:
        if value[_ARRAY] not in arrays:
            raise ValueError(f"the metadata refers to an array {value[_ARRAY]!r} "
                             "the file does not hold")
        return arrays[value[_ARRAY]]
    if set(value) == {_TUPLE}:
        return tuple(_decode(v, arrays) for v in value[_TUPLE])
    if set(value) == {_ITEMS}:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value[_ITEMS]}
    return {k: _decode(v, arrays) for k, v in value.items()}


# -------------------------------------------------------------------- saving
def save(path, optimizer, scheduler=None, params: Sequence[np.ndarray] | None = None, *,
         extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint to ``path`` atomically (see the module docstring).

    ``params``: the arrays whose values to store; default: the optimizer's
    parameters (``optimizer.params``), pass ``()`` to store none. ``scheduler``:
    a :mod:`fastopt.schedules` scheduler or None. ``extra``: a dict of your own
    JSON-friendly values (epoch, metrics, config), returned by :func:`load`.
    """
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
    params = _default_params(optimizer, params)
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "optimizer": {"class": type(optimizer).__name__,
                      "state_dict": _encode(optimizer.state_dict(), "optimizer", arrays)},
        "scheduler": None if scheduler is None else {
            "class": type(scheduler).__name__,
            "state_dict": _encode(scheduler.state_dict(), "scheduler", arrays)},
        "params": [_encode(np.asarray(p), f"params/{k}", arrays) for k, p in enumerate(params)],
        "extra": _encode(extra or {}, "extra", arrays),
    }
    # allow_nan: JSON has no inf/nan, but the state can (ReduceLROnPlateau's
    # best starts at inf); Python's json writes and reads them as Infinity/NaN.
    arrays[_META] = np.array(json.dumps(meta, allow_nan=True))
    _write_atomically(os.fspath(path), arrays)


def _default_params(optimizer, params) -> list[np.ndarray]:
    if params is None:
        return list(getattr(optimizer, "params", ()))
    return [params] if isinstance(params, np.ndarray) else list(params)


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    # Same directory as the target: os.replace is atomic only within one file system.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # 0o666 and O_EXCL: the umask decides the permissions, as for any new file,
    # and an existing file is never reused.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())   # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------- loading
def load(path, optimizer, scheduler=None, params: Sequence[np.ndarray] | None = None
         ) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save`; returns its ``extra`` dict.

    The stored parameter values are copied **into** ``params`` (default: the
    optimizer's parameters) in place; the optimizer's and the scheduler's
    state are restored with their ``load_state_dict``. ``scheduler=None``
    ignores a stored scheduler state; ``params=()`` ignores stored weights.

    Raises ``ValueError`` for an unreadable or corrupt file and for a
    checkpoint that does not fit (other optimizer or scheduler class, other
    parameter count or shapes), ``TypeError`` for a parameter of another
    dtype or type, and ``FileNotFoundError`` for a missing file -- always
    before anything is changed.
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    _check_class(meta["optimizer"], optimizer, "optimizer")
    if scheduler is not None:
        if meta["scheduler"] is None:
            raise ValueError(f"{path} holds no scheduler state, but a "
                             f"{type(scheduler).__name__} was given")
        _check_class(meta["scheduler"], scheduler, "scheduler")

    explicit_params = params is not None
    params = _default_params(optimizer, params)
    saved_params = [_decode(p, arrays) for p in meta["params"]]
    if explicit_params or saved_params:
        _check_params(path, params, saved_params)

    optimizer_state = _decode(meta["optimizer"]["state_dict"], arrays)
    scheduler_state = (None if scheduler is None
                       else _decode(meta["scheduler"]["state_dict"], arrays))
    _restore_states(optimizer, optimizer_state, scheduler, scheduler_state)
    for p, saved in zip(params, saved_params):
        np.copyto(p, saved)
    return _decode(meta["extra"], arrays)


def _read(path: str):
    """The metadata and all arrays, read into memory and checked for form."""
    try:
        # Our own file object: np.load leaves its own open when the zip is corrupt.
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop(_META))) if _META in arrays else None
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        # ValueError: not an npz/npy at all, a pickled object array, or bad JSON.
        raise ValueError(f"{path} is not a readable fastopt checkpoint (corrupt or truncated?): "
                         f"{type(error).__name__}: {error}") from error
    if meta is None:
        raise ValueError(f"{path} is an .npz file but not a fastopt checkpoint (no {_META} array)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastopt checkpoint "
                         f"(its metadata has no format {FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format version {meta.get('version')!r}; "
                         f"this fastopt reads versions up to {FORMAT_VERSION}")
    entry = {"class", "state_dict"}
    if not (isinstance(meta.get("optimizer"), dict) and entry <= set(meta["optimizer"])
            and (meta.get("scheduler") is None
                 or isinstance(meta["scheduler"], dict) and entry <= set(meta["scheduler"]))
            and isinstance(meta.get("params"), list) and isinstance(meta.get("extra"), dict)):
        raise ValueError(f"{path} has malformed checkpoint metadata")
    return meta, arrays


def _check_class(saved: dict[str, Any], obj: Any, what: str) -> None:
    if saved["class"] != type(obj).__name__:
        raise ValueError(f"the checkpoint holds the state of {what} class {saved['class']}, "
                         f"not {type(obj).__name__}")


def _check_params(path: str, params: list[Any], saved: list[np.ndarray]) -> None:
    if len(params) != len(saved):
        raise ValueError(f"{path} holds {len(saved)} parameter arrays but {len(params)} were given")
    for k, (p, s) in enumerate(zip(params, saved)):
        if not isinstance(p, np.ndarray):
            raise TypeError(f"params[{k}] must be a numpy.ndarray (it is updated in place), "
                            f"got {type(p).__name__}")
        if p.shape != s.shape:
            raise ValueError(f"params[{k}] has shape {p.shape} but the checkpoint's "
                             f"has shape {s.shape}")
        if p.dtype != s.dtype:
            raise TypeError(f"params[{k}] has dtype {p.dtype} but the checkpoint's "
                            f"has dtype {s.dtype}")
        if not p.flags.writeable:
            raise ValueError(f"params[{k}] is read-only but is restored in place")


def _restore_states(optimizer, optimizer_state, scheduler, scheduler_state) -> None:
    """Load both states, or neither: on any error, put the old ones back."""
    old_optimizer = optimizer.state_dict()
    old_scheduler = None if scheduler is None else scheduler.state_dict()
    try:
        optimizer.load_state_dict(optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(scheduler_state)
    except Exception:
        optimizer.load_state_dict(old_optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(old_scheduler)
        raise
