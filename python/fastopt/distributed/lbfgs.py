"""Distributed L-BFGS: each rank holds a contiguous slice of x, of the
gradient and of every stored pair (s, y).

The compact form (csrc/lbfgs/compact.hpp) needs the vectors only in dot
products and in elementwise updates. A pass over the pairs computes every
dot product's partial sum per block of 4096 elements (4m + 8 numbers per
block); one Allgather of the blocks' partials, added in global block order on
every rank, gives all ranks the same totals, and the rest of an iteration
(the m x m algebra, the line search, the stopping tests) is then the same on
every rank. That is 0.1% of the vector data per pass (for m = 10) and the
only communication besides the objective's. Memory per rank is 1/p of the
single-process solver's.

When every rank's slice but the last is a whole number of blocks (a multiple
of ``fastopt._core.LBFGS_BLOCK`` elements), the blocks and their order are
the single-process run's: the iterates are bitwise the same (given an
objective that computes the same numbers). Otherwise they differ only by the
order in which the dot products are added.

Called through ``fastopt.minimize(fun, x0_local, comm=comm)`` (or
``fastopt.lbfgs(..., comm=comm)``): ``fun`` gets this rank's slice of x and
returns the global objective (the same number on every rank) and this
rank's slice of the gradient.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import _core
from ._collectives import agree, agree_on, split_evenly


def across_ranks(comm, function, inplace: bool, hook, x: np.ndarray, opts: dict):
    """(objective, iteration hook, cross-rank combine, traffic) for the C++
    driver, wrapping this rank's ``function`` and ``hook`` so that every rank
    takes the same decisions and an error on one rank raises on all.
    ``traffic`` counts the solver's own collectives as they run (calls, bytes
    this rank sent and received, seconds inside them). Collective."""
    agree_on(comm, (x.dtype.str, hook is None, sorted(opts.items())),
             "the dtype of x0, the callback's presence or the options")
    n = x.size
    traffic = {"calls": 0, "sent": 0, "received": 0, "seconds": 0.0}

    def allgather(mine: np.ndarray, into: np.ndarray, counts=None) -> None:
        start = time.perf_counter()
        if counts is None:
            comm.Allgather(mine, into)
        else:
            comm.Allgatherv(mine, [into, counts])
        traffic["seconds"] += time.perf_counter() - start
        traffic["calls"] += 1
        traffic["sent"] += mine.nbytes * (comm.size - 1)
        traffic["received"] += into.nbytes - mine.nbytes

    def checked(*xg):
        error, result, f = None, None, math.nan
        try:
            result = function(*xg)
            f = _objective_value(result if inplace else _pair(result)[0])
            if not inplace:
                _check_gradient(_pair(result)[1], n, x.dtype)
        except Exception as raised:  # noqa: BLE001 - agreed on below, then raised on every rank
            error = raised
        values = np.empty((comm.size, 2))
        allgather(np.array([f, error is not None], dtype=np.float64), values)
        if values[:, 1].any():
            agree(comm, error)
        if not all(_same(v, values[0, 0]) for v in values[:, 0]):
            raise ValueError("fun returned different objective values on different ranks "
                             f"({values[:, 0].tolist()}); it must return the global objective on every rank")
        return result

    def on_iteration(x_local, f, nit):
        error, stop = None, False
        try:
            stop = bool(hook(x_local, f, nit))
        except Exception as raised:  # noqa: BLE001
            error = raised
        flags = np.empty((comm.size, 2))
        allgather(np.array([stop, error is not None], dtype=np.float64), flags)
        if flags[:, 1].any():
            agree(comm, error)
        return bool(flags[:, 0].any())

    blocks = np.array(comm.allgather(-(-n // _core.LBFGS_BLOCK)))  # each rank's block count

    def combine(rows: np.ndarray, out: np.ndarray) -> None:
        width = rows.shape[1]
        table = np.empty((int(blocks.sum()), width))
        allgather(rows, table, blocks * width)
        out[:width] = np.cumsum(table, axis=0)[-1]  # the blocks in global order, added one after another
        out[width:] = np.fmax.reduce(table, axis=0, initial=0.0)  # a NaN is skipped, as in C++

    return checked, (None if hook is None else on_iteration), combine, traffic


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _pair(result):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError(f"with jac=True, fun must return a pair (f, g), got {type(result).__name__}")
    return result


def _objective_value(value) -> float:
    if isinstance(value, np.ndarray) and value.ndim != 0:
        raise TypeError(f"fun must return a scalar objective value, got an array of shape {value.shape}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"fun must return a real number as the objective value, got {type(value).__name__}") from None


def _check_gradient(g, n: int, dtype) -> None:
    g = np.asarray(g)
    if g.dtype.kind not in "fiu":
        raise TypeError(f"fun returned a gradient of dtype {g.dtype}; expected an array of floats")
    if g.shape != (n,):
        raise ValueError(f"fun returned a gradient of shape {g.shape} but this rank's x has shape ({n},)")


def slice_of(n: int, comm) -> slice:
    """This rank's slice of an n-vector, split so that a distributed L-BFGS run
    is bitwise the single-process run: contiguous, in rank order, every slice
    but the last a whole number of blocks of ``fastopt._core.LBFGS_BLOCK``
    elements (the last takes the rest: at most p blocks more). Below one block
    per rank the split is even instead. Not collective."""
    p = comm.size
    if n < p:
        raise ValueError(f"n={n} is smaller than the number of ranks ({p}): every rank needs a variable")
    size = (n // p) // _core.LBFGS_BLOCK * _core.LBFGS_BLOCK
    bounds = [k * size for k in range(p)] + [n] if size else split_evenly(n, p)
    return slice(bounds[comm.rank], bounds[comm.rank + 1])
