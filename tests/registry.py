"""One table of every kernel configuration; the tests are parametrized from it.

A KernelCase names a functional kernel (``fastopt.functional.<name>_`` and its
twin ``fastopt.reference.<name>_``), the hyperparameters of one configuration,
and the state arrays it takes (functional argument order, with initial fill).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastopt
from fastopt import functional as F
from fastopt import reference as R

DTYPES = (np.float32, np.float64)

# Sizes that break vector bodies and tails, plus one above the parallel grain.
GRAIN = int(fastopt._core.PARALLEL_GRAIN)
SIZES = (0, 1, 7, 8, 15, 16, 17, 31, 33, 1023, 65537, GRAIN + 1)

# Documented agreement with fastopt.reference after 50 steps. The kernels use
# the reference's operation order without FMA contraction, so in practice they
# agree bitwise; the tolerances leave room for a compiler's libm differences.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-14}


@dataclass(frozen=True)
class KernelCase:
    name: str                         # "adam" -> functional.adam_, reference.adam_
    label: str
    hyper: dict = field(default_factory=dict)
    state: tuple[str, ...] = ()       # state argument names, in functional order
    init: dict[str, float | None] = field(default_factory=dict)  # fill per state (default 0; None: pass None)
    uses_step: bool = False
    uses_loss: bool = False
    per_step: Callable[[int], dict] | None = None  # per-step extras (NAdam's mu_product, ASGD's eta, mu)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.label}"

    @property
    def functional(self):
        return getattr(F, self.name + "_")

    @property
    def reference(self):
        return getattr(R, self.name + "_")

    @property
    def array_state(self) -> tuple[str, ...]:
        """The state arguments that are arrays (the others are passed as None)."""
        return tuple(s for s in self.state if self.init.get(s, 0.0) is not None)

    def new_state(self, shape, dtype) -> list[np.ndarray | None]:
        return [None if self.init.get(s, 0.0) is None else np.full(shape, self.init.get(s, 0.0), dtype=dtype)
                for s in self.state]

    def kwargs(self, t: int, losses: np.ndarray | None = None) -> dict:
        """Hyperparameters for 1-based step t."""
        kw = dict(self.hyper)
        if self.uses_step:
            kw["step"] = t
        if self.uses_loss:
            kw["loss"] = float(losses[t - 1])
            kw["prev_loss"] = float(losses[t - 2]) if t > 1 else None
        if self.per_step:
            kw.update(self.per_step(t))
        return kw


def _rprop(label, **hyper):
    plus = hyper.get("variant", "irprop-").endswith("+")
    return KernelCase("rprop", label, hyper,
                      ("prevs", "step_sizes") + (("prev_updates",) if plus else ()),
                      init={"step_sizes": 0.01}, uses_loss=hyper.get("variant") == "irprop+")


CASES = [
    KernelCase("sgd", "plain", dict(lr=0.05), uses_step=True),
    KernelCase("sgd", "momentum", dict(lr=0.05, momentum=0.9), ("momentum_buffers",), uses_step=True),
    KernelCase("sgd", "dampening-wd", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
               ("momentum_buffers",), uses_step=True),
    KernelCase("sgd", "nesterov-maximize", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True),
               ("momentum_buffers",), uses_step=True),
    KernelCase("adagrad", "default", dict(lr=0.1), ("sums",), uses_step=True),
    KernelCase("adagrad", "decay-wd-init", dict(lr=0.1, lr_decay=0.01, weight_decay=0.02),
               ("sums",), init={"sums": 0.1}, uses_step=True),
    KernelCase("adagrad", "maximize", dict(lr=0.1, maximize=True, eps=1e-6), ("sums",), uses_step=True),
    KernelCase("rmsprop", "plain", dict(lr=0.01), ("square_avgs",)),
    KernelCase("rmsprop", "centered", dict(lr=0.01, centered=True), ("square_avgs", "grad_avgs")),
    KernelCase("rmsprop", "momentum-wd", dict(lr=0.01, momentum=0.9, weight_decay=0.01, alpha=0.9),
               ("square_avgs", "grad_avgs", "momentum_buffers")),
    KernelCase("rmsprop", "centered-momentum-maximize",
               dict(lr=0.01, momentum=0.5, centered=True, maximize=True),
               ("square_avgs", "grad_avgs", "momentum_buffers")),
    KernelCase("adam", "default", dict(lr=0.01), ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    KernelCase("adam", "amsgrad", dict(lr=0.01, amsgrad=True),
               ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"), uses_step=True),
    KernelCase("adam", "wd-maximize-betas", dict(lr=0.01, weight_decay=0.05, maximize=True, betas=(0.8, 0.95)),
               ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    KernelCase("adamw", "default", dict(lr=0.01), ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    KernelCase("adamw", "amsgrad-wd", dict(lr=0.01, amsgrad=True, weight_decay=0.1),
               ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"), uses_step=True),
    _rprop("irprop-", variant="irprop-"),
    _rprop("rprop-", variant="rprop-"),
    _rprop("rprop+", variant="rprop+"),
    _rprop("irprop+", variant="irprop+"),
    _rprop("irprop-wd-maximize-etas", variant="irprop-", weight_decay=0.01, maximize=True,
           etaminus=0.3, etaplus=1.5, step_size_min=1e-4, step_size_max=0.05),
    KernelCase("quickprop", "default", dict(lr=0.05), ("prev_steps", "prev_grads")),
    KernelCase("quickprop", "mode-switch-momentum", dict(lr=0.05, mode_switch=1e-3, momentum=0.5, mu=2.0),
               ("prev_steps", "prev_grads")),
    KernelCase("quickprop", "wd-maximize-nodecay", dict(lr=0.05, weight_decay=0.01, decay=0.0, maximize=True),
               ("prev_steps", "prev_grads")),
]



def _nadam(label, **hyper):
    beta1, psi = hyper.get("betas", (0.9, 0.999))[0], hyper.get("momentum_decay", 4e-3)

    def mu_product(t):  # product of mu_1 .. mu_{t-1}, as the class keeps it
        product = 1.0
        for k in range(1, t):
            product *= R.nadam_mu(k, beta1, psi)
        return {"mu_product": product}
    return KernelCase("nadam", label, hyper, ("exp_avgs", "exp_avg_sqs"), uses_step=True, per_step=mu_product)


def _asgd(label, **hyper):
    lr, lambd = hyper.get("lr", 1e-2), hyper.get("lambd", 1e-4)
    alpha, t0 = hyper.pop("alpha", 0.75), hyper.pop("t0", 1e6)

    def schedule(t):  # eta, mu before step t
        eta, mu = (lr, 1.0) if t == 1 else R.asgd_schedule(t - 1, lr, lambd, alpha, t0)
        return {"eta": eta, "mu": mu}
    return KernelCase("asgd", label, hyper, ("axs",), per_step=schedule)


CASES += [
    KernelCase("adadelta", "default", dict(lr=1.0), ("square_avgs", "acc_deltas")),
    KernelCase("adadelta", "rho-eps-wd-maximize", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.01, maximize=True),
               ("square_avgs", "acc_deltas")),
    KernelCase("adamax", "default", dict(lr=0.01), ("exp_avgs", "exp_infs"), uses_step=True),
    KernelCase("adamax", "betas-wd-maximize", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.02, maximize=True),
               ("exp_avgs", "exp_infs"), uses_step=True),
    _nadam("default", lr=0.01),
    _nadam("decoupled-momentum-decay", lr=0.01, weight_decay=0.05, decoupled_weight_decay=True,
           momentum_decay=0.01, betas=(0.85, 0.99)),
    KernelCase("radam", "default", dict(lr=0.01), ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    KernelCase("radam", "short-horizon-wd-maximize", dict(lr=0.01, betas=(0.9, 0.8), weight_decay=0.02, maximize=True),
               ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    _asgd("default", lr=0.05),
    _asgd("averaging-wd", lr=0.05, lambd=0.01, weight_decay=0.01, t0=10),
    KernelCase("lion", "default", dict(lr=0.01), ("exp_avgs",)),
    KernelCase("lion", "betas-wd-maximize", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, maximize=True),
               ("exp_avgs",)),
    KernelCase("lamb", "default", dict(lr=0.01), ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    KernelCase("lamb", "wd-betas-maximize", dict(lr=0.01, weight_decay=0.05, betas=(0.8, 0.95), maximize=True),
               ("exp_avgs", "exp_avg_sqs"), uses_step=True),
    # 1-D parameters: the full `variance` (tests/test_vs_torch.py and test_golden.py cover the factored path).
    KernelCase("adafactor", "default", dict(lr=0.01), ("row_vars", "col_vars", "variances"),
               init={"row_vars": None, "col_vars": None}, uses_step=True),
    KernelCase("adafactor", "eps-d-wd-maximize", dict(lr=0.05, eps=(1e-20, 1e-2), d=2.0, weight_decay=0.1,
                                                     beta2_decay=-0.5, maximize=True),
               ("row_vars", "col_vars", "variances"), init={"row_vars": None, "col_vars": None}, uses_step=True),
]

# The regularization and clipping every optimizer offers (functional.py):
# L1 prox with decoupled decay, the elastic net (L1 + coupled L2), and a
# global-norm factor with value clipping, on top of one configuration each.
SHARED_OPTIONS = {
    "l1-decoupled": dict(l1=0.05, weight_decay=0.1, decoupled_weight_decay=True),
    "elastic-net": dict(l1=0.05, weight_decay=0.1),
    "clipped": dict(grad_scale=0.7, clip_value=0.8),
}
_BASE = {"sgd": CASES[2], "adagrad": CASES[4], "rmsprop": CASES[9], "adam": CASES[11],
         "rprop": CASES[18], "quickprop": CASES[21]}
_BASE.update({case.name: case for case in CASES if case.label == "default" and case.name not in (*_BASE, "adamw")})
# LAMB and Adafactor have their own weight-decay rule: no coupled L2 or decoupled flag.
_OWN_DECAY = ("lamb", "adafactor")
for _option, _extra in SHARED_OPTIONS.items():
    for _name, _base in _BASE.items():
        _hyper = {**_base.hyper, **_extra}
        if _name in ("adam", "lion") and _option != "l1-decoupled":
            _hyper.pop("decoupled_weight_decay", None)
        if _name in _OWN_DECAY:
            _hyper.pop("decoupled_weight_decay", None)
        CASES.append(KernelCase(_name, f"{_base.label}+{_option}", _hyper, _base.state, _base.init,
                                _base.uses_step, _base.uses_loss, _base.per_step))

CASE_IDS = [c.id for c in CASES]


class NoisyQuadratic:
    """g = curvature * (p - target) + noise_t: the gradient depends on the
    parameter (so a wrong update compounds) and the noise flips signs (so the
    Rprop and Quickprop branches are all taken)."""

    def __init__(self, size: int, steps: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.curvature = rng.uniform(0.1, 3.0, size)
        self.target = rng.standard_normal(size)
        self.noise = 0.3 * rng.standard_normal((steps, size))
        self.losses = rng.uniform(0.0, 1.0, steps)  # an irprop+ loss sequence, independent of p
        self.p0 = rng.standard_normal(size)

    def grad(self, p: np.ndarray, t: int) -> np.ndarray:
        """Gradient at 1-based step t, in p's dtype."""
        g = self.curvature * (p.astype(np.float64) - self.target) + self.noise[t - 1]
        return g.astype(p.dtype)


def run(case: KernelCase, fn, problem: NoisyQuadratic, dtype, steps: int, **extra):
    """Runs `steps` steps of fn (a functional or reference kernel) from the
    problem's start; returns the parameter and the state arrays."""
    p = problem.p0.astype(dtype)
    state = case.new_state(p.shape, dtype)
    for t in range(1, steps + 1):
        fn(p, problem.grad(p, t), *state, **case.kwargs(t, problem.losses), **extra)
    return p, state
