"""Subnormal inputs: a step whose gradients and state are subnormal numbers
against the same step on ordinary numbers, in one run.

The kernels are compiled without flush-to-zero (results must equal the
reference's IEEE arithmetic), so subnormal operands take whatever the CPU's
microcode assist costs; this measures that cliff instead of hiding it."""

from __future__ import annotations

import numpy as np

from fastopt import functional as F

from .timing import format_seconds, median_seconds

N = 100_000
TINY = {np.float32: 1e-40, np.float64: 1e-310}  # subnormal in each dtype


# (label, functional, number of state arrays, hyperparameters)
CASES = [
    ("sgd momentum", F.sgd_, 1, dict(lr=1e-3, momentum=0.9, step=2)),
    ("adagrad", F.adagrad_, 1, dict(lr=1e-2, step=2)),
    ("rmsprop", F.rmsprop_, 1, dict(lr=1e-3)),
    ("adam", F.adam_, 2, dict(lr=1e-3, step=10)),
]


def _time(fn, n_state: int, hyper: dict, scale: float, dtype) -> float:
    rng = np.random.default_rng(0)
    p = rng.standard_normal(N).astype(dtype)
    g = (scale * rng.choice([-1.0, 1.0], N) * rng.uniform(1.0, 4.0, N)).astype(dtype)
    state = [np.abs(g) if k == 1 else g.copy() for k in range(n_state)]
    return median_seconds(lambda: fn(p, g, *state, **hyper))


def run_all() -> list[dict]:
    rows = []
    for dtype in (np.float32, np.float64):
        for label, fn, n_state, hyper in CASES:
            normal = _time(fn, n_state, hyper, 1e-3, dtype)
            subnormal = _time(fn, n_state, hyper, TINY[dtype], dtype)
            rows.append({"kernel": label, "dtype": np.dtype(dtype).name, "n": N, "normal": normal,
                         "subnormal": subnormal, "ratio": subnormal / normal})
    return rows


def report(rows: list[dict]) -> str:
    lines = [f"Subnormal gradients and state (N = {N:,}; ratio = subnormal time / ordinary time, one run):"]
    for r in rows:
        lines.append(f"  {r['kernel']:<14}{r['dtype']:<9}ordinary {format_seconds(r['normal']):>10}   "
                     f"subnormal {format_seconds(r['subnormal']):>10}   ratio {r['ratio']:.2f}")
    return "\n".join(lines)
