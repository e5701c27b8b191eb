"""Gradient clipping, as in ``torch.nn.utils``.

The global norm is computed in C++ in one read-only pass over all the
gradients, accumulated in double with a fixed-order reduction: bitwise the
same for any thread count. The optimizers can also clip inside their step
(``max_grad_norm=``, ``grad_clip_value=``), without writing the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np

from . import _core

__all__ = ["clip_grad_norm_", "clip_grad_value_", "global_grad_norm", "NonFiniteGradientError"]

Arrays = Union[np.ndarray, Sequence[np.ndarray]]


class NonFiniteGradientError(ValueError):
    """A gradient holds NaN or Inf (raised by ``error_if_nonfinite`` and by
    optimizers created with ``nonfinite="raise"``)."""


def _norm_type(norm_type) -> float:
    value = float(norm_type)
    if value not in (1.0, 2.0, math.inf):
        raise ValueError(f"norm_type must be 1, 2 or inf, got {norm_type!r}")
    return value


def global_grad_norm(grads: Arrays, norm_type: float = 2.0) -> tuple[float, int]:
    """``(norm, nonfinite_count)`` of all gradients taken as one vector.

    Arrays of several dtypes are allowed (one C++ pass per dtype); the norm is
    accumulated in double whatever the arrays' dtype. float16/bfloat16
    gradients are widened to float32 first (exactly: the same norm).
    """
    norm_type = _norm_type(norm_type)
    arrays = [grads] if isinstance(grads, np.ndarray) else [g for g in grads if g is not None]
    by_dtype = {}
    for g in arrays:
        key = g.dtype if isinstance(g, np.ndarray) else None
        by_dtype.setdefault(key, []).append(g)
    norms, nonfinite = [], 0
    for group in by_dtype.values():
        if group and isinstance(group[0], np.ndarray) and group[0].dtype.itemsize == 2:
            group = [g.astype(np.float32) for g in group]
        norm, bad = _core.grad_norm(group, norm_type)
        norms.append(norm)
        nonfinite += bad
    if not norms:
        return 0.0, 0
    if norm_type == 2.0:
        total = math.sqrt(math.fsum(n * n for n in norms)) if len(norms) > 1 else norms[0]
    elif norm_type == 1.0:
        total = math.fsum(norms)
    else:
        total = max(norms)
    return total, nonfinite


def clip_factor(total_norm: float, max_norm: float) -> float:
    """torch's rule: ``min(1, max_norm / (total_norm + 1e-6))``."""
    return min(1.0, max_norm / (total_norm + 1e-6))


def clip_grad_norm_(grads: Arrays, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients in place so that their global norm is at most
    ``max_norm``; returns the norm before clipping (``torch.nn.utils.clip_grad_norm_``).

    The factor is ``min(1, max_norm / (norm + 1e-6))``, applied to every
    array. With ``error_if_nonfinite`` a NaN/Inf norm raises
    :class:`NonFiniteGradientError` before anything is changed.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    total, nonfinite = global_grad_norm(grads, norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise NonFiniteGradientError(f"the total norm of order {norm_type} of the gradients is "
                                         f"{total} ({nonfinite} non-finite elements)")
    factor = clip_factor(total, max_norm)
    for g in _writable(grads, "grads"):
        np.multiply(g, factor, out=g)
    return total


def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clip every gradient element to ``[-clip_value, clip_value]`` in place."""
    if not clip_value > 0:
        raise ValueError(f"clip_value must be > 0, got {clip_value!r}")
    for g in _writable(grads, "grads"):
        np.clip(g, -clip_value, clip_value, out=g)


def _writable(arrays: Arrays, name: str) -> list[np.ndarray]:
    arrays = [arrays] if isinstance(arrays, np.ndarray) else [a for a in arrays if a is not None]
    for k, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}[{k}] must be a numpy.ndarray, got {type(a).__name__}")
        if not a.flags.writeable:
            raise ValueError(f"{name}[{k}] is read-only but is clipped in place")
    return arrays
