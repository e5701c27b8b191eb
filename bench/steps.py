"""One optimizer step, timed for every implementation on the same buffers.

Implementations (each a factory returning a zero-argument callable that does
one real step, state carried over between calls):

* ``fastopt``   -- ``fastopt.functional.<name>_`` on one array
* ``reference`` -- ``fastopt.reference.<name>_``: plain NumPy, a temporary per term
* ``numpy_out`` -- careful in-place NumPy (bench/numpy_inplace.py)
* ``torch_fused`` / ``torch_foreach`` -- ``torch.optim`` on views of the same
  data, where torch has the algorithm (and that implementation) on CPU
* ``roofline``  -- ``fastopt._core.roofline``: the same bytes read and written
  with trivial arithmetic, the physical limit of this machine (one pass; for
  the rules that need several passes, LAMB and Adafactor, its time is scaled
  to the bytes those passes move: see KERNELS)

Ratios are computed within one run; the machine is shared and noisy.
"""

from __future__ import annotations

import math
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fastopt import _core
from fastopt import functional as F
from fastopt import reference as R

from . import numpy_inplace
from .timing import median_seconds

Shape = tuple[int, ...]

# Per-call values the functional form takes and torch.optim keeps in its own
# state: not torch hyperparameters.
PER_CALL = ("step", "mu_product", "eta", "mu")


def _flat(n: int) -> Shape:
    return (n,)


