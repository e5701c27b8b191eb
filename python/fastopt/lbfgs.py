r"""L-BFGS for smooth unconstrained minimization, with its hot parts in C++.

    >>> import numpy as np, fastopt
    >>> def f(x):                       # Rosenbrock, value and gradient
    ...     a, b = x
    ...     return (1 - a)**2 + 100*(b - a*a)**2, np.array([-2*(1 - a) - 400*a*(b - a*a), 200*(b - a*a)])
    >>> res = fastopt.minimize(f, np.array([-1.2, 1.0]), jac=True)
    >>> res.success, np.allclose(res.x, 1, atol=1e-5)
    (True, True)

The method (Nocedal 1980; Liu & Nocedal 1989): the direction is
:math:`d = -H_k g_k`, with :math:`H_k` the BFGS inverse-Hessian approximation
built from :math:`H^0 = \gamma I`, :math:`\gamma = s^\top y / y^\top y` (newest
pair) and the last ``maxcor`` pairs :math:`s_i = x_{i+1} - x_i`,
:math:`y_i = g_{i+1} - g_i`. A pair with :math:`s^\top y \le \epsilon_{mach} (-g_i^\top s_i)`
fails the curvature condition (L-BFGS-B's scale-free test) and is skipped
(counted in ``nskipped``).
:math:`H_k g` is computed in the compact form of Byrd, Nocedal & Schnabel
(1994), which streams the stored pairs twice per iteration (the two-loop
recursion streams them four times); both are the same matrix. The step
length comes from the Moré–Thuente line search (strong Wolfe conditions,
:math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`), or from backtracking with the Armijo
condition; the first trial step is 1, and :math:`1/\lVert g\rVert_2`
(L-BFGS-B's; ``first_step="l1"``: torch's :math:`\min(1, 1/\lVert g\rVert_1)`)
while the memory is empty (first iteration, or after a restart).

Stops when :math:`\lVert g\rVert_\infty \le` ``gtol``, when
:math:`(f_k - f_{k+1}) / \max(|f_k|, |f_{k+1}|, 1) \le` ``ftol``, after ``maxiter``
iterations or ``maxfun`` evaluations, or when ``callback`` raises
``StopIteration``. Numerical trouble never raises: a NaN/Inf objective makes
the line search step back; a search that fails clears the memory and retries
along :math:`-g` (as L-BFGS-B does), and a second failure returns the last
accepted iterate (the lowest objective value accepted) with ``status = 2``.

Where it differs from SciPy's L-BFGS-B (same option names and defaults):
no bounds; the sufficient-decrease constant is :math:`10^{-4}` (L-BFGS-B uses
:math:`10^{-3}`); L-BFGS-B caps the first step at ``stpmax``; float32 problems stay float32 (dot products are
accumulated in double); the result has ``nskipped`` and ``nrestart``.

:func:`lbfgsb` (``minimize(..., bounds=...)``) is L-BFGS-B: box bounds, SciPy's
algorithm, options and messages (docs/algorithms.md, section 4.3).

:func:`bfgs` (``minimize(method="bfgs")``) is the dense BFGS method for small
problems: the same iteration, line search, stopping rules and result, with an
explicit ``n x n`` inverse Hessian (docs/algorithms.md, section 4.1).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

import numpy as np

from . import _core

__all__ = ["OptimizeResult", "LbfgsInverseHessian", "minimize", "lbfgs", "lbfgsb", "bfgs", "owlqn", "lbfgs_minimize",
           "LINE_SEARCHES"]

LINE_SEARCHES = ("strong_wolfe", "backtracking")

# SciPy's L-BFGS-B option names and defaults, plus this solver's own.
DEFAULT_OPTIONS = dict(maxcor=10, gtol=1e-5, ftol=2.2204460492503131e-09, maxiter=15000, maxfun=15000,
                       maxls=20, line_search="strong_wolfe", first_step="l2", num_threads=0, disp=False)


class OptimizeResult(dict):
    """The result, as ``scipy.optimize.OptimizeResult``: a dict whose keys are
    also attributes. Keys: ``x``, ``fun``, ``jac``, ``nit``, ``nfev``,
    ``njev``, ``status`` (0 converged, 1 iteration/evaluation limit,
    2 numerical trouble or failed line search, 99 stopped by the callback),
    ``success`` (status 0), ``message``, ``nskipped`` (pairs that failed the
    curvature test), ``nrestart`` (times the memory was cleared), ``hess_inv``
    (L-BFGS and L-BFGS-B: an :class:`LbfgsInverseHessian`; BFGS: the matrix)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __dir__(self):
        return list(self.keys())

    def __repr__(self):
        if not self:
            return f"{type(self).__name__}()"
        width = max(map(len, self.keys())) + 1
        return "\n".join(f"{k.rjust(width)}: {v!r}" for k, v in self.items())


