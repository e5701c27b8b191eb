"""The many-tensors case: an Adam step over many parameter arrays against one
flat array of the same total size.

A model's parameters are many arrays; fastopt updates all of them in one C++
call (one parallel region). This measures what the split costs compared with
one contiguous buffer, for the functional list call, the optimizer class, and
torch's fused Adam over the same tensors, in two cases:

* the ~200 arrays of mixed sizes of a small CNN (4.4M parameters);
* 200 arrays of 4096 elements (819,200 parameters), small enough that a
  step's fixed per-array cost shows: the class step should cost at most 1.1x
  the flat functional call.

The contenders are timed in turn, sample after sample (each sample a batch
of calls lasting at least 2 ms), and each gets the median of its samples: a
slow spell of the shared machine hits all of them alike, and the ratios come
from one run.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

import fastopt
from fastopt import functional as F

ROUNDS = 41  # samples per contender


def small_cnn_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of a small ResNet-like CNN: per block a 3x3 conv,
    batch-norm scale and shift, and a 1x1 shortcut every few blocks."""
    shapes: list[tuple[int, ...]] = []
    channels = [3] + [32] * 16 + [64] * 16 + [96] * 16 + [128] * 16
    for c_in, c_out in zip(channels, channels[1:]):
        shapes += [(c_out, c_in, 3, 3), (c_out,), (c_out,)]
        if c_in != c_out:
            shapes.append((c_out, c_in, 1, 1))
    shapes += [(10, 128), (10,)]
    return shapes


# (label, shapes, the target of the class step's cost over the flat call's)
CASES: list[tuple[str, Callable[[], list[tuple[int, ...]]], float | None]] = [
    ("small CNN", small_cnn_shapes, None),
    ("200 x 4096", lambda: [(4096,)] * 200, 1.1),
]


def interleaved_medians(fns: dict[str, Callable[[], None]], rounds: int,
                        min_sample: float = 2e-3) -> dict[str, float]:
    """Median seconds per call of each function, sampled round-robin."""
    inner = {}
    for name, fn in fns.items():
        fn()  # warm up: page in buffers, create state, settle the thread pool
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        inner[name] = max(1, int(min_sample / max(once, 1e-9)) + 1)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def _buffers(shapes, dtype, seed=0):
    """params, grads, exp_avgs, exp_avg_sqs (non-negative)."""
    rng = np.random.default_rng(seed)
    params, grads, exp_avgs, exp_avg_sqs = ([rng.standard_normal(s).astype(dtype) for s in shapes]
                                            for _ in range(4))
    for v in exp_avg_sqs:
        np.abs(v, out=v)
    return params, grads, exp_avgs, exp_avg_sqs


def _torch_fused_step(params, grads) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    tparams = [torch.from_numpy(p.copy()) for p in params]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.from_numpy(g)
    return torch.optim.Adam(tparams, lr=1e-3, fused=True).step


def run(case: str, shapes: list[tuple[int, ...]], target: float | None = None,
        dtype=np.float32, rounds: int | None = None) -> dict:
    """Adam over `shapes` as a list call, a class step and torch's fused step,
    and over one flat array of the same total size (`rounds` samples each,
    ROUNDS by default)."""
    rounds = rounds or ROUNDS
    total = int(sum(np.prod(s) for s in shapes))
    kwargs = dict(lr=1e-3, step=10)
    params, grads, exp_avgs, exp_avg_sqs = _buffers(shapes, dtype)
    flat = [b[0] for b in _buffers([(total,)], dtype, seed=1)]
    opt = fastopt.optim.Adam([p.copy() for p in params], lr=1e-3)
    fns = dict(flat=lambda: F.adam_(*flat, **kwargs),
               functional_list=lambda: F.adam_(params, grads, exp_avgs, exp_avg_sqs, **kwargs),
               optimizer_class=lambda: opt.step(grads))
    torch_step = _torch_fused_step(params, grads)
    if torch_step is not None:
        fns["torch_fused"] = torch_step
    seconds = interleaved_medians(fns, rounds)
    seconds.setdefault("torch_fused", None)
    return dict(case=f"many-tensors ({case})", dtype=np.dtype(dtype).name, arrays=len(shapes),
                total=total, rounds=rounds, seconds=seconds, target=target,
                class_over_flat=seconds["optimizer_class"] / seconds["flat"])


def run_all(dtype=np.float32) -> list[dict]:
    return [run(case, shapes(), target, dtype) for case, shapes, target in CASES]


def report(row: dict) -> str:
    s = row["seconds"]
    lines = [f"{row['case']}: {row['arrays']} arrays, {row['total']:,} {row['dtype']} parameters, Adam "
             f"(medians of {row['rounds']} interleaved samples)",
             f"  one flat array          {s['flat'] * 1e6:9.1f} us",
             f"  functional, list call   {s['functional_list'] * 1e6:9.1f} us  "
             f"({s['functional_list'] / s['flat']:.2f}x the flat call)",
             f"  fastopt.optim.Adam.step {s['optimizer_class'] * 1e6:9.1f} us  "
             f"({s['optimizer_class'] / s['flat']:.2f}x the flat call)"]
    if s.get("torch_fused"):
        lines.append(f"  torch Adam(fused=True)  {s['torch_fused'] * 1e6:9.1f} us  "
                     f"({s['torch_fused'] / s['functional_list']:.1f}x fastopt's list call)")
    if row.get("target"):
        verdict = "met" if row["class_over_flat"] <= row["target"] else "NOT met"
        lines.append(f"  class step / flat call = {row['class_over_flat']:.3f}x "
                     f"(target <= {row['target']}x: {verdict})")
    return "\n".join(lines)
