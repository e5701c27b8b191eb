"""The many-tensors case: a step over the ~200 parameter arrays of a small
CNN, against one flat array of the same total size.

A model's parameters are many arrays of mixed sizes; fastopt updates all of
them in one C++ call (one parallel region). This measures what the split
costs compared with one contiguous buffer, for the functional list call, the
optimizer class, and torch's fused Adam over the same tensors.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

import fastopt
from fastopt import functional as F

from .timing import median_seconds


def small_cnn_shapes() -> List[Tuple[int, ...]]:
    """Parameter shapes of a small ResNet-like CNN: per block a 3x3 conv,
    batch-norm scale and shift, and a 1x1 shortcut every few blocks."""
    shapes: List[Tuple[int, ...]] = []
    channels = [3] + [32] * 16 + [64] * 16 + [96] * 16 + [128] * 16
    for c_in, c_out in zip(channels, channels[1:]):
        shapes += [(c_out, c_in, 3, 3), (c_out,), (c_out,)]
        if c_in != c_out:
            shapes.append((c_out, c_in, 1, 1))
    shapes += [(10, 128), (10,)]
    return shapes


def _buffers(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]


def run(dtype=np.float32) -> Dict:
    shapes = small_cnn_shapes()
    total = int(sum(np.prod(s) for s in shapes))
    kwargs = dict(lr=1e-3, step=10)

    params, grads, exp_avgs, exp_avg_sqs = _buffers(shapes, dtype)
    for v in exp_avg_sqs:
        np.abs(v, out=v)
    t_list = median_seconds(lambda: F.adam_(params, grads, exp_avgs, exp_avg_sqs, **kwargs))

    flat = [np.abs(np.random.default_rng(1).standard_normal(total)).astype(dtype) for _ in range(4)]
    t_flat = median_seconds(lambda: F.adam_(*flat, **kwargs))

    cls_params = [p.copy() for p in params]
    opt = fastopt.optim.Adam(cls_params, lr=1e-3)
    opt.step(grads)
    t_class = median_seconds(lambda: opt.step(grads))

    row = dict(case="many-tensors (small CNN)", dtype=np.dtype(dtype).name, arrays=len(shapes), total=total,
               seconds=dict(functional_list=t_list, flat=t_flat, optimizer_class=t_class))
    try:
        import torch

        tparams = [torch.from_numpy(p.copy()) for p in params]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g)
        topt = torch.optim.Adam(tparams, lr=1e-3, fused=True)
        topt.step()
        row["seconds"]["torch_fused"] = median_seconds(topt.step)
    except ImportError:
        row["seconds"]["torch_fused"] = None
    return row


def report(row: Dict) -> str:
    s = row["seconds"]
    lines = [f"{row['case']}: {row['arrays']} arrays, {row['total']:,} {row['dtype']} parameters, Adam",
             f"  one flat array          {s['flat'] * 1e6:9.1f} us",
             f"  functional, list call   {s['functional_list'] * 1e6:9.1f} us  "
             f"({s['functional_list'] / s['flat']:.2f}x the flat call)",
             f"  fastopt.optim.Adam.step {s['optimizer_class'] * 1e6:9.1f} us  "
             f"({s['optimizer_class'] / s['flat']:.2f}x the flat call)"]
    if s.get("torch_fused"):
        lines.append(f"  torch Adam(fused=True)  {s['torch_fused'] * 1e6:9.1f} us  "
                     f"({s['torch_fused'] / s['functional_list']:.1f}x fastopt's list call)")
    return "\n".join(lines)
