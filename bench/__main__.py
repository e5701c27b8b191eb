"""python -m bench [steps|lbfgs] [--sizes ...] [--json PATH]

Times every fused optimizer step against the plain-NumPy reference, float32
and float64, and prints a table of medians and ratios (one run: ratios are
meaningful, absolute times only on this machine at this moment).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

import fastopt

from . import steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="steps", choices=["steps", "lbfgs"],
                        help="which benchmark (default: steps)")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e4, 1e5, 1e6],
                        help="element counts N (default: 1e3 1e4 1e5 1e6)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--json", default=None,
                        help="where to write the results as JSON (default bench/results/WHAT.json; '' to skip)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = os.path.join("bench", "results", f"{args.what}.json")
    if args.what == "lbfgs":
        from . import lbfgs
        lbfgs.main([int(n) for n in args.sizes], [np.dtype(d).type for d in args.dtypes], args.json)
        return 0

    info = fastopt.runtime_info()
    print(f"fastopt {info['version']} | kernels: {info['kernel_target']} | OpenMP: {info['openmp']} "
          f"({info['max_threads']} threads) | numpy {np.__version__} | {platform.machine()} "
          f"{os.cpu_count()} CPUs")
    print("Median time per step; GB/s = bytes a fused single pass moves / time; "
          "speedup = reference time / fastopt time.\n")
    rows = steps.run([int(n) for n in args.sizes], [np.dtype(d).type for d in args.dtypes])
    if args.markdown:
        print("\n" + steps.markdown(rows))
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"runtime": info, "numpy": np.__version__, "rows": rows}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
