"""python -m bench torch: fastopt.torch against torch.optim on CPU tensors.

AdamW (lr 1e-3, weight_decay 1e-2) on one flat parameter of N elements, N =
1e5 .. 1e8, in float32 and in bfloat16:

* ``torch fused`` / ``torch foreach``: ``torch.optim.AdamW(fused=True)`` /
  ``(foreach=True)``; in bfloat16 torch keeps its moments in bfloat16.
* ``fastopt.torch``: ``fastopt.torch.AdamW``; in bfloat16 with each write-back
  mode (``nearest``, ``stochastic``, ``split`` and ``float32`` masters),
  always with float32 moments.
* ``DeepSpeedCPUAdam``: when deepspeed is installed and its CPU Adam op builds
  on this machine (skipped with a line otherwise).

Beside each row: the bytes the step must move per parameter (read + written,
from the dtypes of the parameter, gradient, state and master), the bandwidth
it reached, and the fraction of the roofline: the time the roofline kernel
(one pass reading and writing float32 arrays with trivial math, sampled in
the same interleaved rounds) needs for the same number of bytes. Then a many-tensor model (a CNN-and-MLP's ~200
parameters). Medians of interleaved samples; ratios are what compares.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import fastopt

# Bytes read + written per parameter by an AdamW step (two moments), per
# implementation and parameter dtype: parameter read and written, gradient
# read, each moment read and written, a master read and written.
MOMENTS = 2


def bytes_per_param(param: int, grad: int, state: int, master: int = 0, param_read: bool = True) -> int:
    return (param if param_read else 0) + param + grad + MOMENTS * 2 * state + 2 * master


# (label, parameter dtype, how to build it, bytes per parameter)
def implementations(dtype: str):
    if dtype == "float32":
        return [("torch fused", "float32", dict(fused=True), bytes_per_param(4, 4, 4)),
                ("torch foreach", "float32", dict(foreach=True), bytes_per_param(4, 4, 4)),
                ("fastopt.torch", "float32", dict(), bytes_per_param(4, 4, 4)),
                ("DeepSpeedCPUAdam", "float32", None, bytes_per_param(4, 4, 4))]
    return [("torch fused", "bfloat16", dict(fused=True), bytes_per_param(2, 2, 2)),
            ("torch foreach", "bfloat16", dict(foreach=True), bytes_per_param(2, 2, 2)),
            ("fastopt.torch nearest", "bfloat16", dict(), bytes_per_param(2, 2, 4)),
            ("fastopt.torch stochastic", "bfloat16", dict(rounding="stochastic"), bytes_per_param(2, 2, 4)),
            ("fastopt.torch split", "bfloat16", dict(master_weights="split"), bytes_per_param(2, 2, 4, 2)),
            ("fastopt.torch float32", "bfloat16", dict(master_weights="float32"),
             bytes_per_param(2, 2, 4, 4, param_read=False))]


def interleaved_medians(steps: dict, seconds: float = 1.0, min_rounds: int = 5) -> dict:
    """Median seconds per call of each step, sampled in interleaved rounds
    (so a noisy neighbour hits every implementation alike)."""
    samples = {k: [] for k in steps}
    for fn in steps.values():
        fn()
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < min_rounds or time.perf_counter() < deadline:
        for k, fn in steps.items():
            start = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - start)
        rounds += 1
        if rounds >= 200:
            break
    return {k: statistics.median(v) for k, v in samples.items()}


ROOFLINE = "roofline"


def roofline_step(torch, n: int):
    """The roofline kernel over AdamW's float32 arrays (parameter and two
    moments read and written, gradient read): 28 bytes per element. The
    arrays are torch's, like the steps': torch's allocator does not ask for
    transparent huge pages (unless THP_MEM_ALLOC_ENABLE=1), and on 4 KiB
    pages the same pass measured 1.16x slower here than on NumPy's arrays."""
    arrays = [torch.ones(n).numpy() for _ in range(4)]
    return lambda: fastopt._core.roofline(arrays[:3], arrays[3:])


def build(torch, label: str, dtype: str, options, n: int):
    """A step function over a fresh parameter (and its gradient), or a reason it is unavailable."""
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(n, generator=generator).to(torch_dtype)
    param.grad = (torch.randn(n, generator=generator) * 1e-2).to(torch_dtype)
    if label == "DeepSpeedCPUAdam":
        try:
            from deepspeed.ops.adam import DeepSpeedCPUAdam
            opt = DeepSpeedCPUAdam([param], lr=1e-3, weight_decay=1e-2, adamw_mode=True)
        except Exception as exc:  # not installed, or its C++ op does not build here
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    elif label.startswith("torch"):
        opt = torch.optim.AdamW([param], lr=1e-3, weight_decay=1e-2, **options)
    else:
        import fastopt.torch as fastopt_torch
        opt = fastopt_torch.AdamW([param], lr=1e-3, weight_decay=1e-2, **options)
    opt.step()
    return opt.step


