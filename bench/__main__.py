"""python -m bench [steps|lbfgs|torch|8bit|distributed] [options]

steps (default): times every fused optimizer step, float32 and float64, at
N = 1e3 .. 1e7, against plain NumPy (fastopt.reference), careful in-place
NumPy (out=), torch.optim fused and foreach (when torch is installed) and the
roofline kernel that moves the same bytes with trivial math. Then the
many-tensors cases (a small CNN's ~200 arrays, and 200 arrays of 4096, vs one
flat array; the class step's cost over the flat call's), a step on subnormal
gradients and state against ordinary ones, and the peak memory a step
allocates. `torch`: fastopt.torch against torch.optim (bench/vs_torch.py).
`8bit`: AdamW with 8-bit (blockwise quantized) state against float32 state,
the roofline of its bytes and bitsandbytes' AdamW8bit, and the parameters'
error after 200 steps (bench/state8bit.py; not part of the default run,
which already takes many minutes). `distributed`: ZeroRedundancyOptimizer
and the distributed L-BFGS on 1, 2 and 4 MPI ranks (bench/distributed.py;
it starts mpiexec itself, or measures one p under `mpiexec -n p`).
Prints medians and ratios (from one run: the ratios are what means
something), writes JSON and a PNG (with matplotlib). A kernel whose
fastopt.functional function does not exist (yet) is skipped with a line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

import fastopt

from . import many_tensors, plot, steps, subnormal
from .timing import format_seconds


def run_steps(args) -> int:
    info = fastopt.runtime_info()
    print(f"fastopt {info['version']} | SIMD: {info['simd_target']} (compiled: {', '.join(info['compiled_targets'])})"
          f" | OpenMP: {info['openmp']} ({info['num_threads']} threads) | numpy {np.__version__}"
          f" | {platform.machine()}, {os.cpu_count()} CPUs")
    try:
        import torch
        print(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        print("torch not installed: torch columns are empty")
    print(steps.LEGEND + "\n")
    print(steps.HEADER)
    kernels = [steps.KERNEL_BY_LABEL[k] for k in args.kernels] if args.kernels else steps.KERNELS
    rows = []
    for kernel in kernels:
        if not steps.available(kernel):
            print(f"{kernel.label:<16}skipped: fastopt.functional.{kernel.name}_ does not exist (yet)", flush=True)
            continue
        for dtype in args.dtypes:
            for n in args.sizes:
                row = steps.measure(kernel, int(n), np.dtype(dtype).type)
                rows.append(row)
                print(steps.format_row(row), flush=True)

    many = many_tensors.run_all(np.float32)
    for case in many:
        print("\n" + many_tensors.report(case))

    subnormal_rows = subnormal.run_all()
    print("\n" + subnormal.report(subnormal_rows))

    print("\nPeak memory allocated during one fastopt step (tracemalloc):")
    peaks, arrays = {}, {}
    for row in rows:
        peaks.setdefault(row["n"], []).append(row["fastopt_peak_bytes"])
        arrays.setdefault(row["n"], []).append(row["array_bytes"])
    for n, values in sorted(peaks.items()):
        print(f"  N = {n:>9}: at most {max(values)} bytes (the step's arrays alone are >= {min(arrays[n]):,} bytes)")

    if args.markdown:
        print("\n" + markdown(rows))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"runtime": info, "numpy": np.__version__, "rows": rows, "many_tensors": many,
                       "subnormal": subnormal_rows}, f, indent=1)
        print(f"\nwrote {args.json}")
        png = os.path.splitext(args.json)[0] + ".png"
        if plot.throughput_png(rows, png):
            print(f"wrote {png}")
        else:
            print("matplotlib not installed: no figure (pip install matplotlib)")
    return 0


def markdown(rows) -> str:
    """Markdown table: fastopt time, fraction of the roofline, speedups."""
    out = ["| kernel | dtype | N | fastopt | x roofline | vs NumPy | vs NumPy out= | vs torch fused "
           "| vs torch foreach |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        r = steps.ratios(row)
        cell = lambda x: f"{x:.2f}" if x else "-"  # noqa: E731
        out.append(f"| {row['kernel']} | {row['dtype']} | {row['n']:.0e} | "
                   f"{format_seconds(row['seconds']['fastopt'])} | "
                   f"{cell(r['roofline'])} | {cell(r['reference'])} | {cell(r['numpy_out'])} | "
                   f"{cell(r['torch_fused'])} | {cell(r['torch_foreach'])} |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="steps",
                        choices=["steps", "lbfgs", "torch", "8bit", "distributed"],
                        help="which benchmark (default: steps; lbfgs: fastopt.minimize vs SciPy L-BFGS-B; "
                             "torch: fastopt.torch vs torch.optim in float32 and bfloat16; 8bit: AdamW with "
                             "8-bit state vs 32-bit, the roofline and bitsandbytes, N = 1e5 1e6 1e7 in "
                             "float32 and a bfloat16 row at the largest N; distributed: ZeroRedundancyOptimizer "
                             "and the distributed L-BFGS on 1, 2 and 4 MPI ranks, bench/distributed.py)")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e4, 1e5, 1e6, 1e7],
                        help="element counts N (default: 1e3 1e4 1e5 1e6 1e7)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--kernels", nargs="+", choices=[k.label for k in steps.KERNELS],
                        help="a subset of kernels (default: all)")
    parser.add_argument("--quick", action="store_true", help="N = 1e3 1e5 only, float32: a smoke run")
    parser.add_argument("--json", default=None,
                        help="results as JSON (default bench/results/WHAT.json), and a PNG beside it "
                             "('' to skip both)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = os.path.join("bench", "results", f"{args.what}.json")
    if args.what == "lbfgs":
        from . import lbfgs

        sizes = args.sizes if args.sizes != parser.get_default("sizes") else [1e3, 1e4, 1e5, 1e6]
        lbfgs.main([int(n) for n in sizes], [np.dtype(d).type for d in args.dtypes], args.json)
        return 0
    if args.what == "torch":
        from . import vs_torch

        sizes = args.sizes if args.sizes != parser.get_default("sizes") else [1e5, 1e6, 1e7, 1e8]
        dtypes = args.dtypes if args.dtypes != parser.get_default("dtypes") else ["float32", "bfloat16"]
        if args.quick:
            sizes = [1e5]
        return vs_torch.main([int(n) for n in sizes], dtypes, args.json)
    if args.what == "distributed":
        from . import distributed

        return distributed.main(args.json, args.quick)
    if args.what == "8bit":
        from . import state8bit

        sizes = args.sizes if args.sizes != parser.get_default("sizes") else state8bit.SIZES
        dtypes = args.dtypes if args.dtypes != parser.get_default("dtypes") else ["float32", "bfloat16"]
        if args.quick:
            sizes, dtypes = [1e5], ["float32"]
        return state8bit.main([int(n) for n in sizes], dtypes, args.json)
    if args.quick:
        args.sizes, args.dtypes = [1e3, 1e5], ["float32"]
    return run_steps(args)


if __name__ == "__main__":
    sys.exit(main())
