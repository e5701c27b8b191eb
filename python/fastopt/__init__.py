"""fastopt: fused, in-place optimizer steps for NumPy arrays, in C++.

* :mod:`fastopt.functional` -- stateless in-place kernels (``adam_``, ``sgd_``, ...)
* :mod:`fastopt.optim` -- torch.optim-style classes (``Adam``, ``SGD``, ``Rprop``, ...)
* :mod:`fastopt.reference` -- the same rules in plain NumPy (test oracle, baseline)
* :func:`fastopt.minimize` / :func:`fastopt.lbfgs` -- L-BFGS in C++ (``fastopt.lbfgs_minimize`` for SciPy)
"""

from importlib.metadata import PackageNotFoundError, version as _version

from . import _core, functional, optim, reference
from .lbfgs import OptimizeResult, lbfgs, lbfgs_minimize, minimize
from .optim import LBFGS, SGD, Adagrad, Adam, AdamW, Optimizer, Quickprop, RMSprop, Rprop

try:
    __version__ = _version("fastopt")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "functional", "optim", "reference", "show_runtime", "runtime_info",
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Rprop", "Quickprop",
    "minimize", "lbfgs", "lbfgs_minimize", "OptimizeResult", "LBFGS",
]


def runtime_info() -> dict:
    """What the extension was built with and what it uses now."""
    return {
        "version": __version__,
        "kernel_target": _core.kernel_target(),
        "openmp": bool(_core.OPENMP),
        "max_threads": _core.max_threads(),
        "parallel_grain": int(_core.PARALLEL_GRAIN),
    }


def show_runtime() -> None:
    """Print :func:`runtime_info` (like ``numpy.show_runtime``)."""
    for key, value in runtime_info().items():
        print(f"{key:>15}: {value}")