class LbfgsInverseHessian:
    r"""The inverse-Hessian approximation of an L-BFGS or L-BFGS-B run, the
    result's ``hess_inv`` (SciPy returns a ``LbfgsInvHessProduct`` there):
    :math:`H` from the stored pairs (rows of ``s`` and ``y``, oldest first) by
    the BFGS inverse update, starting from :math:`H^0 = (s^	op y / y^	op y) I`
    of the newest pair, the matrix the solver used (SciPy's starts from
    :math:`I`). ``H @ v`` and ``matvec(v)`` apply it by the two-loop recursion
    in float64; ``todense()`` forms it (``n x n``)."""

    def __init__(self, s: np.ndarray, y: np.ndarray):
        self.s = np.array(s, dtype=np.float64)
        self.y = np.array(y, dtype=np.float64)
        n = self.s.shape[1] if self.s.ndim == 2 else 0
        self.shape = (n, n)
        self.dtype = np.dtype(np.float64)
        self._rho = 1.0 / np.einsum("ij,ij->i", self.s, self.y) if len(self.s) else np.empty(0)

    def matvec(self, v) -> np.ndarray:
        q = np.array(v, dtype=np.float64).reshape(-1)
        if q.shape != (self.shape[0],):
            raise ValueError(f"hess_inv.matvec takes a vector of length {self.shape[0]}, got shape {np.shape(v)}")
        k = len(self.s)
        alpha = np.empty(k)
        for i in range(k - 1, -1, -1):
            alpha[i] = self._rho[i] * (self.s[i] @ q)
            q -= alpha[i] * self.y[i]
        if k:
            q *= (self.s[-1] @ self.y[-1]) / (self.y[-1] @ self.y[-1])
        for i in range(k):
            q += (alpha[i] - self._rho[i] * (self.y[i] @ q)) * self.s[i]
        return q

    def __matmul__(self, v):
        v = np.asarray(v)
        return self.matvec(v) if v.ndim == 1 else np.column_stack([self.matvec(c) for c in v.T])

    def todense(self) -> np.ndarray:
        return self @ np.eye(self.shape[0])

    def __repr__(self):
        return f"<LbfgsInverseHessian {self.shape[0]}x{self.shape[1]} from {len(self.s)} pairs>"


def _check_x0(x0) -> np.ndarray:
    x = np.asarray(x0)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x0 has dtype {x.dtype}; L-BFGS runs in float32 or float64 "
                        "(convert it, e.g. np.asarray(x0, dtype=float))")
    if x.ndim != 1:
        raise ValueError(f"x0 must be 1-D, got shape {x.shape} (flatten it and reshape inside fun)")
    if x.size == 0:
        raise ValueError("x0 is empty: the problem needs at least one variable")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 has non-finite entries (NaN or Inf)")
    return np.array(x, dtype=x.dtype.newbyteorder("="), order="C", copy=True)


# Dense BFGS takes the same options but maxcor (it keeps all of H).
BFGS_DEFAULT_OPTIONS = {k: v for k, v in DEFAULT_OPTIONS.items() if k != "maxcor"}
# OWL-QN has its own line search and first step, and the L1 term.
# OWL-QN has its own line search and first step, runs its vector work on
# one thread (the objective dominates), and has the L1 term.
OWLQN_DEFAULT_OPTIONS = {**{k: v for k, v in DEFAULT_OPTIONS.items()
                            if k not in ("line_search", "first_step", "num_threads")},
                         "l1": 0.0, "unpenalized": None}


# L-BFGS-B takes SciPy's options: its line search and first step are L-BFGS-B's own.
LBFGSB_DEFAULT_OPTIONS = {k: v for k, v in DEFAULT_OPTIONS.items() if k not in ("line_search", "first_step")}


