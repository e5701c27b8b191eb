"""The demo's command line: run, print tables, write figures."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Callable

import fastopt

from . import surfaces as surf
from .problems import Problem, problems
from .progress import ProgressBar
from .training import RunResult, train


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fastopt.demo",
        description="Train small NumPy networks with every fastopt optimizer; compare losses, "
                    "epochs to a target loss and optimizer-step time against pure NumPy.")
    parser.add_argument("--quick", action="store_true", help="small budgets (a few seconds)")
    parser.add_argument("--out", default="demo_out", metavar="DIR",
                        help="directory for PNG figures (default: demo_out)")
    parser.add_argument("--seed", type=int, default=0,
                        help="initial weights and shuffling (default: 0)")
    parser.add_argument("--no-figures", action="store_true", help="print tables only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser.parse_args(argv)


# ------------------------------------------------------------------- tables
def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Plain-text table; the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if k < left else str(c).rjust(w)
                         for k, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line("-" * w for w in widths)] + [line(r) for r in rows])


def _epochs_to_target(r: RunResult) -> str:
    if r.epochs_to_target is not None:
        return str(r.epochs_to_target)
    return "diverged" if r.diverged else "not reached"


def _agreement(r: RunResult) -> str:
    return "bitwise" if r.replay_max_diff == 0 else f"{r.replay_max_diff:.1e}"


def results_table(results: Sequence[RunResult]) -> str:
    held_out = any(r.test_accuracy is not None for r in results)
    headers = ["optimizer", "final loss", "accuracy"] + (["test accuracy"] if held_out else []) + [
        "epochs to target", "wall s", "in opt.step"]
    rows = [[r.optimizer, f"{r.final_loss:.3g}", f"{100 * r.accuracy:.1f}%"]
            + ([f"{100 * r.test_accuracy:.1f}%"] if held_out else [])
            + [_epochs_to_target(r), f"{r.wall_seconds:.2f}",
               f"{100 * r.step_seconds / r.wall_seconds:.0f}%"]
            for r in results]
    return format_table(headers, rows)


def timing_table(results: Sequence[RunResult]) -> str:
    headers = ["optimizer", "steps", "optim us/step", "functional us/step", "NumPy us/step",
               "NumPy/optim", "NumPy/functional", "same result"]
    rows = []
    for r in results:
        per_step = [1e6 * s / max(r.steps, 1) for s in
                    (r.replay_optim_seconds, r.replay_functional_seconds, r.replay_numpy_seconds)]
        rows.append([r.optimizer, str(r.steps), *(f"{us:.1f}" for us in per_step),
                     f"{per_step[2] / per_step[0]:.2f}x", f"{per_step[2] / per_step[1]:.2f}x",
                     _agreement(r)])
    return format_table(headers, rows)


def trajectory_table(surface: surf.Surface, runs: Sequence[surf.Trajectory]) -> str:
    headers = ["optimizer", "final f", f"first iteration with f < {surface.tol:g}", "end point"]
    rows = []
    for t in runs:
        if t.note:
            rows.append([t.label, "-", "-", t.note])
            continue
        reached = "not reached" if t.reached is None else str(t.reached)
        if t.evaluations is not None:
            reached += f" ({t.evaluations} f+g evaluations)"
        end = t.path[-1]
        rows.append([t.label, f"{t.final:.2e}", reached, f"({end[0]:.4f}, {end[1]:.4f})"])
    return format_table(headers, rows)


# ---------------------------------------------------------------------- run
def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def run_problem(problem: Problem, seed: int, progress: bool, quick: bool) -> list[RunResult]:
    total = problem.epochs * len(problem.optimizers)
    results = []
    with ProgressBar(total, problem.name, enabled=None if progress else False) as bar:
        for spec in problem.optimizers:
            bar.label = f"{problem.name}: {spec.label}"
            results.append(train(problem, spec, seed, problem.epochs, on_epoch=bar.update,
                                 min_replay_seconds=0.02 if quick else 0.2))
            bar.update(problem.epochs * len(results) - bar.done)   # a diverged run stops early
    return results


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] | None = None) -> int:
    """Run the demo; returns the exit status. ``out`` receives each printed block."""
    out = out or (lambda text: print(text, flush=True))
    args = parse_args(argv)
    started = time.perf_counter()
    info = fastopt.runtime_info()
    budget = "quick" if args.quick else "full"
    out(f"fastopt {info['version']} demo ({budget} budget, seed {args.seed}); "
        f"kernels: {info['simd_target']}, OpenMP {'on' if info['openmp'] else 'off'}, "
        f"{info['num_threads']} threads")
    todo = problems(quick=args.quick)
    if not any(p.name == "digits" for p in todo):
        out("digits: skipped (scikit-learn is not installed; pip install scikit-learn)")

    runs = {}
    for problem in todo:
        batch = "full batch" if problem.batch_size is None else f"batch {problem.batch_size}"
        model = problem.model
        out(f"\n== {problem.title}\n   {model.n_params} parameters in {2 * (len(model.sizes) - 1)} "
            f"arrays; {problem.epochs} epochs ({batch}); target loss {problem.target_loss:g}\n"
            f"   {problem.about}")
        results = run_problem(problem, args.seed, not args.no_progress, args.quick)
        out(results_table(results))
        out("optimizer-step time, the same steps replayed three ways:")
        out(timing_table(results))
        runs[problem.name] = (problem, results)

    out("\n'in opt.step': share of the training wall time spent in optimizer steps (the rest is "
        "the NumPy forward/backward pass). Step time: the training run's recorded steps (same "
        "gradients, same start) replayed through fastopt.optim (the class, as in training), "
        "fastopt.functional (the bare C++ kernel call) and fastopt.reference (pure NumPy); best of "
        "up to 5 repeats when a replay is short. 'same result': largest difference between the "
        "fastopt and NumPy parameters afterwards. These models are small (tens to thousands of "
        "parameters), so per-call overhead, not arithmetic, sets the step time; python -m bench "
        "measures large arrays.")

    trajectories = {}
    for surface in (surf.QUADRATIC, surf.ROSENBROCK):
        runs_2d = surf.trajectories(surface)
        out(f"\n== trajectories on the {surface.name}, {surface.iterations} iterations "
            f"from {surface.start}")
        out(trajectory_table(surface, runs_2d))
        trajectories[surface.name] = (surface, runs_2d)
    if not any(t.label == "L-BFGS" for _, ts in trajectories.values() for t in ts):
        out("(L-BFGS not shown: this fastopt has neither fastopt.minimize nor fastopt.optim.LBFGS)")

    if args.no_figures:
        pass
    elif not _importable("matplotlib"):
        out("\nno figures: matplotlib is not installed (pip install matplotlib)")
    else:
        from .figures import all_figures

        paths = all_figures(runs, trajectories, args.out)
        out(f"\nfigures written to {os.path.abspath(args.out)}:")
        for path in paths:
            out(f"  {os.path.basename(path)}")
    out(f"\ntotal time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
