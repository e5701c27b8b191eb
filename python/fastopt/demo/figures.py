"""PNG figures for the demo (needs matplotlib; imported lazily by the caller).

Uses matplotlib's object-oriented API (``Figure``), not pyplot: no GUI
backend is touched, so it works headless and inside other programs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .precision import Comparison
from .problems import Problem
from .surfaces import Surface, Trajectory
from .training import RunResult

# One color per optimizer family; variants within a family differ by line style.
STYLE = {
    "SGD": ("#7f7f7f", "-"), "SGD+momentum": ("#1f77b4", "-"), "Nesterov": ("#17becf", "--"),
    "Adagrad": ("#bcbd22", "-"), "RMSprop": ("#9467bd", "-"), "Adam": ("#d62728", "-"),
    "AdamW": ("#ff7f0e", "--"),
    "iRprop-": ("#2ca02c", "-"), "Rprop-": ("#2ca02c", ":"), "Rprop+": ("#98df8a", "-."),
    "iRprop+": ("#006400", "--"), "Quickprop": ("#8c564b", "-"),
    "gradient descent": ("#7f7f7f", "-"), "momentum 0.9": ("#1f77b4", "-"),
    "Nesterov 0.9": ("#17becf", "-"), "L-BFGS": ("#000000", "-"),
}


# 16-bit comparison: one color per storage; float16 dotted.
STORAGE_STYLE = {
    "float32": ("#000000", "-"), "bfloat16 nearest": ("#d62728", "-"),
    "bfloat16 stochastic": ("#1f77b4", "-"), "bfloat16 split": ("#2ca02c", "--"),
    "float16 nearest": ("#ff7f0e", ":"), "float16 stochastic": ("#9467bd", ":"),
    "float32 + 8-bit state": ("#8c564b", "-."),
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _style(label: str):
    return STYLE.get(label, ("#000000", "-"))


def loss_curves(problem: Problem, results: Sequence[RunResult], out_dir: str) -> str:
    fig = Figure(figsize=(9.5, 5.2), layout="constrained")
    ax = fig.add_subplot()
    for r in results:
        color, dash = _style(r.optimizer)
        losses = np.asarray(r.losses, dtype=float)
        ax.plot(np.arange(len(losses)), np.where(losses > 0, losses, np.nan), color=color,
                linestyle=dash, linewidth=1.6, label=f"{r.optimizer} ({r.final_loss:.2g})")
    ax.axhline(problem.target_loss, color="black", linewidth=0.8, linestyle=(0, (2, 3)))
    # At the right edge, where the curves have settled, so the label stays readable.
    ax.annotate(f"target {problem.target_loss:g}", (1, problem.target_loss), xytext=(-4, 3),
                xycoords=ax.get_yaxis_transform(), textcoords="offset points", ha="right",
                fontsize=8)
    ax.set_yscale("log")
    # Losses far below the target are rounding noise (Rprop drives the encoder to 1e-17).
    floor = problem.target_loss * 1e-5
    lowest = min((v for r in results for v in r.losses if v > 0), default=floor)
    ax.set_ylim(bottom=max(lowest / 2, floor))
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (log scale)")
    batch = ("full batch" if problem.batch_size is None else
             f"mini-batches of {problem.batch_size} (Rprop, Quickprop: full batch)")
    ax.set_title(f"{problem.name}: {problem.model}, {batch}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="optimizer (final loss)", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    path = os.path.join(out_dir, f"loss_{slug(problem.name)}.png")
    fig.savefig(path, dpi=120)
    return path


def decision_regions(problem: Problem, results: Sequence[RunResult], out_dir: str) -> str:
    """Two-class problems in 2-D: every optimizer's learned regions."""
    X, labels = problem.data.X, problem.data.labels
    pad = 0.1 * np.ptp(X)
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 120)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 120)
    grid = np.column_stack([g.ravel() for g in np.meshgrid(xs, ys)])
    cols = 4
    rows = -(-len(results) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.75 * rows), layout="constrained")
    for k, r in enumerate(results):
        ax = fig.add_subplot(rows, cols, k + 1)
        if r.diverged:
            ax.text(0.5, 0.5, "diverged", ha="center", va="center", transform=ax.transAxes)
        else:
            prob = problem.model.forward(r.params, grid)[:, 1].reshape(len(ys), len(xs))
            ax.contourf(xs, ys, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
        for cls, marker, color in ((0, "o", "#08306b"), (1, "s", "#67000d")):
            pts = X[labels == cls]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, marker=marker, color=color, linewidths=0)
        ax.set_title(f"{r.optimizer}: {100 * r.accuracy:.0f}% correct", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    epochs = len(results[0].losses) - 1
    fig.suptitle(f"{problem.name}: learned decision regions after {epochs} epochs "
                 "(color = P(class 1))", fontsize=11)
    path = os.path.join(out_dir, f"regions_{slug(problem.name)}.png")
    fig.savefig(path, dpi=110)
    return path


def trajectories(surface: Surface, runs: list[Trajectory], out_dir: str) -> str:
    """One panel per optimizer over the contours; gradient descent's path in
    grey in every panel for comparison."""
    xs = np.linspace(*surface.xlim, 200)
    ys = np.linspace(*surface.ylim, 200)
    XX, YY = np.meshgrid(xs, ys)
    ZZ = surface.f_grid(XX, YY)
    drawn = [t for t in runs if len(t.path) > 1]
    cols = 4
    rows = -(-len(drawn) // cols)
    fig = Figure(figsize=(3.3 * cols, 2.55 * rows), layout="constrained")
    baseline = drawn[0]
    for k, t in enumerate(drawn):
        ax = fig.add_subplot(rows, cols, k + 1)
        if surface.log_levels:
            ax.contour(XX, YY, ZZ + 1e-3, levels=np.logspace(-2, 3, 16), norm=LogNorm(),
                       cmap="viridis", linewidths=0.6)
        else:
            ax.contour(XX, YY, ZZ, levels=np.geomspace(0.02, ZZ.max(), 14), cmap="viridis",
                       linewidths=0.6)
        if t is not baseline:
            ax.plot(baseline.path[:, 0], baseline.path[:, 1], color="#bbbbbb", linewidth=0.8)
        color, _ = _style(t.label)
        shown = t.path[np.all(np.isfinite(t.path), axis=1)]
        ax.plot(shown[:, 0], shown[:, 1], color=color, linewidth=1.2, marker="o", markersize=1.8)
        ax.plot(*surface.start, marker="o", color="black", markersize=5)
        ax.plot(*surface.minimum, marker="*", color="gold", markeredgecolor="black", markersize=11)
        ax.set_xlim(surface.xlim)
        ax.set_ylim(surface.ylim)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        steps = len(t.path) - 1
        outcome = (f"f < {surface.tol:g} at {t.reached}" if t.reached is not None
                   else f"f = {t.final:.1e} after {steps}")
        ax.set_title(f"{t.label}\n{outcome}", fontsize=9)
    fig.suptitle(f"{surface.name}: {surface.iterations} iterations from {surface.start} "
                 "(grey: gradient descent)", fontsize=11)
    path = os.path.join(out_dir, f"trajectories_{slug(surface.name)}.png")
    fig.savefig(path, dpi=110)
    return path


def precision_curves(comparison: Comparison, out_dir: str) -> str:
    """The 16-bit comparison: training loss (top) and held-out accuracy
    (bottom) per epoch, one column per optimizer, one line per storage."""
    optimizers = comparison.optimizers
    fig = Figure(figsize=(5.6 * len(optimizers), 8.0), layout="constrained")
    axes = fig.subplots(2, len(optimizers), squeeze=False, sharex=True)
    epochs = comparison.epochs
    for col, optimizer in enumerate(optimizers):
        runs = [r for r in comparison.runs + comparison.state_runs if r.optimizer == optimizer]
        loss_ax, acc_ax = axes[0, col], axes[1, col]
        for r in runs:
            color, dash = STORAGE_STYLE.get(r.storage.label, ("#7f7f7f", "-"))
            losses = np.asarray(r.losses, dtype=float)
            loss_ax.plot(np.arange(len(losses)), np.where(losses > 0, losses, np.nan), color=color,
                         linestyle=dash, linewidth=1.4, label=f"{r.storage.label} ({r.final_loss:.2g})")
            acc = 100 * np.asarray(r.test_accuracies, dtype=float)
            acc_ax.plot(np.arange(len(acc)), acc, color=color, linestyle=dash, linewidth=1.4,
                        label=f"{r.storage.label} ({acc[-1]:.2f}%)")
        loss_ax.set_yscale("log")
        loss_ax.set_title(f"{optimizer} ({comparison.hyperparameters(optimizer)})", fontsize=11)
        loss_ax.set_ylabel("training loss (log scale)")
        # The first epochs climb from chance level: zoom on where the runs settle.
        settled = [100 * a for r in runs for a in r.test_accuracies[max(1, epochs // 5):]]
        if settled:
            acc_ax.set_ylim(max(0.0, min(settled) - 1.0), min(100.0, max(settled)) + 0.5)
        acc_ax.set_xlabel("epoch")
        acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        acc_ax.set_ylabel("held-out accuracy (%)")
        for ax, title, where in ((loss_ax, "parameters (final loss)", "upper right"),
                                 (acc_ax, "parameters (final test accuracy)", "best")):
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(title=title, fontsize=7.5, title_fontsize=7.5, loc=where)
    problem = comparison.problem
    fig.suptitle(f"{problem.name}: {problem.model}, parameters stored in float32, bfloat16 or float16, "
                 f"or float32 with 8-bit optimizer state\n{epochs} epochs, seed {comparison.seeds[0]}", fontsize=11)
    path = os.path.join(out_dir, f"precision_{slug(problem.name)}.png")
    fig.savefig(path, dpi=110)
    return path


def all_figures(runs: dict[str, tuple], surfaces: dict[str, tuple], out_dir: str,
                precision: Comparison | None = None) -> list[str]:
    """``runs``: name -> (problem, results); ``surfaces``: name -> (surface, trajectories);
    ``precision``: the 16-bit comparison, if it ran."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for problem, results in runs.values():
        paths.append(loss_curves(problem, results, out_dir))
        if problem.data.X.shape[1] == 2 and problem.data.T.shape[1] == 2:
            paths.append(decision_regions(problem, results, out_dir))
    if precision is not None:
        paths.append(precision_curves(precision, out_dir))
    for surface, trajs in surfaces.values():
        paths.append(trajectories(surface, trajs, out_dir))
    return paths
