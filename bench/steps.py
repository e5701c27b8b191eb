"""Step time of every fused kernel against the plain-NumPy reference.

Each kernel is timed on the same buffers as its reference twin (state arrays
of realistic magnitude; the update is applied for real at every call, so the
timed work is exactly one training step). Reported: median time per step,
throughput in bytes moved per second (the bytes a fused single pass must
read and write), and the speedup over the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from fastopt import functional as F
from fastopt import reference as R

from .timing import format_seconds, median_seconds


@dataclass(frozen=True)
class StepKernel:
    label: str
    name: str             # functional / reference name without the underscore
    state: int            # state buffers passed positionally
    kwargs: Dict
    streams: int          # arrays a fused pass reads or writes, counted per direction

    def bytes_per_step(self, n: int, itemsize: int) -> int:
        return self.streams * n * itemsize


# streams: reads (p, g, each state) + writes (p, each written state)
KERNELS = [
    StepKernel("sgd-momentum", "sgd", 1, dict(lr=1e-3, momentum=0.9, step=2), 5),
    StepKernel("adagrad", "adagrad", 1, dict(lr=1e-2, step=2), 5),
    StepKernel("rmsprop", "rmsprop", 1, dict(lr=1e-3), 5),
    StepKernel("adam", "adam", 2, dict(lr=1e-3, step=10), 7),
    StepKernel("adamw-amsgrad", "adamw", 3, dict(lr=1e-3, amsgrad=True, step=10), 9),
    StepKernel("rprop (irprop-)", "rprop", 2, dict(), 7),
    StepKernel("quickprop", "quickprop", 2, dict(lr=1e-3), 7),
]


def make_buffers(kernel: StepKernel, n: int, dtype) -> List[np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    state = [np.abs(rng.standard_normal(n)).astype(dtype) * 1e-2 for _ in range(kernel.state)]
    return [p, g, *state]


def run(sizes, dtypes, out=print) -> List[Dict]:
    rows = []
    out(f"{'kernel':<17}{'dtype':<9}{'N':>9}  {'fastopt':>10}  {'GB/s':>6}  {'reference':>10}  {'speedup':>8}")
    for kernel in KERNELS:
        for dtype in dtypes:
            for n in sizes:
                buffers = make_buffers(kernel, n, dtype)
                fast, ref = getattr(F, kernel.name + "_"), getattr(R, kernel.name + "_")
                t_fast = median_seconds(lambda: fast(*buffers, **kernel.kwargs))
                t_ref = median_seconds(lambda: ref(*buffers, **kernel.kwargs))
                gbps = kernel.bytes_per_step(n, np.dtype(dtype).itemsize) / t_fast / 1e9
                row = dict(kernel=kernel.label, dtype=np.dtype(dtype).name, n=n, fastopt_s=t_fast,
                           reference_s=t_ref, speedup=t_ref / t_fast, fastopt_gbps=gbps)
                rows.append(row)
                out(f"{kernel.label:<17}{row['dtype']:<9}{n:>9}  {format_seconds(t_fast):>10}  "
                    f"{gbps:>6.1f}  {format_seconds(t_ref):>10}  {row['speedup']:>7.1f}x")
    return rows


def markdown(rows: List[Dict]) -> str:
    """A kernel x N table of fastopt time and speedup over the reference."""
    sizes = sorted({r["n"] for r in rows})
    lines = ["| kernel | dtype | " + " | ".join(f"N = {n:.0e}".replace("e+0", "e") for n in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    keys = list(dict.fromkeys((r["kernel"], r["dtype"]) for r in rows))
    for kernel, dtype in keys:
        cells = {r["n"]: r for r in rows if r["kernel"] == kernel and r["dtype"] == dtype}
        lines.append(f"| {kernel} | {dtype} | " + " | ".join(
            f"{format_seconds(cells[n]['fastopt_s'])} ({cells[n]['speedup']:.1f}x)" if n in cells else ""
            for n in sizes) + " |")
    return "\n".join(lines)