def _check_options(options: dict, defaults: dict = DEFAULT_OPTIONS, method: str = "L-BFGS") -> dict:
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {method} options {sorted(unknown)}; known: {sorted(defaults)}")
    opts = {**defaults, **options}
    for name in ("maxcor", "maxiter", "maxfun", "maxls", "num_threads"):
        if name not in opts:
            continue
        value = opts[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"option {name} must be an integer, got {type(value).__name__}")
    for name in ("gtol", "ftol"):
        if isinstance(opts[name], bool) or not isinstance(opts[name], (int, float, np.number)):
            raise TypeError(f"option {name} must be a number, got {type(opts[name]).__name__}")
    if opts.get("line_search", LINE_SEARCHES[0]) not in LINE_SEARCHES:
        raise ValueError(f"invalid line_search: {opts['line_search']!r} (expected one of {LINE_SEARCHES})")
    if opts.get("first_step", "l2") not in ("l1", "l2"):
        raise ValueError(f"invalid first_step: {opts['first_step']!r} (expected 'l1' or 'l2')")
    if opts.get("maxcor", 1) < 1:
        raise ValueError(f"invalid maxcor: {opts['maxcor']} (must be >= 1)")
    return opts


def _wants_intermediate_result(callback) -> bool:
    """SciPy's convention: a callback with a parameter named
    ``intermediate_result`` gets the OptimizeResult, any other gets x."""
    try:
        return set(inspect.signature(callback).parameters) == {"intermediate_result"}
    except (TypeError, ValueError):
        return False


def _iteration_hook(callback):
    """The function the C++ driver calls after each iteration: returns True
    to stop (the user's callback raised StopIteration)."""
    if callback is None:
        return None
    new_style = _wants_intermediate_result(callback)

    def hook(x, f, nit):
        try:
            if new_style:
                callback(intermediate_result=OptimizeResult(x=x.copy(), fun=f, nit=nit))
            else:
                callback(x.copy())
        except StopIteration:
            return True
        return False

    return hook


def _objective(fun, jac, args):
    """(python function for the driver, whether it writes the gradient in place)."""
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    if jac == "inplace":
        return (lambda x, g: fun(x, g, *args)) if args else fun, True
    if jac is True:
        return (lambda x: fun(x, *args)) if args else fun, False
    if callable(jac):
        return (lambda x: (fun(x, *args), jac(x, *args))), False
    raise ValueError("L-BFGS needs the gradient: pass jac=True (fun returns (f, g)), jac='inplace' "
                     "(fun(x, g) writes g and returns f) or a callable jac(x) -> g; "
                     f"got jac={jac!r}")


