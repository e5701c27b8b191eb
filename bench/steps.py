"""One optimizer step, timed for every implementation on the same buffers.

Implementations (each a factory returning a zero-argument callable that does
one real step, state carried over between calls):

* ``fastopt``   -- ``fastopt.functional.<name>_`` on one array
* ``reference`` -- ``fastopt.reference.<name>_``: plain NumPy, a temporary per term
* ``numpy_out`` -- careful in-place NumPy (bench/numpy_inplace.py)
* ``torch_fused`` / ``torch_foreach`` -- ``torch.optim`` on views of the same
  data, where torch has the algorithm (and that implementation) on CPU
* ``roofline``  -- ``fastopt._core.roofline``: the same bytes read and written
  with trivial arithmetic, the physical limit of this machine

Ratios are computed within one run; the machine is shared and noisy.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from fastopt import _core
from fastopt import functional as F
from fastopt import reference as R

from . import numpy_inplace
from .timing import median_seconds


@dataclass(frozen=True)
class StepKernel:
    label: str
    name: str                  # functional / reference name without the underscore
    state: int                 # state buffers passed positionally
    kwargs: Dict
    torch_class: Optional[str] = None
    torch_kwargs: Dict = field(default_factory=dict)

    @property
    def streams(self) -> int:
        """Arrays read plus arrays written by one fused pass (p, g, state)."""
        return (2 + self.state) + (1 + self.state)

    def bytes_per_step(self, n: int, itemsize: int) -> int:
        return self.streams * n * itemsize


KERNELS = [
    StepKernel("sgd-momentum", "sgd", 1, dict(lr=1e-3, momentum=0.9, step=2),
               "SGD", dict(lr=1e-3, momentum=0.9)),
    StepKernel("adagrad", "adagrad", 1, dict(lr=1e-2, step=2), "Adagrad", dict(lr=1e-2)),
    StepKernel("rmsprop", "rmsprop", 1, dict(lr=1e-3), "RMSprop", dict(lr=1e-3)),
    StepKernel("adam", "adam", 2, dict(lr=1e-3, step=10), "Adam", dict(lr=1e-3)),
    StepKernel("adamw-amsgrad", "adamw", 3, dict(lr=1e-3, amsgrad=True, step=10),
               "AdamW", dict(lr=1e-3, amsgrad=True)),
    StepKernel("rprop (irprop-)", "rprop", 2, dict(), "Rprop", dict(lr=1e-2)),
    StepKernel("quickprop", "quickprop", 2, dict(lr=1e-3)),
]
KERNEL_BY_LABEL = {k.label: k for k in KERNELS}
IMPLEMENTATIONS = ["fastopt", "reference", "numpy_out", "torch_fused", "torch_foreach", "roofline"]


def make_buffers(kernel: StepKernel, n: int, dtype, seed: int = 0) -> List[np.ndarray]:
    """p, g and the state arrays, with values of realistic magnitude."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    state = [np.abs(rng.standard_normal(n)).astype(dtype) * 1e-2 for _ in range(kernel.state)]
    if kernel.name == "rprop":
        state[1][:] = 1e-2  # step sizes
    return [p, g, *state]


def _torch_step(kernel: StepKernel, buffers, variant: str) -> Optional[Callable[[], None]]:
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
        opt = getattr(torch.optim, kernel.torch_class)([param], **kernel.torch_kwargs, **options)
        opt.step()  # creates the state (and fails here if torch lacks this variant on CPU)
    except (RuntimeError, ValueError, TypeError):
        return None
    return opt.step


def make_step(kernel: StepKernel, implementation: str, buffers) -> Optional[Callable[[], None]]:
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
        p, g, *state = buffers
        written, read = [p, *state], [g]
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


def measure(kernel: StepKernel, n: int, dtype, implementations=IMPLEMENTATIONS) -> Dict:
    """Median step time of every implementation (seconds; None if absent)."""
    itemsize = np.dtype(dtype).itemsize
    row = dict(kernel=kernel.label, dtype=np.dtype(dtype).name, n=n,
               bytes=kernel.bytes_per_step(n, itemsize), seconds={})
    budget = 0.25 if n <= 10**6 else 0.6
    for implementation in implementations:
        step = make_step(kernel, implementation, make_buffers(kernel, n, dtype))
        row["seconds"][implementation] = None if step is None else median_seconds(step, budget=budget)
    fast = make_step(kernel, "fastopt", make_buffers(kernel, n, dtype))
    row["fastopt_peak_bytes"] = peak_allocation(fast)
    return row


def ratios(row: Dict) -> Dict[str, Optional[float]]:
    """Other implementation's time / fastopt's time (> 1: fastopt is faster)."""
    fast = row["seconds"]["fastopt"]
    return {name: (t / fast if t else None) for name, t in row["seconds"].items() if name != "fastopt"}


def format_row(row: Dict) -> str:
    from .timing import format_seconds

    r = ratios(row)
    cell = lambda x: f"{x:8.2f}" if x else "       -"  # noqa: E731
    gbps = row["bytes"] / row["seconds"]["fastopt"] / 1e9
    return (f"{row['kernel']:<16}{row['dtype']:<8}{row['n']:>9}  {format_seconds(row['seconds']['fastopt']):>9}"
            f" {gbps:6.1f} {cell(r['roofline'])} {cell(r['reference'])} {cell(r['numpy_out'])}"
            f" {cell(r['torch_fused'])} {cell(r['torch_foreach'])}")


HEADER = (f"{'kernel':<16}{'dtype':<8}{'N':>9}  {'fastopt':>9} {'GB/s':>6} {'x roof':>8} {'vs ref':>8}"
          f" {'vs out=':>8} {'vs fused':>8} {'vs forea':>8}")
LEGEND = ("x roof = roofline time / fastopt time (1.0: at the memory limit); vs X = X's time / fastopt's "
          "(> 1: fastopt faster);\nfused/foreach = torch.optim with fused=True / foreach=True; - = not available.")
