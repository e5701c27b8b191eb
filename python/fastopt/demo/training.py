"""Train a model with one optimizer, then time its steps against NumPy.

Training records every gradient (and loss) it feeds to the optimizer. The
same step sequence is then replayed from the same initial parameters three
times: through a fresh ``fastopt.optim`` optimizer (what training used),
through the stateless ``fastopt.functional.<name>_`` kernel, and through the
pure-NumPy ``fastopt.reference.<name>_`` with NumPy state arrays. The replays
do the same arithmetic on the same inputs, so their times compare the
optimizer step alone (no forward/backward pass in between), and their final
parameters must agree (the table shows the largest difference).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import functional as F
from .. import optim
from .. import reference as R
from .problems import OptimizerSpec, Problem


@dataclass
class RunResult:
    problem: str
    optimizer: str
    losses: list[float]            # full-data loss after 0, 1, ..., epochs epochs
    accuracy: float                # on the training data
    test_accuracy: float | None  # on the problem's held-out data, if it has some
    epochs_to_target: int | None
    wall_seconds: float            # the whole training run
    step_seconds: float            # of which inside optimizer.step
    steps: int
    # The same steps replayed through fastopt.optim, fastopt.functional and
    # fastopt.reference (NumPy); best of a few repeats when the steps are quick.
    replay_optim_seconds: float
    replay_functional_seconds: float
    replay_numpy_seconds: float
    replay_max_diff: float         # max |p_fastopt - p_numpy| after the replays
    params: list[np.ndarray] = field(repr=False, default_factory=list)

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    @property
    def diverged(self) -> bool:
        return not np.isfinite(self.final_loss)


def _batches(n: int, batch_size: int | None, rng: np.random.Generator):
    if batch_size is None or batch_size >= n:
        return [slice(None)]
    order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def train(problem: Problem, spec: OptimizerSpec, seed: int, epochs: int,
          on_epoch: Callable[[], None] = lambda: None,
          min_replay_seconds: float = 0.2) -> RunResult:
    """Train ``problem.model`` from the seed's initial weights (the same for
    every optimizer) for ``epochs`` epochs; stop early only on divergence.
    Then time the recorded steps (see :func:`replay`)."""
    model, data = problem.model, problem.data
    params = model.init_params(np.random.default_rng(seed))
    initial = [p.copy() for p in params]
    optimizer = spec.make(params)
    shuffle = np.random.default_rng(seed + 1)
    batch_size = None if spec.full_batch else problem.batch_size

    recorded = []                  # (grads, loss) of every step, for the replays
    losses = [model.loss(params, data.X, data.T)]
    step_seconds = 0.0
    start = time.perf_counter()
    for _ in range(epochs):
        for rows in _batches(len(data), batch_size, shuffle):
            loss, grads = model.loss_and_grads(params, data.X[rows], data.T[rows])
            tick = time.perf_counter()
            optimizer.step(grads, loss=loss)
            step_seconds += time.perf_counter() - tick
            recorded.append((grads, loss))
        # Full batch: the next step's loss is this one; computing it again
        # would add a forward pass per epoch, but it keeps one code path.
        losses.append(model.loss(params, data.X, data.T))
        on_epoch()
        if not np.isfinite(losses[-1]):
            break
    wall = time.perf_counter() - start

    hit = next((k for k, value in enumerate(losses) if value <= problem.target_loss), None)
    times, diff = replay(spec, initial, recorded, min_seconds=min_replay_seconds)
    test = problem.test
    return RunResult(problem.name, spec.label, losses, model.accuracy(params, data.X, data.T),
                     None if test is None else model.accuracy(params, test.X, test.T), hit,
                     wall, step_seconds, len(recorded), *times, diff, params)


def replay(spec: OptimizerSpec, initial: Sequence[np.ndarray], recorded, min_seconds: float = 0.2,
           max_repeats: int = 5):
    """Seconds for the ``recorded`` steps through fastopt.optim, fastopt.functional
    and fastopt.reference, and the largest parameter difference, fastopt vs NumPy.

    Each replay starts from fresh copies of ``initial``. Short replays are
    repeated (until ``min_seconds`` or ``max_repeats``) and the fastest kept:
    on a shared machine the minimum is the time least disturbed by others.
    """
    def run_optim():
        params = [p.copy() for p in initial]
        opt = spec.make(params)
        return params, lambda grads, loss: opt.step(grads, loss=loss)

    def run_kernels(kernels):
        def setup():
            params = [p.copy() for p in initial]
            return params, kernel_stepper(spec.make([p.copy() for p in initial]), params, kernels)
        return setup

    results = [_best_time(setup, recorded, min_seconds, max_repeats)
               for setup in (run_optim, run_kernels(F), run_kernels(R))]
    (fast_params, _), _, (numpy_params, _) = results
    with np.errstate(invalid="ignore"):
        diff = max((float(np.max(np.abs(a - b)))
                    for a, b in zip(fast_params, numpy_params) if a.size), default=0.0)
    return [seconds for _, seconds in results], diff


def _best_time(setup, recorded, min_seconds, max_repeats):
    best, spent, repeats = float("inf"), 0.0, 0
    while repeats < max_repeats and (repeats == 0 or spent < min_seconds):
        params, step = setup()
        start = time.perf_counter()
        for grads, loss in recorded:
            step(grads, loss)
        seconds = time.perf_counter() - start
        best, spent, repeats = min(best, seconds), spent + seconds, repeats + 1
    return params, best


def kernel_stepper(opt, params: list[np.ndarray],
                   kernels=R) -> Callable[[list[np.ndarray], float], None]:
    """``step(grads, loss)`` doing what ``opt.step`` does, with the stateless
    functions of ``kernels`` (:mod:`fastopt.reference` or
    :mod:`fastopt.functional`, which share their signatures) on state arrays
    of its own. ``opt`` only supplies the hyperparameters (one param group);
    ``params`` are updated in place."""
    if len(opt.param_groups) != 1:
        raise ValueError("the demo's reference replay handles one param group")
    g = opt.param_groups[0]

    def zeros(fill=0.0):
        return [np.full_like(p, fill) for p in params]

    counter = {"step": 0, "prev_loss": None}

    def next_step():
        counter["step"] += 1
        return counter["step"]

    if isinstance(opt, optim.SGD):
        buffers = zeros() if g["momentum"] != 0 else None
        return lambda grads, loss: kernels.sgd_(
            params, grads, buffers, step=next_step(), lr=g["lr"], momentum=g["momentum"],
            dampening=g["dampening"], weight_decay=g["weight_decay"], nesterov=g["nesterov"],
            maximize=g["maximize"])
    if isinstance(opt, optim.Adagrad):
        sums = zeros(g["initial_accumulator_value"])
        return lambda grads, loss: kernels.adagrad_(
            params, grads, sums, step=next_step(), lr=g["lr"], lr_decay=g["lr_decay"],
            weight_decay=g["weight_decay"], eps=g["eps"], maximize=g["maximize"])
    if isinstance(opt, optim.RMSprop):
        square_avgs = zeros()
        grad_avgs = zeros() if g["centered"] else None
        buffers = zeros() if g["momentum"] > 0 else None
        return lambda grads, loss: kernels.rmsprop_(
            params, grads, square_avgs, grad_avgs, buffers, lr=g["lr"], alpha=g["alpha"],
            eps=g["eps"], weight_decay=g["weight_decay"], momentum=g["momentum"],
            centered=g["centered"], maximize=g["maximize"])
    if isinstance(opt, optim.Adam):   # and AdamW, a subclass
        exp_avgs, exp_avg_sqs = zeros(), zeros()
        max_sqs = zeros() if g["amsgrad"] else None
        return lambda grads, loss: kernels.adam_(
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, step=next_step(), lr=g["lr"],
            betas=tuple(g["betas"]), eps=g["eps"], weight_decay=g["weight_decay"],
            amsgrad=g["amsgrad"], maximize=g["maximize"],
            decoupled_weight_decay=g["decoupled_weight_decay"])
    if isinstance(opt, optim.Rprop):
        prevs, step_sizes = zeros(), zeros(g["lr"])
        prev_updates = zeros() if g["variant"].endswith("+") else None

        def rprop_step(grads, loss):
            kernels.rprop_(params, grads, prevs, step_sizes, prev_updates, variant=g["variant"],
                     etaminus=g["etas"][0], etaplus=g["etas"][1], step_size_min=g["step_sizes"][0],
                     step_size_max=g["step_sizes"][1], weight_decay=g["weight_decay"],
                     maximize=g["maximize"], loss=loss, prev_loss=counter["prev_loss"])
            counter["prev_loss"] = loss
        return rprop_step
    if isinstance(opt, optim.Quickprop):
        prev_steps, prev_grads = zeros(), zeros()
        return lambda grads, loss: kernels.quickprop_(
            params, grads, prev_steps, prev_grads, lr=g["lr"], mu=g["mu"], decay=g["decay"],
            mode_switch=g["mode_switch"], momentum=g["momentum"], weight_decay=g["weight_decay"],
            maximize=g["maximize"])
    raise TypeError(f"no NumPy reference for {type(opt).__name__}")
