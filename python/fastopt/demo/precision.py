"""16-bit parameters: the digits MLP trained with its parameters stored in
bfloat16 or float16, beside the same run in float32.

Every run of one optimizer uses the same hyperparameters, the same initial
weights (drawn in float32, then stored: rounded to nearest for bfloat16 and
float16, split exactly for ``master_weights="split"``), the same mini-batch
order and the same number of epochs. Only the storage differs:

* ``float32``: the reference run;
* bfloat16 / float16 with ``rounding="nearest"``: each step's float32 result
  is rounded to the nearest 16-bit value, so an update smaller than half a
  spacing of the 16-bit grid is lost (the parameter stalls);
* ``rounding="stochastic"``: rounded up or down at random, unbiased, so small
  updates survive on average;
* bfloat16 with ``master_weights="split"``: the optimizer state keeps the low
  16 bits of an exact float32 master (the parameter is its top half);
* ``float32 + 8-bit state``: float32 parameters, the optimizer state
  quantized (``state_bits=8``: uint8 codes and a float32 absmax per block of
  256; ``min_8bit_size=0``, as this model's arrays are all under the default
  4096 elements, which would keep them float32). Its runs are
  :attr:`Comparison.state_runs`, beside the parameter storages' ``runs``.

The forward and backward passes compute in float32 from the parameters as
stored (``p.astype(np.float32)``: for "split" the truncated bfloat16 value,
not the master) and hand float32 gradients to the optimizer. So the split
run's gradients are not the float32 run's, and neither are its masters; what
"split" guarantees is that its masters are, bitwise, what the float32
optimizer computes from the same gradients: :func:`replay_float32` checks it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..examples import MLP
from .problems import OptimizerSpec, Problem
from .training import _batches

# The claim shown: stochastic rounding and split masters keep the float32
# run's held-out accuracy within half a point.
CLOSE = 0.005

# The optimizers compared, by their label in the problem's lineup (the
# hyperparameters the demo uses for them on digits).
OPTIMIZERS = ("Adam", "SGD+momentum")


@dataclass(frozen=True)
class Storage:
    """How a run stores its parameters: a dtype name and the 16-bit options."""

    label: str
    dtype: str                          # "float32", "bfloat16" or "float16"
    rounding: str = "nearest"
    master_weights: str | None = None
    state_bits: int = 32                # 8: every optimizer state array quantized

    @property
    def numpy_dtype(self) -> np.dtype:
        if self.dtype == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.dtype)

    def options(self, seed: int) -> dict:
        """The optimizer's keyword arguments for this storage (float32 with 32-bit state: none)."""
        state = {} if self.state_bits == 32 else {"state_bits": self.state_bits, "min_8bit_size": 0}
        if self.dtype == "float32":
            return state
        return {"rounding": self.rounding, "master_weights": self.master_weights, "seed": seed, **state}


FLOAT32 = Storage("float32", "float32")
STORAGES = (
    FLOAT32,
    Storage("bfloat16 nearest", "bfloat16"),
    Storage("bfloat16 stochastic", "bfloat16", rounding="stochastic"),
    Storage("bfloat16 split", "bfloat16", master_weights="split"),
    Storage("float16 nearest", "float16"),
    Storage("float16 stochastic", "float16", rounding="stochastic"),
)
# Not a parameter storage: float32 parameters with 8-bit optimizer state.
STATE_8BIT = Storage("float32 + 8-bit state", "float32", state_bits=8)


def available() -> bool:
    """bfloat16 needs ml_dtypes (NumPy has float16 only)."""
    try:
        importlib.import_module("ml_dtypes")
    except ImportError:
        return False
    return True


@dataclass
class PrecisionRun:
    optimizer: str
    storage: Storage
    seed: int
    losses: list[float]                 # full training-data loss after 0, 1, ..., epochs epochs
    test_accuracies: list[float]        # held-out accuracy after 0, 1, ..., epochs epochs
    accuracy: float                     # on the training data, at the end
    wall_seconds: float
    step_seconds: float                 # of which inside optimizer.step
    steps: int
    unchanged: float                    # share of elements a step left bitwise as they were (last epoch)
    params: list[np.ndarray] = field(repr=False, default_factory=list)    # as stored
    masters: list[np.ndarray] = field(repr=False, default_factory=list)   # the float32 values held
    initial: list[np.ndarray] = field(repr=False, default_factory=list)   # float32, before storing
    grads: list[list[np.ndarray]] | None = field(repr=False, default=None)  # recorded, if asked
    optimizer_object: object = field(repr=False, default=None)

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    @property
    def test_accuracy(self) -> float:
        return self.test_accuracies[-1]


