"""L-BFGS with torch.optim.LBFGS's interface (the solver is :func:`fastopt.lbfgs`).

Rule: docs/algorithms.md, "L-BFGS"; solver: csrc/lbfgs/.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import _core
from ._base import Optimizer, one_at_a_time

__all__ = ["LBFGS"]


class LBFGS(Optimizer):
    r"""L-BFGS with torch.optim.LBFGS's interface: ``step(closure)`` runs up to
    ``max_iter`` iterations, re-evaluating the model through ``closure``.

    NumPy arrays carry no ``.grad``, so ``closure()`` returns ``(loss, grads)``
    (``grads`` aligned with the parameters, like :meth:`Optimizer.step`'s);
    the parameters are updated in place before every call. The iteration is
    :func:`fastopt.lbfgs` (C++ two-pass direction, Moré–Thuente line search),
    resumed across ``step`` calls with the same memory. ``step`` returns the
    loss of its first evaluation, as torch does.

    Args (torch names and defaults, except ``line_search_fn``): ``lr`` 1
    (scales every first trial step), ``max_iter`` 20 (iterations per step),
    ``max_eval`` ``max_iter * 5 // 4`` (evaluations per step),
    ``tolerance_grad`` 1e-7 (stop when :math:`\lVert g\rVert_\infty \le` it),
    ``tolerance_change`` 1e-9, ``history_size`` 100, ``line_search_fn``
    ``"strong_wolfe"`` (Moré–Thuente; torch's default is None),
    ``"backtracking"`` (Armijo) or None (the fixed step ``lr``, no search).

    Differences from torch: ``tolerance_change`` is applied to the relative
    reduction :math:`(f_k - f_{k+1})/\max(|f_k|, |f_{k+1}|, 1)` (torch tests the
    absolute change of f and the step's max-norm); pairs with
    :math:`s^\top y \le 10^{-10} y^\top y` are skipped (the same rule); one
    param group only (as torch); all parameters share one dtype. State (in
    ``state[0]``, torch keeps it on the first parameter): ``s``, ``y`` (the
    stored pairs, oldest first), ``sy``, ``yy`` (their products),
    ``gamma`` (torch's ``H_diag``), ``n_iter``, ``func_evals``, ``skipped``.
    """

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = "strong_wolfe"):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                      history_size=history_size, line_search_fn=line_search_fn))
        self._solver = None

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)
        dtypes = {p.dtype for p in self.param_groups[0]["params"]}
        if len(dtypes) > 1:
            self.param_groups.clear()
            raise TypeError(f"LBFGS parameters must share one dtype, got {sorted(map(str, dtypes))}")

    def _validate_group(self, group):
        if group["line_search_fn"] not in ("strong_wolfe", "backtracking", None):
            raise ValueError(f"invalid line_search_fn: {group['line_search_fn']!r} "
                             "(expected 'strong_wolfe', 'backtracking' or None)")
        for name in ("max_iter", "max_eval", "history_size"):
            value = group[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if group["history_size"] < 1:
            raise ValueError(f"invalid history_size: {group['history_size']} (must be >= 1)")
        self._options(group)  # validated in C++ (ValueError names the argument)

    @staticmethod
    def _options(group):
        try:
            return _core.LbfgsOptions(
                gtol=group["tolerance_grad"], ftol=group["tolerance_change"], maxiter=group["max_iter"],
                maxfun=group["max_eval"], line_search=group["line_search_fn"] or "fixed",
                initial_step=group["lr"], first_step="l1")  # torch's first step
        except ValueError as e:
            raise ValueError(str(e).replace("maxiter", "max_iter").replace("maxfun", "max_eval")
                             .replace("initial_step (lr)", "lr").replace("gtol", "tolerance_grad")
                             .replace("ftol", "tolerance_change")) from None

    def _get_solver(self, n: int, dtype):
        if self._solver is None:
            self._solver = _core.Lbfgs(n, np.dtype(dtype), int(self.param_groups[0]["history_size"]))
        return self._solver

    @one_at_a_time
    def step(self, closure):
        """Run up to ``max_iter`` iterations; ``closure()`` returns ``(loss, grads)``."""
        group = self.param_groups[0]
        params = group["params"]
        offsets = np.cumsum([0] + [p.size for p in params])
        n = int(offsets[-1])
        x = np.concatenate([p.ravel() for p in params]).astype(params[0].dtype, copy=False)
        solver = self._get_solver(n, x.dtype)
        first_loss = []

        def scatter(flat):
            for p, a, b in zip(params, offsets[:-1], offsets[1:]):
                p.reshape(-1)[...] = flat[a:b]

        def fun(flat_x, flat_g):
            scatter(flat_x)
            loss, grads = closure()
            if isinstance(grads, np.ndarray):
                grads = [grads]
            grads = list(grads)
            if len(grads) != len(params):
                raise ValueError(f"closure returned {len(grads)} gradients for {len(params)} parameters")
            for k, (p, g, a, b) in enumerate(zip(params, grads, offsets[:-1], offsets[1:])):
                g = np.asarray(g)
                if g.shape != p.shape:
                    raise ValueError(f"closure returned grads[{k}] of shape {g.shape} for a parameter of "
                                     f"shape {p.shape}")
                flat_g[a:b] = g.reshape(-1)
            loss = float(loss)
            if not first_loss:
                first_loss.append(loss)
            return loss

        self.last_result = solver.run(fun, x, self._options(group), True, None)
        scatter(x)
        return first_loss[0]

    @one_at_a_time
    def state_dict(self):
        groups = [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"},
                   "params": list(range(len(g["params"])))} for g in self.param_groups]
        state = {} if self._solver is None else {0: self._solver.get_state()}
        return {"state": state, "param_groups": groups}

    @one_at_a_time
    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.param_groups[0]["params"]):
            raise ValueError("state_dict does not match this optimizer's parameters (one group, "
                             f"{len(self.param_groups[0]['params'])} parameters)")
        saved = groups[0]
        group = {**self.param_groups[0], **{k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}}
        group["params"] = self.param_groups[0]["params"]
        self._validate_group(group)
        solver = None
        if state_dict["state"]:
            params = group["params"]
            solver = _core.Lbfgs(sum(p.size for p in params), params[0].dtype, int(group["history_size"]))
            solver.set_state(dict(state_dict["state"][0]))
        self.param_groups[0] = group
        self._solver = solver
