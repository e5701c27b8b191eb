"""The demo's command line: run, print tables, write figures."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Callable

import numpy as np

import fastopt

from . import precision as prec
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


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


def precision_table(comparison: prec.Comparison) -> str:
    """One row per optimizer and storage, on the comparison's first seed (the
    8-bit state runs last)."""
    headers = ["optimizer", "parameters", "final loss", "accuracy", "test accuracy", "vs float32",
               "unchanged", "opt us/step"]
    rows = []
    for r in comparison.runs + comparison.state_runs:
        delta = ("-" if r.storage == prec.FLOAT32
                 else f"{100 * comparison.gap(r.optimizer, r.storage.label):+.2f}")
        rows.append([r.optimizer, r.storage.label, f"{r.final_loss:.3g}", _percent(r.accuracy),
                     _percent(r.test_accuracy), delta, f"{100 * r.unchanged:.0f}%",
                     f"{1e6 * r.step_seconds / max(r.steps, 1):.1f}"])
    return format_table(headers, rows, left=2)


def precision_seeds_table(comparison: prec.Comparison) -> str:
    """Held-out accuracy of each optimizer and storage over the seeds, and how
    far it is from the float32 run of the same seed."""
    n = len(comparison.seeds)
    headers = ["optimizer", "parameters", "mean test acc.", "min", "max", "largest |vs float32|",
               f"within {100 * prec.CLOSE:g} points"]
    rows = []
    for (optimizer, storage), accs in comparison.test_accuracies.items():
        gaps = np.abs(comparison.gaps(optimizer, storage))
        far, close = ("-", "-") if storage == prec.FLOAT32.label else (
            f"{100 * gaps.max():.2f}", f"{int(np.sum(gaps <= prec.CLOSE))}/{n} seeds")
        rows.append([optimizer, storage, _percent(np.mean(accs)), _percent(min(accs)), _percent(max(accs)),
                     far, close])
    return format_table(headers, rows, left=2)


def precision_notes(comparison: prec.Comparison) -> list[str]:
    """Per optimizer: the claims the comparison tests, measured on its first seed."""
    lines = []
    for optimizer in comparison.optimizers:
        verdicts = ", ".join(
            f"{label} {'yes' if abs(comparison.gap(optimizer, label)) <= prec.CLOSE else 'NO'}"
            for label in ("bfloat16 stochastic", "bfloat16 split", prec.STATE_8BIT.label)
            if comparison.has(optimizer, label))
        line = (f"{optimizer} ({comparison.hyperparameters(optimizer)}): test accuracy within "
                f"{100 * prec.CLOSE:g} points of float32's (seed {comparison.seeds[0]}): {verdicts}.")
        if optimizer in comparison.split_bitwise:
            steps = comparison.run(optimizer, "bfloat16 split").steps
            same = "bitwise equal" if comparison.split_bitwise[optimizer] else "NOT EQUAL"
            line += (f" Split's float32 masters vs the float32 optimizer given the same {steps} "
                     f"gradients: {same}")
            if optimizer in comparison.split_vs_float32_run:
                line += (f"; vs the float32 run's parameters: up to "
                         f"{comparison.split_vs_float32_run[optimizer]:.2g} apart")
            line += "."
        lines.append(line)
    return lines


def report_precision(comparison: prec.Comparison, out: Callable[[str], None]) -> None:
    problem = comparison.problem
    out(f"\n== {problem.name}, 16-bit parameters: {problem.model}, {comparison.epochs} epochs "
        f"(batch {problem.batch_size}), seed {comparison.seeds[0]}\n"
        "   the same runs with the parameters stored in float32, bfloat16 or float16 (float32 state "
        "and arithmetic); last, float32 parameters with 8-bit optimizer state")
    out(precision_table(comparison))
    if len(comparison.seeds) > 1:
        out(f"test accuracy over seeds {comparison.seeds[0]}-{comparison.seeds[-1]} "
            "(vs float32: the float32 run of the same seed):")
        out(precision_seeds_table(comparison))
    out("\n".join(precision_notes(comparison)))
    n_test = 0 if problem.test is None else len(problem.test)
    out("\nEvery run of an optimizer has the same hyperparameters, initial weights (drawn in "
        "float32, then stored), batches and epochs; the forward/backward pass computes in float32 "
        "from the parameters as stored and hands float32 gradients to the optimizer. 'nearest' "
        "rounds each step's result to the nearest 16-bit value and loses updates smaller than "
        "half a spacing; 'stochastic' rounds up or down at random, unbiased; 'split' keeps the "
        "low 16 bits of an exact float32 master in the optimizer state (the forward pass sees "
        "the truncated bfloat16 weights, so its gradients, and hence its masters, are not the "
        "float32 run's). 'unchanged': share of parameter elements a step left bitwise as they "
        "were, over the last epoch (split: its float32 masters; float32: mostly the weights of "
        "always-blank pixels, whose gradient is 0). 'float32 + 8-bit state': float32 parameters, "
        "every optimizer state array quantized (state_bits=8, min_8bit_size=0: uint8 codes and a "
        "float32 absmax per block of 256). One test image is "
        f"{100 / max(n_test, 1):.2f} points.")


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


def run_precision(problem: Problem, seed: int, progress: bool, quick: bool) -> prec.Comparison:
    """The 16-bit comparison on ``problem``: the demo's seed, and four more in the full budget."""
    seeds = [seed] if quick else list(range(seed, seed + 5))
    total = problem.epochs * len(prec.OPTIMIZERS) * (len(prec.STORAGES) + 1) * len(seeds)   # + 8-bit state
    with ProgressBar(total, f"{problem.name}: 16-bit parameters", enabled=None if progress else False) as bar:
        return prec.compare(problem, seeds, on_epoch=bar.update)


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
        out("digits and its 16-bit comparison: skipped (scikit-learn is not installed; "
            "pip install scikit-learn)")

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

    comparison = None
    if "digits" in runs and not prec.available():
        out("\n16-bit parameters: skipped (bfloat16 needs ml_dtypes; pip install ml_dtypes)")
    elif "digits" in runs:
        comparison = run_precision(runs["digits"][0], args.seed, not args.no_progress, args.quick)
        report_precision(comparison, out)

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

        paths = all_figures(runs, trajectories, args.out, precision=comparison)
        out(f"\nfigures written to {os.path.abspath(args.out)}:")
        for path in paths:
            out(f"  {os.path.basename(path)}")
    out(f"\ntotal time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