def float32_model(model: MLP) -> MLP:
    return MLP(model.sizes, hidden=model.hidden, output=model.output, dtype=np.float32)


def split_halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float32 array as (bfloat16 top halves, uint16 low halves): exactly."""
    import ml_dtypes

    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    top = (bits >> np.uint32(16)).astype(np.uint16).view(ml_dtypes.bfloat16)
    return top, (bits & np.uint32(0xFFFF)).astype(np.uint16)


def join_master(param: np.ndarray, low_bits: np.ndarray) -> np.ndarray:
    """The split master: float32 with the bfloat16 parameter's bits on top."""
    return ((param.view(np.uint16).astype(np.uint32) << np.uint32(16)) | low_bits).view(np.float32)


def masters_of(opt, params: Sequence[np.ndarray], storage: Storage) -> list[np.ndarray]:
    """The float32 values the optimizer holds for each parameter."""
    if storage.master_weights == "split":
        return [join_master(p, opt.state[k]["master_low_bits"]) for k, p in enumerate(params)]
    if storage.master_weights == "float32":
        return [opt.state[k]["master"].copy() for k in range(len(params))]
    return [p.astype(np.float32) for p in params]


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint16 if x.dtype.itemsize == 2 else np.uint32)


def train_stored(problem: Problem, spec: OptimizerSpec, storage: Storage, seed: int, epochs: int,
                 on_epoch: Callable[[], None] = lambda: None, keep_grads: bool = False) -> PrecisionRun:
    """Train ``problem.model`` (in float32 arithmetic) with ``spec``, its
    parameters stored as ``storage`` says; initial weights and batch order
    from ``seed`` as in :func:`fastopt.demo.training.train`."""
    model = float32_model(problem.model)
    X, T = problem.data.X.astype(np.float32), problem.data.T.astype(np.float32)
    test = problem.test
    Xt, Tt = (None, None) if test is None else (test.X.astype(np.float32), test.T.astype(np.float32))
    initial = model.init_params(np.random.default_rng(seed))

    low_bits = None
    if storage.master_weights == "split":
        params, low_bits = map(list, zip(*(split_halves(p) for p in initial)))
    else:
        params = [p.astype(storage.numpy_dtype) for p in initial]
    opt = spec.cls(params, **spec.kwargs, **storage.options(seed))
    if low_bits is not None:
        # The master starts as the exact float32 initial weights (a fresh
        # optimizer would start it at the bfloat16 value, low bits zero).
        for k, low in enumerate(low_bits):
            opt.state[k] = {"master_low_bits": low}

    def held():      # the values a step changes, as bits: the master for split
        if low_bits is None:
            return [_bits(p).copy() for p in params]
        return [_bits(join_master(p, low)) for p, low in zip(params, low_bits)]

    def evaluate():
        wide = [p.astype(np.float32) for p in params]
        losses.append(model.loss(wide, X, T))
        test_accuracies.append(float("nan") if Xt is None else model.accuracy(wide, Xt, Tt))

    losses: list[float] = []
    test_accuracies: list[float] = []
    evaluate()
    shuffle = np.random.default_rng(seed + 1)
    batch_size = None if spec.full_batch else problem.batch_size
    recorded = [] if keep_grads else None
    steps, step_seconds, unchanged, counted = 0, 0.0, 0, 0
    n_elements = sum(p.size for p in params)
    start = time.perf_counter()
    for epoch in range(epochs):
        last = epoch == epochs - 1
        for rows in _batches(len(X), batch_size, shuffle):
            loss, grads = model.loss_and_grads([p.astype(np.float32) for p in params], X[rows], T[rows])
            before = held() if last else None
            tick = time.perf_counter()
            opt.step(grads, loss=loss)
            step_seconds += time.perf_counter() - tick
            steps += 1
            if last:
                unchanged += sum(int(np.count_nonzero(a == b)) for a, b in zip(before, held()))
                counted += n_elements
            if recorded is not None:
                recorded.append(grads)
        evaluate()
        on_epoch()
        if not np.isfinite(losses[-1]):
            break
    wall = time.perf_counter() - start
    wide = [p.astype(np.float32) for p in params]
    return PrecisionRun(spec.label, storage, seed, losses, test_accuracies, model.accuracy(wide, X, T), wall,
                        step_seconds, steps, unchanged / max(counted, 1), params,
                        masters_of(opt, params, storage), initial, recorded, opt)


