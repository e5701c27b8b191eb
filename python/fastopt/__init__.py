"""fastopt: fused, in-place optimizer steps for NumPy arrays, in C++.

* :mod:`fastopt.functional` -- stateless in-place kernels (``adam_``, ``sgd_``, ...)
* :mod:`fastopt.optim` -- torch.optim-style classes (``Adam``, ``SGD``, ``Rprop``, ...)
* :mod:`fastopt.reference` -- the same rules in plain NumPy (test oracle, baseline)
* :mod:`fastopt.schedules` -- learning-rate schedules (``StepLR``, ``CosineAnnealingLR``, ...)
* :func:`fastopt.save` / :func:`fastopt.load` -- atomic, pickle-free ``.npz`` checkpoints
* :func:`fastopt.minimize` / :func:`fastopt.lbfgs` -- L-BFGS in C++ (``fastopt.lbfgs_minimize`` for SciPy);
  :func:`fastopt.lbfgsb` -- box bounds (L-BFGS-B); :func:`fastopt.owlqn` -- L1 (OWL-QN);
  :func:`fastopt.bfgs` -- dense BFGS for small problems
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import _core, functional, optim, reference, schedules
from .checkpoint import load, save
from .clip import NonFiniteGradientError, clip_grad_norm_, clip_grad_value_, global_grad_norm
from .flat import FlatBuffer
from .functional import Rounding, StepStats
from .lbfgs import OptimizeResult, bfgs, lbfgs, lbfgs_minimize, lbfgsb, minimize, owlqn
from .optim import (
    ASGD,
    LAMB,
    LBFGS,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    NAdam,
    Optimizer,
    Quickprop,
    RAdam,
    RMSprop,
    Rprop,
)

try:
    __version__ = _version("fastopt")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "functional", "optim", "reference", "schedules", "save", "load", "FlatBuffer", "show_runtime",
    "clip_grad_norm_", "clip_grad_value_", "global_grad_norm", "NonFiniteGradientError", "StepStats",
    "Rounding",
    "runtime_info", "set_num_threads", "get_num_threads", "last_call_threads",
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Rprop", "Quickprop", "Adadelta", "Adamax",
    "NAdam", "RAdam", "ASGD", "Adafactor", "Lion", "LAMB",
    "minimize", "lbfgs", "lbfgsb", "bfgs", "owlqn", "lbfgs_minimize", "OptimizeResult", "LBFGS",
]


def runtime_info() -> dict:
    """What the extension was built with and what it uses now."""
    return {
        "version": __version__,
        "simd_target": _core.kernel_target(),
        "compiled_targets": _core.compiled_targets(),
        "supported_targets": _core.supported_targets(),
        "openmp": bool(_core.OPENMP),
        "num_threads": _core.get_num_threads(),
        "parallel_grain": int(_core.PARALLEL_GRAIN),
    }


def set_num_threads(n: int) -> None:
    """Threads used by every later kernel call that does not pass
    ``num_threads=``; ``0`` restores the OpenMP default (``OMP_NUM_THREADS``,
    or a limit set by threadpoolctl). Results do not depend on it."""
    _core.set_num_threads(n)


def last_call_threads() -> int:
    """Threads the most recent kernel call actually ran on (1 below the
    parallel grain of ``fastopt._core.PARALLEL_GRAIN`` elements per call)."""
    return _core.last_call_threads()


def get_num_threads() -> int:
    """Threads a kernel call without ``num_threads=`` uses now."""
    return _core.get_num_threads()


def show_runtime() -> None:
    """Print :func:`runtime_info` (like ``numpy.show_runtime``)."""
    for key, value in runtime_info().items():
        print(f"{key:>15}: {value}")