def _matrix(n: int) -> Shape:
    """Adafactor factors the second moment of arrays of two or more
    dimensions: N as a near-square R x C weight matrix (R the largest divisor
    of N up to sqrt(N): 1e3 -> 25 x 40, 1e5 -> 250 x 400, 1e7 -> 3125 x 3200),
    so that its row and column statistics (R + C elements) are small next to
    N. A fixed C = 1000 would make N = 1000 a 1 x 1000 "matrix" whose column
    statistics are as large as p. Flat (the unfactored rule) when R + C would
    exceed N / 8 (N prime, or tiny)."""
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return (rows, n // rows) if 8 * (rows + n // rows) <= n else (n,)


def _adafactor_state(shape: Shape) -> list[Shape | None]:
    """row_vars, col_vars, variances as reference.adafactor_ documents them."""
    if len(shape) >= 2:
        return [shape[:-1] + (1,), shape[:-2] + (1, shape[-1]), None]
    return [None, None, shape]


# Passes over memory, one string each: "arrays read -> arrays written",
# counting only the arrays of N elements (Adafactor's row and column
# statistics, R + C elements, are left out). What the rule in
# docs/algorithms.md must move at the least; a kernel that rereads more moves
# more and shows it as a lower "x roof".
def _lamb_passes(shape: Shape) -> tuple[str, ...]:
    # Pass 2 recomputes r from the updated m and v and the untouched p: it
    # has no use for g (10 streams, not the 11 a pass re-reading g would move).
    return ("p g m v -> m v",   # moments; norms of p and r
            "p m v -> p")       # p - lr*phi*r


def _adafactor_passes(shape: Shape) -> tuple[str, ...]:
    if len(shape) >= 2:  # u needs the finished row/col means, the update needs ||u||
        return ("p g ->",        # ||p|| (alpha), row and column sums of g*g
                "g ->",          # ||u||, u = g/sqrt(vest) from the small factors
                "p g -> p")      # the update, u recomputed
    # Unfactored: u and ||u|| are known as soon as the variance is updated.
    return ("p g v -> v", "p g v -> p")


@dataclass(frozen=True)
class StepKernel:
    label: str
    name: str                  # functional / reference name without the underscore
    state: int                 # state arguments passed positionally (None allowed)
    kwargs: dict
    torch_class: str | None = None
    torch_kwargs: dict | None = None   # None: kwargs less PER_CALL
    shape: Callable[[int], Shape] = _flat
    state_shapes: Callable[[Shape], list[Shape | None]] | None = None  # None: like p
    passes: Callable[[Shape], tuple[str, ...]] | None = None  # None: one fused pass

    def layout(self, n: int) -> tuple[Shape, list[Shape | None]]:
        """Shape of p (and g), and of each state argument (None: passed as None)."""
        shape = self.shape(n)
        return shape, (self.state_shapes(shape) if self.state_shapes else [shape] * self.state)

    def traffic(self, n: int) -> tuple[str, ...]:
        """The passes over the N-element arrays ("read -> written" each)."""
        shape, state = self.layout(n)
        if self.passes:
            return self.passes(shape)
        s = " ".join(f"s{i}" for i, st in enumerate(state) if st == shape)
        return (f"p g {s} -> p {s}",)

    def streams(self, n: int) -> int:
        """N-element arrays read plus written over all passes of one step."""
        return sum(len(p.replace("->", " ").split()) for p in self.traffic(n))

    def roofline_streams(self, n: int) -> int:
        """What the roofline moves: one pass reading every N-element array,
        writing p and the N-element state (see make_step)."""
        shape, state = self.layout(n)
        written = 1 + sum(st == shape for st in state)
        return 2 * written + 1

    def bytes_per_step(self, n: int, itemsize: int) -> int:
        return self.streams(n) * n * itemsize

    @property
    def torch_options(self) -> dict:
        if self.torch_kwargs is not None:
            return self.torch_kwargs
        return {k: v for k, v in self.kwargs.items() if k not in PER_CALL}


def _nadam(step: int, lr: float = 2e-3, beta1: float = 0.9, momentum_decay: float = 4e-3) -> dict:
    """NAdam at `step` with its real mu_product (mu_1 ... mu_{step-1})."""
    mu_product = math.prod(R.nadam_mu(t, beta1, momentum_decay) for t in range(1, step))
    return dict(lr=lr, step=step, mu_product=mu_product)


# torch.optim.ASGD's arguments; t0 = 0 averages from the start (Polyak-Ruppert),
# so mu < 1 and the step runs the averaging rule (ax read and written); torch's
# default t0 = 1e6 would time a copy ax = p instead.
_ASGD = dict(lr=1e-2, lambd=1e-4, alpha=0.75, t0=0.0)


def _asgd(step: int, lr: float, lambd: float, alpha: float, t0: float) -> dict:
    """asgd_'s arguments at `step`: eta and mu as the schedule leaves them
    after step - 1 (alpha and t0 enter only through the schedule)."""
    eta, mu = R.asgd_schedule(step - 1, lr, lambd, alpha, t0)
    return dict(lr=lr, lambd=lambd, eta=eta, mu=mu)


# Streams (N-element arrays read + written; bytes = streams * N * itemsize):
# the one-pass rows move p, g and every state array once (read), p and the
# state once more (written): (2 + state) + (1 + state). LAMB: 6 + 4 = 10
# (_lamb_passes). Adafactor, factored: 2 + 1 + 3 = 6; flat N: 4 + 4 = 8
# (_adafactor_passes). The roofline makes one pass over the same N-element
# arrays (LAMB 7 streams, factored Adafactor 3: write p, read g) and its time
# is scaled by streams / roofline_streams: "x roof" then compares fastopt
# with the time the roofline's bandwidth needs for the bytes the rule must
# move, the same yardstick as for a one-pass row. (At N small enough that a
# call's fixed cost dominates, the scaling also multiplies that fixed cost:
# read x roof of LAMB and Adafactor at small N with that in mind.)
KERNELS = [
    StepKernel("sgd-momentum", "sgd", 1, dict(lr=1e-3, momentum=0.9, step=2), "SGD"),
    StepKernel("adagrad", "adagrad", 1, dict(lr=1e-2, step=2), "Adagrad"),
    StepKernel("rmsprop", "rmsprop", 1, dict(lr=1e-3), "RMSprop"),
    StepKernel("adam", "adam", 2, dict(lr=1e-3, step=10), "Adam"),
    StepKernel("adamw-amsgrad", "adamw", 3, dict(lr=1e-3, amsgrad=True, step=10), "AdamW"),
    StepKernel("rprop (irprop-)", "rprop", 2, dict(), "Rprop", dict(lr=1e-2)),
    StepKernel("quickprop", "quickprop", 2, dict(lr=1e-3)),
    StepKernel("adadelta", "adadelta", 2, dict(lr=1.0), "Adadelta"),
    StepKernel("adamax", "adamax", 2, dict(lr=2e-3, step=10), "Adamax"),
    StepKernel("nadam", "nadam", 2, _nadam(step=10), "NAdam"),
    StepKernel("radam", "radam", 2, dict(lr=1e-3, step=10), "RAdam"),  # rho_10 > 5: rectified
    StepKernel("asgd", "asgd", 1, _asgd(10, **_ASGD), "ASGD", _ASGD),
    StepKernel("lion", "lion", 1, dict(lr=1e-4)),
    StepKernel("lamb", "lamb", 2, dict(lr=1e-3, step=10, weight_decay=1e-2), passes=_lamb_passes),
    StepKernel("adafactor", "adafactor", 3, dict(lr=1e-2, step=10), "Adafactor",
               shape=_matrix, state_shapes=_adafactor_state, passes=_adafactor_passes),
]
KERNEL_BY_LABEL = {k.label: k for k in KERNELS}
IMPLEMENTATIONS = ["fastopt", "reference", "numpy_out", "torch_fused", "torch_foreach", "roofline"]


def available(kernel: StepKernel) -> bool:
    """Whether fastopt.functional has this kernel's function (yet)."""
    return hasattr(F, kernel.name + "_")


def make_buffers(kernel: StepKernel, n: int, dtype, seed: int = 0) -> list[np.ndarray | None]:
    """p, g and the state arguments (None where the step takes none), with
    values of realistic magnitude."""
    rng = np.random.default_rng(seed)
    shape, state_shapes = kernel.layout(n)
    p = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    state = [None if s is None else np.abs(rng.standard_normal(s)).astype(dtype) * 1e-2
             for s in state_shapes]
    if kernel.name == "rprop":
        state[1][:] = 1e-2  # step sizes
    return [p, g, *state]


def _roofline_arrays(buffers) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Written (p and the state of p's shape) and read-only (g) arrays."""
    p, g, *state = buffers
    return [p, *(s for s in state if s is not None and s.shape == p.shape)], [g]


def _torch_step(kernel: StepKernel, buffers, variant: str) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    if kernel.torch_class is None:
        return None
    param = torch.from_numpy(buffers[0])
    param.grad = torch.from_numpy(buffers[1])
    options = {"fused": True} if variant == "fused" else {"foreach": True}
    try:
        opt = getattr(torch.optim, kernel.torch_class)([param], **kernel.torch_options, **options)
        opt.step()  # creates the state (and fails here if torch lacks this variant on CPU)
    except (RuntimeError, ValueError, TypeError):
        return None
    return opt.step


def make_step(kernel: StepKernel, implementation: str, buffers) -> Callable[[], None] | None:
    """A callable doing one step with `implementation`, or None if it does not exist."""
    if implementation == "fastopt":
        fn = getattr(F, kernel.name + "_")
        return lambda: fn(*buffers, **kernel.kwargs)
    if implementation == "reference":
        fn = getattr(R, kernel.name + "_")
        return lambda: fn(*buffers, **kernel.kwargs)
    if implementation == "numpy_out":
        return getattr(numpy_inplace, kernel.name)(*buffers, **kernel.kwargs)
    if implementation == "torch_fused":
        return _torch_step(kernel, buffers, "fused")
    if implementation == "torch_foreach":
        return _torch_step(kernel, buffers, "foreach")
    if implementation == "roofline":
        written, read = _roofline_arrays(buffers)
        return lambda: _core.roofline(written, read)
    raise ValueError(implementation)


def peak_allocation(step: Callable[[], None]) -> int:
    """Bytes of the largest NumPy/Python allocation peak during one step."""
    step()
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(kernel: StepKernel, n: int, dtype, implementations=IMPLEMENTATIONS) -> dict:
    """Median step time of every implementation (seconds; None if absent).

    The roofline's time is scaled to the step's traffic (see KERNELS); its
    measured time stays in ``roofline_one_pass_seconds``."""
    itemsize = np.dtype(dtype).itemsize
    row = dict(kernel=kernel.label, dtype=np.dtype(dtype).name, n=n, streams=kernel.streams(n),
               bytes=kernel.bytes_per_step(n, itemsize), seconds={})
    budget = 0.25 if n <= 10**6 else 0.6
    for implementation in implementations:
        step = make_step(kernel, implementation, make_buffers(kernel, n, dtype))
        row["seconds"][implementation] = None if step is None else median_seconds(step, budget=budget)
    if row["seconds"].get("roofline"):
        row["roofline_one_pass_seconds"] = row["seconds"]["roofline"]
        row["seconds"]["roofline"] *= kernel.streams(n) / kernel.roofline_streams(n)
    buffers = make_buffers(kernel, n, dtype)
    row["array_bytes"] = sum(b.nbytes for b in buffers if b is not None)
    row["fastopt_peak_bytes"] = peak_allocation(make_step(kernel, "fastopt", buffers))
    return row


def ratios(row: dict) -> dict[str, float | None]:
    """Other implementation's time / fastopt's time (> 1: fastopt is faster)."""
    fast = row["seconds"]["fastopt"]
    return {name: (t / fast if t else None) for name, t in row["seconds"].items() if name != "fastopt"}


def format_row(row: dict) -> str:
    from .timing import format_seconds

    r = ratios(row)
    cell = lambda x: f"{x:8.2f}" if x else "       -"  # noqa: E731
    gbps = row["bytes"] / row["seconds"]["fastopt"] / 1e9
    return (f"{row['kernel']:<16}{row['dtype']:<8}{row['n']:>9}  {format_seconds(row['seconds']['fastopt']):>9}"
            f" {gbps:6.1f} {cell(r['roofline'])} {cell(r['reference'])} {cell(r['numpy_out'])}"
            f" {cell(r['torch_fused'])} {cell(r['torch_foreach'])}")


HEADER = (f"{'kernel':<16}{'dtype':<8}{'N':>9}  {'fastopt':>9} {'GB/s':>6} {'x roof':>8} {'vs ref':>8}"
          f" {'vs out=':>8} {'vs fused':>8} {'vs forea':>8}")
LEGEND = ("x roof = roofline time / fastopt time (1.0: at the memory limit; for the multi-pass LAMB and "
          "Adafactor the roofline's\none-pass time is scaled to the bytes their passes move); GB/s = those "
          "bytes / fastopt's time;\nvs X = X's time / fastopt's (> 1: fastopt faster); "
          "fused/foreach = torch.optim with fused=True / foreach=True; - = not available.")
