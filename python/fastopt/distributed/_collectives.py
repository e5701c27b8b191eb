"""The collective operations the distributed optimizers share.

Every reduction here adds the ranks' contributions in rank order, on every
rank, from an Allgather (or an all-to-all): the result is the same bits on
every rank and for any algorithm the MPI library picks, which MPI's own
Reduce_scatter/Allreduce do not promise (docs/algorithms.md, section 5.1).

Every call is collective: all ranks of ``comm`` must make it, in the same
order. Errors found on one rank are agreed on before the next collective
(:func:`agree`), so that all ranks raise instead of some of them waiting
forever in a collective the others never reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ERROR_TYPES = {"TypeError": TypeError, "ValueError": ValueError, "OSError": OSError}


def mpi():
    """The ``mpi4py.MPI`` module, imported on first use (the ``fastopt[mpi]`` extra)."""
    try:
        from mpi4py import MPI
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("fastopt.distributed needs mpi4py and an MPI library: "
                          "pip install 'fastopt[mpi]' (mpi4py and mpich)") from error
    return MPI


def default_comm(comm):
    """``comm``, or ``MPI.COMM_WORLD`` when it is None."""
    return mpi().COMM_WORLD if comm is None else comm


def agree(comm, error: BaseException | None) -> None:
    """Collective. Raises on every rank if ``error`` is set on any: the lowest
    failing rank's TypeError/ValueError/OSError (its type kept, the rank
    named), or a RuntimeError for other exceptions. Costs one small allgather."""
    reports = comm.allgather(None if error is None else (type(error).__name__, str(error)))
    for rank, report in enumerate(reports):
        if report is not None:
            name, message = report
            if error is not None and rank == comm.rank:
                raise error
            raise _ERROR_TYPES.get(name, RuntimeError)(f"rank {rank}: {message}")


def agree_on(comm, value, what: str) -> None:
    """Collective. Raises ValueError on every rank unless ``value`` (a picklable
    description) is the same on all ranks."""
    values = comm.allgather(value)
    for rank, other in enumerate(values):
        if other != values[0]:
            raise ValueError(f"{what} differs between ranks: rank 0 has {values[0]!r}, rank {rank} has {other!r}")


def rank_ordered_sums(comm, local: np.ndarray) -> np.ndarray:
    """Collective. The rows of every rank's float64 vector ``local``, added in rank order."""
    rows = np.empty((comm.size, local.size), dtype=np.float64)
    comm.Allgather(np.ascontiguousarray(local, dtype=np.float64), rows)
    return add_rows_in_order(rows)


def add_rows_in_order(rows: np.ndarray) -> np.ndarray:
    """rows[0] + rows[1] + ... + rows[-1], left to right (never pairwise)."""
    total = rows[0].copy()
    for row in rows[1:]:
        total += row
    return total


def split_evenly(n: int, parts: int) -> list[int]:
    """Bounds of ``parts`` contiguous ranges covering [0, n) whose sizes differ by at most one."""
    return [k * n // parts for k in range(parts + 1)]


def overlaps(bounds: Sequence[int], start: int, stop: int):
    """(index, lo, hi) for every range [bounds[i], bounds[i+1]) meeting [start, stop)."""
    for i in range(len(bounds) - 1):
        lo, hi = max(start, bounds[i]), min(stop, bounds[i + 1])
        if lo < hi:
            yield i, lo, hi


def agreed(comm, compute):
    """Collective. ``compute()``'s result, or, when it raises a TypeError,
    ValueError or OSError on any rank, that error on every rank (:func:`agree`)."""
    result, error = None, None
    try:
        result = compute()
    except (TypeError, ValueError, OSError) as raised:
        error = raised
    agree(comm, error)
    return result
