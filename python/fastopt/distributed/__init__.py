"""Optimizers over MPI ranks (the ``fastopt[mpi]`` extra: mpi4py and an MPI library).

* :class:`ZeroRedundancyOptimizer` -- data-parallel training with the
  optimizer state sharded over the ranks (ZeRO stage 1), bitwise the
  single-process step on the reduced gradient.
* ``fastopt.minimize(fun, x0_local, comm=comm)`` -- L-BFGS with x and the
  stored pairs split over the ranks (:mod:`fastopt.distributed.lbfgs`);
  :func:`slice_of` gives each rank the slice that makes it bitwise the
  single-process run.

Run under MPI: ``mpiexec -n 4 python train.py``. mpi4py is imported only
when a communicator is needed (``comm=None`` means ``MPI.COMM_WORLD``).
"""

from .lbfgs import slice_of
from .zero import ZeroRedundancyOptimizer

__all__ = ["ZeroRedundancyOptimizer", "slice_of"]