def flat_rows(torch, sizes, dtypes) -> list[dict]:
    rows = []
    print(f"{'AdamW':<36}{'N':>8}{'time':>11}{'B/param':>9}{'GB/s':>8}{'x roofline':>11}"
          f"{'vs torch fused':>16}{'vs torch foreach':>18}")
    for dtype in dtypes:
        for n in sizes:
            steps, reasons, moved = {ROOFLINE: roofline_step(torch, n)}, {}, {}
            for label, param_dtype, options, per_param in implementations(dtype):
                step = build(torch, label, param_dtype, options, n)
                if isinstance(step, str):
                    reasons[label] = step
                else:
                    steps[label], moved[label] = step, per_param
            seconds = interleaved_medians(steps)  # the roofline sampled with the others, alike
            bandwidth = bytes_per_param(4, 4, 4) * n / seconds.pop(ROOFLINE)
            fused, foreach = seconds.get("torch fused"), seconds.get("torch foreach")
            for label, s in seconds.items():
                row = dict(dtype=dtype, n=n, implementation=label, seconds=s, bytes_per_param=moved[label],
                           gbps=moved[label] * n / s / 1e9, roofline=moved[label] * n / bandwidth / s,
                           vs_fused=fused / s if fused else None, vs_foreach=foreach / s if foreach else None)
                rows.append(row)
                print(f"{label + ' (' + dtype + ')':<36}{n:>8.0e}{fastopt_seconds(s):>11}{moved[label]:>9}"
                      f"{row['gbps']:>8.1f}{row['roofline']:>11.2f}{row['vs_fused'] or 0:>15.2f}x"
                      f"{row['vs_foreach'] or 0:>17.2f}x", flush=True)
            for label, why in reasons.items():
                print(f"{label + ' (' + dtype + ')':<36}{n:>8.0e}  skipped: {why}", flush=True)
            del steps
    return rows


def fastopt_seconds(s: float) -> str:
    from .timing import format_seconds
    return format_seconds(s)


def many_tensor_model(torch):
    """~200 parameters: 24 blocks of conv (weight, bias), batch norm (weight,
    bias) and two linear layers, a typical small model's mix of shapes."""
    layers = []
    for _ in range(24):
        layers += [torch.nn.Conv2d(64, 64, 3), torch.nn.BatchNorm2d(64), torch.nn.Linear(256, 256),
                   torch.nn.Linear(256, 64)]
    return torch.nn.ModuleList(layers)


def many_tensor_rows(torch) -> list[dict]:
    rows = []
    for dtype in ("float32", "bfloat16"):
        steps = {}
        for label, options in (("torch fused", dict(fused=True)), ("torch foreach", dict(foreach=True)),
                               ("fastopt.torch", {})):
            model = many_tensor_model(torch).to(getattr(torch, dtype))
            for p in model.parameters():
                p.grad = torch.full_like(p, 1e-3)
            if label == "fastopt.torch":
                import fastopt.torch as fastopt_torch
                opt = fastopt_torch.AdamW(model.parameters(), lr=1e-3)
            else:
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **options)
            steps[label] = opt.step
        n_params = sum(p.numel() for p in model.parameters())
        n_arrays = len(list(model.parameters()))
        seconds = interleaved_medians(steps)
        print(f"\nmany-tensor model ({dtype}): {n_arrays} arrays, {n_params:,} parameters, AdamW")
        for label, s in seconds.items():
            print(f"  {label:<16}{fastopt_seconds(s):>10}   {seconds['torch fused'] / s:.2f}x torch fused,"
                  f" {seconds['torch foreach'] / s:.2f}x torch foreach")
            rows.append(dict(dtype=dtype, arrays=n_arrays, params=n_params, implementation=label, seconds=s))
    return rows


def main(sizes, dtypes, json_path) -> int:
    try:
        import torch
    except ImportError:
        print("python -m bench torch needs torch (pip install torch==2.13.0)")
        return 1
    info = fastopt.runtime_info()
    print(f"fastopt {info['version']} | SIMD: {info['simd_target']} | {info['num_threads']} threads | "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    rows = flat_rows(torch, sizes, dtypes)
    many = many_tensor_rows(torch)
    print("\nB/param: bytes read + written per parameter; x roofline: the roofline kernel's time for "
          "those bytes / the step's time (1.0 = memory bound at the roofline).")
    if json_path:
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump({"runtime": info, "torch": torch.__version__, "rows": rows, "many_tensors": many}, f,
                      indent=1)
        print(f"wrote {json_path}")
    return 0