def lbfgs(fun: Callable, x0, *, jac: Any = True, args: tuple = (), callback: Callable | None = None,
          maxcor: int = 10, gtol: float = 1e-5, ftol: float = 2.2204460492503131e-09,
          maxiter: int = 15000, maxfun: int = 15000, maxls: int = 20,
          line_search: str = "strong_wolfe", first_step: str = "l2", num_threads: int = 0,
          disp: bool = False, comm: Any = None) -> OptimizeResult:
    r"""Minimize ``fun`` from ``x0`` with L-BFGS (rule and references in the module docstring).

    Args:
        fun: the objective. With ``jac=True`` (default) ``fun(x, *args)`` returns
            ``(f, g)``; with ``jac="inplace"`` ``fun(x, g, *args)`` writes the
            gradient into the array ``g`` it is handed and returns ``f`` (no
            allocation per call); a callable ``jac`` is called as
            ``jac(x, *args)`` after ``fun(x, *args)`` returns ``f``. The ``x``
            handed to ``fun`` is a read-only view of the solver's buffer:
            copy it to keep it.
        x0: 1-D float32 or float64 array; the computation (and ``res.x``) keep its dtype.
        callback: called after each iteration as ``callback(intermediate_result)``
            (an OptimizeResult with ``x``, ``fun``, ``nit``) if its only
            parameter has that name, else as ``callback(xk)``; raising
            ``StopIteration`` stops the run (``status = 99``).
        maxcor: pairs kept (m, default 10). gtol: stop when
            :math:`\lVert g\rVert_\infty \le` gtol (1e-5). ftol: relative
            reduction test (2.2e-9, SciPy's). maxiter, maxfun: limits (15000).
            maxls: evaluations per line search (20).
        line_search: ``"strong_wolfe"`` (Moré–Thuente, default) or ``"backtracking"`` (Armijo).
        first_step: the first trial step while the memory is empty:
            ``"l2"`` (default, L-BFGS-B's) :math:`1/\lVert g\rVert_2`, or
            ``"l1"`` (torch's, the default of ``optim.LBFGS``)
            :math:`\min(1, 1/\lVert g\rVert_1)`, more cautious on the first iteration.
        num_threads: OpenMP threads for the vector passes (0: default).
        disp: print the final message.
        comm: an MPI communicator (mpi4py) for a distributed run (collective:
            every rank calls with the same options): ``x0`` is this rank's
            contiguous slice of x (at least one element), ``fun`` returns the
            global objective, the same number on every rank, and this rank's
            slice of the gradient; ``res.x`` and ``res.jac`` are this rank's
            slices. Each rank keeps its slice of the stored pairs (memory 1/p);
            the iterates are the single-process ones up to the order of the dot
            products' additions (:mod:`fastopt.distributed.lbfgs`). An error on
            one rank (bad input, ``fun`` raising) raises on every rank.

    Returns:
        :class:`OptimizeResult`. Never raises on numerical trouble (see
        ``status``); raises ``TypeError``/``ValueError`` on bad input, and
        whatever ``fun`` raises.
    """
    def checked():
        return _check_x0(x0), _check_options(dict(
            maxcor=maxcor, gtol=gtol, ftol=ftol, maxiter=maxiter, maxfun=maxfun, maxls=maxls,
            line_search=line_search, first_step=first_step, num_threads=num_threads, disp=disp))

    if comm is None:
        x, opts = checked()
    else:
        from .distributed._collectives import agreed
        x, opts = agreed(comm, checked)
    solver = _core.Lbfgs(x.size, x.dtype, opts["maxcor"])
    res = _run(solver, "L-BFGS", fun, x, jac, args, callback, opts, comm=comm)
    if comm is not None:  # the pairs are slices: H needs the other ranks' too
        return res
    state = solver.get_state()
    res["hess_inv"] = LbfgsInverseHessian(state["s"], state["y"])
    return res


def _run(solver, name: str, fun, x: np.ndarray, jac, args, callback, opts: dict, comm=None,
         **extra) -> OptimizeResult:
    """Runs a checked problem on a C++ quasi-Newton solver; x receives the result.
    With ``comm``, x is this rank's slice (fastopt.distributed.lbfgs)."""
    function, inplace = _objective(fun, jac, tuple(args))
    hook = _iteration_hook(callback)
    if comm is not None:
        from .distributed.lbfgs import across_ranks
        function, hook, extra["cross_rank"], traffic = across_ranks(comm, function, inplace, hook, x, opts)
    options = _core.LbfgsOptions(gtol=opts["gtol"], ftol=opts["ftol"], maxiter=opts["maxiter"],
                                 maxfun=opts["maxfun"], maxls=opts["maxls"],
                                 line_search=opts.get("line_search", LINE_SEARCHES[0]),
                                 first_step=opts.get("first_step", "l2"), num_threads=opts.get("num_threads", 0))
    raw = solver.run(function, x, options, grad_inplace=inplace, callback=hook, **extra)
    res = OptimizeResult(x=x, success=raw["status"] == 0, **raw)
    if comm is not None:
        res["communication"] = traffic
    if opts["disp"] and (comm is None or comm.rank == 0):
        print(f"fastopt {name}: {res.message} (nit={res.nit}, nfev={res.nfev}, f={res.fun:.6g})")
    return res