def replay_float32(spec: OptimizerSpec, initial: Sequence[np.ndarray],
                   recorded: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The float32 optimizer's parameters after the ``recorded`` gradients, from ``initial``."""
    params = [np.array(p, dtype=np.float32) for p in initial]
    opt = spec.make(params)
    for grads in recorded:
        opt.step(grads)
    return params


def bitwise_equal(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b))


@dataclass
class Comparison:
    """Every optimizer x storage on ``seeds[0]`` (``runs``; the 8-bit state
    runs in ``state_runs``), the split runs' check against the float32
    optimizer, and, when there are more seeds, the held-out accuracies of each
    (optimizer, storage) for every seed."""

    problem: Problem
    epochs: int
    seeds: list[int]
    runs: list[PrecisionRun]
    split_bitwise: dict[str, bool]                  # optimizer -> masters == float32 replay
    split_vs_float32_run: dict[str, float]          # optimizer -> max |master - float32 run's param|
    test_accuracies: dict[tuple[str, str], list[float]]   # (optimizer, storage label) -> per seed
    state_runs: list[PrecisionRun] = field(default_factory=list)   # float32 + 8-bit state, seeds[0]

    @property
    def optimizers(self) -> list[str]:
        return list(dict.fromkeys(r.optimizer for r in self.runs))

    def has(self, optimizer: str, storage: str) -> bool:
        return any(r.optimizer == optimizer and r.storage.label == storage for r in self.runs + self.state_runs)

    def run(self, optimizer: str, storage: str) -> PrecisionRun:
        return next(r for r in self.runs + self.state_runs if r.optimizer == optimizer and r.storage.label == storage)

    def gap(self, optimizer: str, storage: str) -> float:
        """Held-out accuracy minus the float32 run's, on the first seed (a fraction)."""
        return self.run(optimizer, storage).test_accuracy - self.run(optimizer, FLOAT32.label).test_accuracy

    def gaps(self, optimizer: str, storage: str) -> np.ndarray:
        """The same, for every seed."""
        return (np.array(self.test_accuracies[(optimizer, storage)])
                - np.array(self.test_accuracies[(optimizer, FLOAT32.label)]))

    def hyperparameters(self, optimizer: str) -> str:
        spec = next(s for s in self.problem.optimizers if s.label == optimizer)
        return ", ".join(f"{k}={v}" for k, v in spec.kwargs.items())


def specs_of(problem: Problem, labels: Sequence[str] = OPTIMIZERS) -> list[OptimizerSpec]:
    by_label = {spec.label: spec for spec in problem.optimizers}
    return [by_label[label] for label in labels]


def compare(problem: Problem, seeds: Sequence[int], epochs: int | None = None,
            optimizers: Sequence[str] = OPTIMIZERS, storages: Sequence[Storage] = STORAGES,
            on_epoch: Callable[[], None] = lambda: None,
            state_storages: Sequence[Storage] = (STATE_8BIT,)) -> Comparison:
    """Train every optimizer with every storage (then every state storage), for every seed."""
    epochs = problem.epochs if epochs is None else epochs
    seeds = list(seeds)
    runs, state_runs, bitwise, vs_run, accuracies = [], [], {}, {}, {}
    for spec in specs_of(problem, optimizers):
        for seed in seeds:
            first = seed == seeds[0]
            by_storage = {}
            for storage in (*storages, *state_storages):
                keep = first and storage.master_weights == "split"
                run = train_stored(problem, spec, storage, seed, epochs, on_epoch=on_epoch, keep_grads=keep)
                by_storage[storage.label] = run
                accuracies.setdefault((spec.label, storage.label), []).append(run.test_accuracy)
                if first:
                    (runs if storage in storages else state_runs).append(run)
            for run in by_storage.values():
                if first and run.grads is not None:
                    bitwise[spec.label] = bitwise_equal(run.masters, replay_float32(spec, run.initial, run.grads))
                    run.grads = None     # the check is done; do not keep every gradient
                    if FLOAT32.label in by_storage:
                        reference = by_storage[FLOAT32.label].params
                        vs_run[spec.label] = max(float(np.max(np.abs(m - p))) for m, p in zip(run.masters, reference))
    return Comparison(problem, epochs, seeds, runs, bitwise, vs_run, accuracies, state_runs)
