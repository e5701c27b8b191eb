"""python -m bench distributed: fastopt.distributed over MPI ranks.

Without mpiexec, runs itself under ``mpiexec -n p`` for p = 1, 2, 4 and
prints one table; under ``mpiexec -n p python -m bench distributed`` it
measures that p only. Per p, on this rank layout:

ZeroRedundancyOptimizer (AdamW, float32, a model of N parameters in three
arrays of uneven sizes), per rank and step:

* bytes sent and received (what the step hands to MPI: the all-to-all of the
  reduction and the allgather, padding included) beside the allreduce lower
  bound ``2 (p-1)/p * N * b``;
* optimizer-state bytes on this rank beside the single-process state;
* time per step (median over steps), split into communication (inside MPI
  calls, waits included) and compute (the ordered sums and the fused step);
  with ``overlap`` on and off; beside the naive data-parallel step, MPI's
  Allreduce of the whole gradient then the whole AdamW step on every rank
  (every rank keeping the whole state).

Distributed L-BFGS (``fastopt.minimize(..., comm=comm)``, extended
Rosenbrock of n variables split by ``fastopt.distributed.slice_of``): time
per iteration, the part spent combining the dot products (the only
communication besides the objective's own), bytes per iteration, and the
stored pairs' bytes per rank beside the single-process solver's.

Each rank runs its kernels on cpu_count // p threads (at least one). On a
machine with fewer cores than ranks the ranks share cores: times at p = 4 on
2 cores measure oversubscription as much as the method.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

RANKS = (1, 2, 4)
ZERO_SIZES = (10**6, 10**7)
LBFGS_SIZES = (10**6,)
STEPS, WARMUP = 10, 3
# --quick: a smoke run (1 and 2 ranks, small sizes).
QUICK_RANKS, QUICK_ZERO_SIZES, QUICK_LBFGS_SIZES = (1, 2), (10**4,), (2 * 4096 * 2,)


def under_mpiexec() -> bool:
    return any(v in os.environ for v in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "HYDI_CONTROL_FD"))


def model_shapes(n: int) -> list[tuple[int, ...]]:
    """Three arrays of uneven sizes, n elements in all: a matrix, a vector, an odd remainder."""
    rows = int(math.sqrt(0.6 * n))
    first = (rows, rows)
    second = (int(0.3 * n),)
    return [first, second, (n - rows * rows - second[0],)]


def median(values) -> float:
    return float(np.median(values))


def bench_zero(comm, n: int, overlap: bool) -> dict:
    import fastopt
    from fastopt.distributed import ZeroRedundancyOptimizer

    rng = np.random.default_rng(comm.rank)
    params = [rng.standard_normal(s).astype(np.float32) for s in model_shapes(n)]
    zero = ZeroRedundancyOptimizer(params, fastopt.AdamW, comm, overlap=overlap, lr=1e-3)
    for view in zero.grads:
        view[...] = rng.standard_normal(view.shape).astype(np.float32)
    times, comm_times = [], []
    for k in range(WARMUP + STEPS):
        comm.Barrier()
        start = time.perf_counter()
        zero.step(zero.grads)
        elapsed = time.perf_counter() - start
        if k >= WARMUP:
            times.append(elapsed)
            comm_times.append(zero.last_timings["communication"])
    traffic = zero.communication_bytes()
    return {"n": n, "overlap": overlap, "seconds": median(times), "communication_seconds": median(comm_times),
            "sent": traffic["sent"], "received": traffic["received"], "state_bytes": zero.state_bytes(),
            "single_state_bytes": 2 * n * 4}


def bench_allreduce_baseline(comm, n: int) -> dict:
    """Plain data parallelism: Allreduce the gradient (MPI's algorithm), then every rank steps everything."""
    from mpi4py import MPI

    import fastopt

    rng = np.random.default_rng(comm.rank)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    opt = fastopt.AdamW([p], lr=1e-3)
    total = np.empty_like(g)
    times, comm_times = [], []
    for k in range(WARMUP + STEPS):
        comm.Barrier()
        start = time.perf_counter()
        comm.Allreduce(g, total, op=MPI.SUM)
        middle = time.perf_counter()
        total /= np.float32(comm.size)
        opt.step([total])
        end = time.perf_counter()
        if k >= WARMUP:
            times.append(end - start)
            comm_times.append(middle - start)
    return {"n": n, "seconds": median(times), "communication_seconds": median(comm_times),
            "state_bytes": 2 * n * 4}


def bench_lbfgs(comm, n: int) -> dict:
    import fastopt
    from fastopt.distributed import slice_of
    from fastopt.distributed._collectives import rank_ordered_sums

    part = slice_of(n, comm)
    x0 = np.tile([-1.2, 1.0], n // 2)[part].copy()
    objective_seconds = [0.0]

    def fun(x):
        start = time.perf_counter()
        terms = 100.0 * (x[1::2] - x[::2] ** 2) ** 2 + (1.0 - x[::2]) ** 2
        g = np.empty_like(x)
        g[::2] = -400.0 * x[::2] * (x[1::2] - x[::2] ** 2) - 2.0 * (1.0 - x[::2])
        g[1::2] = 200.0 * (x[1::2] - x[::2] ** 2)
        f = float(rank_ordered_sums(comm, np.array([terms.sum()]))[0])
        objective_seconds[0] += time.perf_counter() - start
        return f, g

    comm.Barrier()
    start = time.perf_counter()
    res = fastopt.minimize(fun, x0, comm=comm, options={"maxiter": 30, "gtol": 0.0, "ftol": 0.0})
    elapsed = time.perf_counter() - start
    traffic = res.communication
    m = 10
    local = part.stop - part.start
    return {"n": n, "nit": int(res.nit), "seconds_per_iteration": elapsed / max(1, res.nit),
            "combine_seconds_per_iteration": traffic["seconds"] / max(1, res.nit),
            "objective_seconds_per_iteration": objective_seconds[0] / max(1, res.nit),
            "bytes_per_iteration": (traffic["sent"] + traffic["received"]) / max(1, res.nit),
            "combines_per_iteration": traffic["calls"] / max(1, res.nit),
            "pair_bytes": 2 * (m + 1) * local * 8, "single_pair_bytes": 2 * (m + 1) * n * 8}


def worker(quick: bool) -> dict:
    from mpi4py import MPI

    import fastopt

    comm = MPI.COMM_WORLD
    # The ranks share the machine's cores: each gets its share of kernel threads
    # (more would have OpenMP threads of different ranks fighting for a core).
    threads = max(1, (os.cpu_count() or 1) // comm.size)
    fastopt.set_num_threads(threads)
    out = {"p": comm.size, "threads_per_rank": threads, "zero": [], "allreduce": [], "lbfgs": []}
    for n in QUICK_ZERO_SIZES if quick else ZERO_SIZES:
        for overlap in (True, False):
            out["zero"].append(gather_worst(comm, bench_zero(comm, n, overlap)))
        out["allreduce"].append(gather_worst(comm, bench_allreduce_baseline(comm, n)))
    for n in QUICK_LBFGS_SIZES if quick else LBFGS_SIZES:
        out["lbfgs"].append(gather_worst(comm, bench_lbfgs(comm, n)))
    return out if comm.rank == 0 else None


def gather_worst(comm, row: dict) -> dict:
    """The slowest rank's times and the largest per-rank bytes (what bounds a step)."""
    rows = comm.gather(row, root=0)
    if comm.rank != 0:
        return row
    return {key: (max(r[key] for r in rows) if isinstance(value, (int, float)) and not isinstance(value, bool)
                  else value) for key, value in row.items()}


def report(results: list[dict]) -> str:
    lines = ["ZeroRedundancyOptimizer, AdamW float32, per rank and step (worst rank):",
             f"{'p':>2} {'N':>9} {'overlap':>7} {'sent MB':>9} {'bound MB':>9} {'ratio':>6} "
             f"{'state MB':>9} {'/single':>8} {'step ms':>8} {'comm ms':>8} {'compute ms':>10} "
             f"{'allreduce+step ms':>17}"]
    for result in results:
        p = result["p"]
        baseline = {row["n"]: row for row in result["allreduce"]}
        for row in result["zero"]:
            n = row["n"]
            bound = 2 * (p - 1) / p * n * 4
            ratio = row["sent"] / bound if bound else float("nan")
            lines.append(f"{p:>2} {n:>9.0e} {str(row['overlap']):>7} {row['sent'] / 1e6:>9.2f} {bound / 1e6:>9.2f} "
                         f"{ratio:>6.3f} {row['state_bytes'] / 1e6:>9.2f} "
                         f"{row['state_bytes'] / row['single_state_bytes']:>8.4f} {row['seconds'] * 1e3:>8.2f} "
                         f"{row['communication_seconds'] * 1e3:>8.2f} "
                         f"{(row['seconds'] - row['communication_seconds']) * 1e3:>10.2f} "
                         f"{baseline[n]['seconds'] * 1e3:>17.2f}")
    lines += ["", "Distributed L-BFGS, extended Rosenbrock (m = 10), per iteration (worst rank):",
              f"{'p':>2} {'n':>9} {'iter ms':>8} {'combine ms':>10} {'objective ms':>12} {'KB':>8} "
              f"{'combines':>8} {'pairs MB':>9} {'/single':>8}"]
    for result in results:
        for row in result["lbfgs"]:
            lines.append(f"{result['p']:>2} {row['n']:>9.0e} {row['seconds_per_iteration'] * 1e3:>8.2f} "
                         f"{row['combine_seconds_per_iteration'] * 1e3:>10.3f} "
                         f"{row['objective_seconds_per_iteration'] * 1e3:>12.2f} "
                         f"{row['bytes_per_iteration'] / 1e3:>8.1f} {row['combines_per_iteration']:>8.1f} "
                         f"{row['pair_bytes'] / 1e6:>9.1f} {row['pair_bytes'] / row['single_pair_bytes']:>8.4f}")
    return "\n".join(lines)


def main(json_path: str | None, quick: bool = False) -> int:
    if under_mpiexec():
        result = worker(quick)
        if result is not None:
            print(report([result]))
            if json_path:
                path = os.path.splitext(json_path)[0] + f"-p{result['p']}.json"
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                with open(path, "w") as f:
                    json.dump(result, f, indent=1)
                print(f"wrote {path}")
        return 0
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        print("mpiexec not found: pip install mpich mpi4py (the fastopt[mpi] extra)")
        return 1
    json_path = json_path or os.path.join(tempfile.mkdtemp(), "distributed.json")  # the ranks' results travel in it
    results = []
    for p in QUICK_RANKS if quick else RANKS:
        print(f"-- mpiexec -n {p}", flush=True)
        out = subprocess.run([mpiexec, "-n", str(p), sys.executable, "-m", "bench", "distributed", "--json",
                              json_path] + (["--quick"] if quick else []), capture_output=True, text=True,
                             timeout=1800, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if out.returncode != 0:
            print(out.stdout + out.stderr)
            return out.returncode
        part = os.path.splitext(json_path)[0] + f"-p{p}.json"
        with open(part) as f:
            results.append(json.load(f))
        os.remove(part)  # all of them go into json_path below
    print(report(results))
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {json_path}")
    return 0
