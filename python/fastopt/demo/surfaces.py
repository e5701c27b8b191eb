"""Optimizer trajectories on two 2-D test functions.

* An ill-conditioned quadratic :math:`f(x) = \\tfrac12 x^\\top H x` whose
  Hessian has eigenvalues 1 and 25 along axes rotated by 30 degrees (so
  per-coordinate methods get no free help from the axes). Plain gradient
  descent with a step near its stability limit ``2/25`` zig-zags across the
  valley; momentum and the adaptive methods do not.
* Rosenbrock's function :math:`(1-x)^2 + 100(y-x^2)^2` from the classic start
  (-1.2, 1): a curved, nearly flat valley to the minimum at (1, 1).

Each optimizer runs a fixed number of iterations on the same start; L-BFGS is
added when this fastopt has it (``fastopt.minimize`` or
``fastopt.optim.LBFGS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastopt

from .. import optim


@dataclass(frozen=True)
class Surface:
    name: str
    f: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    f_grid: Callable[[np.ndarray, np.ndarray], np.ndarray]   # f on coordinate grids, for contours
    start: tuple[float, float]
    minimum: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    iterations: int
    tol: float                      # "reached" = f - f_min below this
    log_levels: bool = False


def _rotation(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s], [s, c]])


_Q = _rotation(30.0)
_H = _Q @ np.diag([1.0, 25.0]) @ _Q.T

QUADRATIC = Surface(
    "ill-conditioned quadratic", lambda x: float(0.5 * x @ _H @ x), lambda x: _H @ x,
    lambda x, y: 0.5 * (_H[0, 0] * x * x + 2 * _H[0, 1] * x * y + _H[1, 1] * y * y),
    start=(-4.0, -1.0), minimum=(0.0, 0.0), xlim=(-4.5, 1.5), ylim=(-2.9, 1.0),
    iterations=100, tol=1e-6)


def _rosenbrock_grid(x, y):
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock(x: np.ndarray) -> float:
    return float(_rosenbrock_grid(x[0], x[1]))


def _rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


ROSENBROCK = Surface("Rosenbrock function", _rosenbrock, _rosenbrock_grad, _rosenbrock_grid,
                     start=(-1.2, 1.0), minimum=(1.0, 1.0),
                     xlim=(-1.5, 1.5), ylim=(-0.3, 1.5), iterations=2000, tol=1e-6, log_levels=True)


@dataclass
class Trajectory:
    label: str
    path: np.ndarray                  # (iterations + 1, 2)
    values: np.ndarray                # f along the path
    reached: int | None            # first iteration with f - f_min < tol
    note: str = ""
    evaluations: int | None = None  # function evaluations, where they differ from iterations

    @property
    def final(self) -> float:
        return float(self.values[-1])


@dataclass(frozen=True)
class Walker:
    label: str
    make: Callable[[list[np.ndarray]], optim.Optimizer]
    uses_loss: bool = field(default=False)


def walkers(surface: Surface) -> list[Walker]:
    """The optimizers drawn on ``surface`` with learning rates that suit it."""
    if surface is QUADRATIC:
        lr = dict(gd=0.075, momentum=0.01, rmsprop=0.1, adam=0.3, rprop=0.1, quickprop=0.03)
    else:
        lr = dict(gd=1.5e-3, momentum=4e-4, rmsprop=3e-3, adam=0.05, rprop=0.01, quickprop=1e-3)
    return [
        Walker("gradient descent", lambda p: optim.SGD(p, lr=lr["gd"])),
        Walker("momentum 0.9", lambda p: optim.SGD(p, lr=lr["momentum"], momentum=0.9)),
        Walker("Nesterov 0.9",
               lambda p: optim.SGD(p, lr=lr["momentum"], momentum=0.9, nesterov=True)),
        Walker("RMSprop", lambda p: optim.RMSprop(p, lr=lr["rmsprop"])),
        Walker("Adam", lambda p: optim.Adam(p, lr=lr["adam"])),
        Walker("iRprop+", lambda p: optim.Rprop(p, lr=lr["rprop"], variant="irprop+"),
               uses_loss=True),
        Walker("Quickprop", lambda p: optim.Quickprop(p, lr=lr["quickprop"], decay=0.0)),
    ]


def _reached(values: np.ndarray, surface: Surface) -> int | None:
    f_min = surface.f(np.array(surface.minimum))
    hits = np.nonzero(values - f_min < surface.tol)[0]
    return int(hits[0]) if hits.size else None


def walk(surface: Surface, walker: Walker) -> Trajectory:
    x = np.array(surface.start, dtype=np.float64)
    opt = walker.make([x])
    path = [x.copy()]
    for _ in range(surface.iterations):
        loss = surface.f(x)
        opt.step([surface.grad(x)], loss=loss if walker.uses_loss else None)
        path.append(x.copy())
        if not np.all(np.isfinite(x)):
            break
    path = np.array(path)
    values = np.array([surface.f(p) for p in path])
    return Trajectory(walker.label, path, values, _reached(values, surface))


def lbfgs(surface: Surface) -> Trajectory | None:
    """L-BFGS's iterates, if this fastopt has an L-BFGS; None otherwise. Its
    API was being written alongside this demo: unexpected signatures are
    reported in the trajectory's note rather than raised."""
    x0 = np.array(surface.start, dtype=np.float64)
    path = [x0.copy()]
    calls = {"n": 0}

    def counted(x):
        calls["n"] += 1
        x = np.asarray(x)
        return surface.f(x), surface.grad(x)

    def record(*args, **kwargs):
        current = args[0] if args else kwargs.get("intermediate_result", kwargs.get("xk"))
        path.append(np.array(getattr(current, "x", current), dtype=np.float64))

    try:
        if hasattr(fastopt, "minimize"):
            fastopt.minimize(counted, x0.copy(), jac=True, callback=record)
        elif hasattr(fastopt.optim, "LBFGS"):
            x = x0.copy()
            opt = fastopt.optim.LBFGS([x])
            for _ in range(surface.iterations):
                before = x.copy()
                opt.step(lambda: (lambda fg: (fg[0], [fg[1]]))(counted(x)))
                path.append(x.copy())
                if np.array_equal(before, x):
                    break
        else:
            return None
    except Exception as error:  # an API this demo does not know yet: say so, do not crash
        return Trajectory("L-BFGS", np.array([x0]), np.array([surface.f(x0)]), None,
                          note=f"L-BFGS not drawn: {type(error).__name__}: {error}")
    path = np.array(path)
    values = np.array([surface.f(p) for p in path])
    return Trajectory("L-BFGS", path, values, _reached(values, surface), evaluations=calls["n"])


def trajectories(surface: Surface) -> list[Trajectory]:
    runs = [walk(surface, w) for w in walkers(surface)]
    extra = lbfgs(surface)
    return runs + ([extra] if extra is not None else [])