def bfgs(fun: Callable, x0, *, jac: Any = True, args: tuple = (), callback: Callable | None = None,
         gtol: float = 1e-5, ftol: float = 2.2204460492503131e-09, maxiter: int = 15000, maxfun: int = 15000,
         maxls: int = 20, line_search: str = "strong_wolfe", first_step: str = "l2", num_threads: int = 0,
         disp: bool = False) -> OptimizeResult:
    r"""Minimize ``fun`` from ``x0`` with dense BFGS, for small problems (``n`` up to a few thousand:
    the inverse Hessian takes ``8 n^2`` bytes).

    The direction is :math:`d = -H g` with an explicit inverse-Hessian
    approximation :math:`H`: the identity until the first stored pair, then
    :math:`H \leftarrow (I - 
ho s y^	op) H (I - 
ho y s^	op) + 
ho s s^	op`,
    :math:`
ho = 1/(y^	op s)`, starting from :math:`(y^	op s / y^	op y) I`
    (Nocedal & Wright, "Numerical Optimization", 2nd ed., eqs. 6.17 and 6.20).
    A pair is skipped (and counted in ``nskipped``) unless
    :math:`s^\top y > \epsilon_{mach} (-g^\top s)` (L-BFGS-B's scale-free
    curvature test, as in :func:`lbfgs`). The iteration, line search, stopping rules, restarts and
    arguments are :func:`lbfgs`'s, except that there is no ``maxcor``. :math:`H` is kept in float64 for
    float32 problems too; rows of each pass over it are split over threads
    without changing any result.

    Returns:
        :class:`OptimizeResult` with :func:`lbfgs`'s keys plus ``hess_inv``
        (the final :math:`H`, as SciPy's BFGS returns it).
    """
    x = _check_x0(x0)
    opts = _check_options(dict(gtol=gtol, ftol=ftol, maxiter=maxiter, maxfun=maxfun, maxls=maxls,
                               line_search=line_search, first_step=first_step, num_threads=num_threads, disp=disp),
                          BFGS_DEFAULT_OPTIONS, "BFGS")
    solver = _core.Bfgs(x.size, x.dtype)
    res = _run(solver, "BFGS", fun, x, jac, args, callback, opts)
    res["hess_inv"] = solver.inverse_hessian()
    return res


def _penalized_mask(unpenalized, n: int) -> np.ndarray | None:
    """The boolean mask of penalized variables from ``unpenalized`` (None, a
    boolean mask, or indices / a slice of the variables left out)."""
    if unpenalized is None:
        return None
    mask = np.ones(n, dtype=bool)
    if isinstance(unpenalized, slice):
        mask[unpenalized] = False
        return mask
    u = np.asarray(unpenalized)
    if u.dtype == bool:
        if u.shape != (n,):
            raise ValueError(f"unpenalized as a boolean mask must have shape ({n},), got {u.shape}")
        return ~u
    if u.dtype.kind not in "iu" or u.ndim != 1:
        raise TypeError("unpenalized must be None, a boolean mask, a slice or a 1-D array of indices")
    if u.size and (u.min() < -n or u.max() >= n):
        raise ValueError(f"unpenalized has indices outside [0, {n})")
    mask[u] = False
    return mask


def owlqn(fun: Callable, x0, *, l1: float, unpenalized=None, jac: Any = True, args: tuple = (),
          callback: Callable | None = None, maxcor: int = 10, gtol: float = 1e-5,
          ftol: float = 2.2204460492503131e-09, maxiter: int = 15000, maxfun: int = 15000, maxls: int = 20,
          disp: bool = False) -> OptimizeResult:
    r"""Minimize :math:`F(x) = f(x) + 	ext{l1}\,\lVert x
Vert_1` with OWL-QN (Andrew & Gao 2007,
    "Scalable training of L1-regularized log-linear models"; docs/algorithms.md, section 4.2).

    ``fun`` gives the smooth part :math:`f` and its gradient (as for :func:`lbfgs`);
    the solver adds the L1 term. Options as :func:`lbfgs`'s but ``line_search``,
    ``first_step`` and ``num_threads`` (its vector work is one thread: the
    objective dominates). ``unpenalized`` leaves variables out of it: a
    boolean mask, indices or a slice (an intercept, say).

    The pseudo-gradient :math:`\diamond F` replaces :math:`g` (at :math:`x_i = 0`
    it is the one-sided derivative that descends, or 0 when
    :math:`|g_i| \le` l1); the direction is the L-BFGS two-loop recursion on
    pairs of the smooth gradient applied to it, with each penalized component
    that disagrees in sign with :math:`-\diamond F` set to 0; a backtracking line
    search (halving, from 1, or :math:`1/\lVert\diamond F
Vert_2` with an empty
    memory) moves on the orthant of :math:`x` (or of :math:`-\diamond F` where
    :math:`x_i = 0`): a component that would change sign becomes exactly 0.
    Sufficient decrease: :math:`F(x_+) \le F(x) + 10^{-4}\,\diamond F^	op (x_+ - x)`.
    Pairs with :math:`s^	op y \le 0` are skipped.

    Stops when :math:`\lVert\diamond F
Vert_\infty \le` ``gtol``, on ``ftol``
    (relative reduction of :math:`F`), ``maxiter`` or ``maxfun``. The result's
    ``fun`` is :math:`F`, ``jac`` the smooth gradient and ``grad_inf_norm`` the
    pseudo-gradient's largest component; ``x`` has exact zeros. Never raises on
    numerical trouble.
    """
    x = _check_x0(x0)
    if isinstance(l1, bool) or not isinstance(l1, (int, float, np.number)):
        raise TypeError(f"l1 must be a number, got {type(l1).__name__}")
    if not (np.isfinite(l1) and l1 >= 0):
        raise ValueError(f"invalid l1: {l1!r} (must be finite and >= 0)")
    penalized = _penalized_mask(unpenalized, x.size)
    opts = _check_options(dict(maxcor=maxcor, gtol=gtol, ftol=ftol, maxiter=maxiter, maxfun=maxfun, maxls=maxls,
                               disp=disp, l1=l1, unpenalized=unpenalized),
                          OWLQN_DEFAULT_OPTIONS, "OWL-QN")
    solver = _core.Owlqn(x.size, x.dtype, opts["maxcor"])
    return _run(solver, "OWL-QN", fun, x, jac, args, callback, opts, l1=float(l1), penalized=penalized)


def _bound_array(values, n: int, name: str) -> np.ndarray:
    """One side of the box as float64 of shape (n,): None means unbounded on that side."""
    default = -np.inf if name == "lower" else np.inf
    if values is None:
        return np.full(n, default)
    try:
        arr = np.array([default if v is None else v for v in values] if isinstance(values, (list, tuple)) else values,
                       dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"bounds: the {name} bounds must be numbers, None or +-inf") from None
    if arr.size == 1 and arr.ndim <= 1:  # a scalar bound applies to every variable (as SciPy's Bounds)
        arr = np.full(n, float(arr.reshape(())))
    if arr.shape != (n,):
        raise ValueError(f"bounds: {arr.size} {name} bounds for {n} variables")
    return arr


def _bounds_to_arrays(bounds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) float64 arrays from SciPy's ``Bounds`` (anything with
    ``lb`` and ``ub``) or a sequence of ``(lo, hi)`` pairs, None or +-inf for a
    free side. Raises ValueError naming the variable on a bound that is NaN,
    lo > hi, or leaves no feasible value (lo = +inf or hi = -inf)."""
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lower, upper = _bound_array(bounds.lb, n, "lower"), _bound_array(bounds.ub, n, "upper")
    else:
        if isinstance(bounds, (str, bytes)):
            raise TypeError("bounds must be a scipy.optimize.Bounds or a sequence of (lo, hi) pairs, got a string")
        try:
            pairs = list(bounds)
        except TypeError:
            raise TypeError(f"bounds must be a scipy.optimize.Bounds or a sequence of (lo, hi) pairs, "
                            f"got {type(bounds).__name__}") from None
        if len(pairs) != n:
            raise ValueError(f"bounds has {len(pairs)} (lo, hi) pairs but x0 has {n} variables")
        for i, pair in enumerate(pairs):
            if pair is None or len(pair) != 2:
                raise ValueError(f"bounds[{i}] must be a pair (lo, hi), got {pair!r}")
        lower = _bound_array([p[0] for p in pairs], n, "lower")
        upper = _bound_array([p[1] for p in pairs], n, "upper")
    for name, side in (("lower", lower), ("upper", upper)):
        if np.isnan(side).any():
            raise ValueError(f"bounds: {name} bound of variable {int(np.flatnonzero(np.isnan(side))[0])} is NaN")
    bad = np.flatnonzero((lower > upper) | (lower == np.inf) | (upper == -np.inf))
    if bad.size:
        i = int(bad[0])
        lo, hi = float(lower[i]), float(upper[i])
        raise ValueError(f"bounds of variable {i} leave no feasible value: lo = {lo} > hi = {hi}" if lo > hi else
                         f"bounds of variable {i} leave no feasible value: [{lo}, {hi}] "
                         "(a lower bound of +inf or an upper bound of -inf)")
    return lower, upper


def _inward(side: np.ndarray, dtype, toward: float) -> np.ndarray:
    """Bounds in the solver's dtype, rounded into the box (float32 has no 0.7:
    the lower bound 0.7 becomes the smallest float32 above it)."""
    narrow = side.astype(dtype)
    off = (narrow < side) if toward > 0 else (narrow > side)
    narrow[off] = np.nextafter(narrow[off], dtype(toward))
    return narrow


def lbfgsb(fun: Callable, x0, *, bounds=None, jac: Any = True, args: tuple = (),
           callback: Callable | None = None, maxcor: int = 10, gtol: float = 1e-5,
           ftol: float = 2.2204460492503131e-09, maxiter: int = 15000, maxfun: int = 15000, maxls: int = 20,
           num_threads: int = 0, disp: bool = False) -> OptimizeResult:
    r"""Minimize ``fun`` over the box ``lo <= x <= hi`` with L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995,
    with the subspace correction of Morales & Nocedal 2011; docs/algorithms.md, section 4.3).

    Each iteration finds the generalized Cauchy point (the first minimizer of
    the L-BFGS quadratic model along the projected steepest-descent path
    :math:`P(x - t g)`, breakpoint by breakpoint), minimizes the model over the
    variables still free there (the direct primal method on the compact form
    :math:`B = 	heta I - W M W^	op`), projects that point :math:`ar x` into the
    box (truncating the step at the box instead when the projection does not
    descend), and searches along :math:`ar x - x` (Moré–Thuente, :math:`c_1 = 10^{-3}`,
    :math:`c_2 = 0.9`; the largest step stays in the box; the first trial is 1,
    on the very first iteration :math:`\min(1, 1/\lVertar x - x
Vert_2)` unless every variable has
    both bounds). Pairs fail the curvature test as in :func:`lbfgs`.

    Args:
        bounds: ``scipy.optimize.Bounds`` (or anything with ``lb`` and ``ub``,
            scalars broadcast) or a sequence of ``n`` pairs ``(lo, hi)``; None or
            :math:`\pm\infty` leaves a side free; ``None`` for the whole argument:
            no bounds. ``x0`` outside the box is projected onto it (with a
            warning). float32 problems get bounds rounded into the box.
        maxcor, gtol, ftol, maxiter, maxfun, maxls, num_threads, disp, callback:
            as for :func:`lbfgs` (SciPy's names and defaults), but ``gtol``
            bounds the projected gradient :math:`\lVert P(x - g) - x
Vert_\infty`.

    Returns:
        :class:`OptimizeResult` with SciPy's L-BFGS-B messages
        (``CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL``, ...);
        ``grad_inf_norm`` is the projected gradient's norm. Never raises on
        numerical trouble; raises ``TypeError``/``ValueError`` on bad input.
    """
    x = _check_x0(x0)
    opts = _check_options(dict(maxcor=maxcor, gtol=gtol, ftol=ftol, maxiter=maxiter, maxfun=maxfun, maxls=maxls,
                               num_threads=num_threads, disp=disp), LBFGSB_DEFAULT_OPTIONS, "L-BFGS-B")
    exact_lower, exact_upper = (np.full(x.size, -np.inf), np.full(x.size, np.inf)) if bounds is None else \
        _bounds_to_arrays(bounds, x.size)
    lower, upper = _inward(exact_lower, x.dtype.type, np.inf), _inward(exact_upper, x.dtype.type, -np.inf)
    fixed = lower > upper  # lo == hi between two floats of the dtype: the nearest float
    lower[fixed] = upper[fixed] = exact_lower[fixed].astype(x.dtype)
    outside = int(np.count_nonzero((x < lower) | (x > upper)))
    if outside:
        warnings.warn(f"x0 is outside the bounds in {outside} of {x.size} variables: starting from its "
                      "projection onto the box", stacklevel=2)
    solver = _core.Lbfgsb(x.size, x.dtype, opts["maxcor"])
    res = _run(solver, "L-BFGS-B", fun, x, jac, args, callback, opts, lower=lower, upper=upper)
    res["hess_inv"] = LbfgsInverseHessian(*solver.pairs())
    return res


def minimize(fun: Callable, x0, args: tuple = (), method: str = "lbfgs", jac: Any = True,
             callback: Callable | None = None, options: dict | None = None, bounds=None,
             comm: Any = None) -> OptimizeResult:
    """``scipy.optimize.minimize``-shaped entry point. ``method`` is
    ``"lbfgs"`` (or ``"l-bfgs"``, the default; see :func:`lbfgs`),
    ``"lbfgsb"`` (or ``"l-bfgs-b"``: box ``bounds``; see :func:`lbfgsb`; the
    default method becomes it when ``bounds`` are given, as in SciPy),
    ``"bfgs"`` (dense, for small problems; see :func:`bfgs`) or ``"owlqn"``
    (``f + l1*||x||_1``, ``options={"l1": c}``; see :func:`owlqn`). ``options`` take
    SciPy's L-BFGS-B names (``maxcor`` (not BFGS), ``gtol``, ``ftol``,
    ``maxiter``, ``maxfun``, ``maxls``, ``disp``) plus ``num_threads`` and, for
    L-BFGS and BFGS, ``line_search`` and ``first_step``. ``comm`` (an mpi4py
    communicator) runs L-BFGS distributed, ``x0`` being this rank's slice
    (see :func:`lbfgs`)."""
    name = method.lower() if isinstance(method, str) else None
    options = dict(options or {})
    if comm is not None:
        if name not in ("lbfgs", "l-bfgs") or bounds is not None:
            raise ValueError(f"comm= runs method 'lbfgs' without bounds; got method={method!r}"
                             + (" with bounds" if bounds is not None else ""))
        _check_options(options)
        return lbfgs(fun, x0, jac=jac, args=args, callback=callback, comm=comm, **options)
    if name in ("lbfgsb", "l-bfgs-b") or (bounds is not None and name in ("lbfgs", "l-bfgs")):
        _check_options(options, LBFGSB_DEFAULT_OPTIONS, "L-BFGS-B")
        return lbfgsb(fun, x0, bounds=bounds, jac=jac, args=args, callback=callback, **options)
    if bounds is not None and name in ("bfgs", "owlqn"):
        raise ValueError(f"method {method!r} does not take bounds: use method='lbfgsb'")
    if name in ("lbfgs", "l-bfgs"):
        _check_options(options)
        return lbfgs(fun, x0, jac=jac, args=args, callback=callback, **options)
    if name == "bfgs":
        _check_options(options, BFGS_DEFAULT_OPTIONS, "BFGS")
        return bfgs(fun, x0, jac=jac, args=args, callback=callback, **options)
    if name == "owlqn":
        _check_options(options, OWLQN_DEFAULT_OPTIONS, "OWL-QN")
        return owlqn(fun, x0, jac=jac, args=args, callback=callback, **options)
    raise ValueError(f"unknown method {method!r}: fastopt.minimize implements 'lbfgs', 'lbfgsb', 'bfgs' and 'owlqn'")


def lbfgs_minimize(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None, constraints=(),
                   callback=None, tol=None, **options) -> OptimizeResult:
    """A custom method for SciPy: ``scipy.optimize.minimize(fun, x0, jac=True,
    method=fastopt.lbfgs_minimize, bounds=..., options={...})``: L-BFGS, or
    L-BFGS-B when ``bounds`` are given (SciPy hands them over as a ``Bounds``).
    ``tol`` sets ``gtol`` and ``ftol`` unless they are given (as for
    L-BFGS-B). Constraints other than bounds are not supported (a clear
    error, not silently ignored)."""
    if constraints:
        raise ValueError("fastopt L-BFGS takes box bounds only: constraints are not supported")
    if tol is not None:
        options.setdefault("gtol", tol)
        options.setdefault("ftol", tol)
    x0 = np.asarray(x0)
    if x0.dtype.kind in "iub":  # SciPy converts integer x0 to float before calling a custom method too
        x0 = x0.astype(float)
    if bounds is not None:
        return lbfgsb(fun, x0, bounds=bounds, jac=jac, args=args, callback=callback,
                      **_check_options(options, LBFGSB_DEFAULT_OPTIONS, "L-BFGS-B"))
    return lbfgs(fun, x0, jac=jac, args=args, callback=callback, **_check_options(options))
