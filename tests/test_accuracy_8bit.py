"""8-bit optimizer state (``state_bits=8``, blockwise dynamic quantization)
keeps the held-out accuracy of the same training run with 32-bit state.

Each comparison trains twice with the same optimizer, hyperparameters,
initial weights, mini-batch order and number of epochs, the parameters and
the arithmetic in float32; only the state differs: float32 arrays, or uint8
codes with one float32 absmax per block of 256 (``min_8bit_size=0``, so that
every state array of these small models is quantized; the default, 4096,
would keep them all in float32). The 32-bit run is measured in the same test,
so a quantization that costs accuracy fails it.

* digits (scikit-learn's 8x8 images; the demo's split, batches of 64 and 50
  epochs, the demo's hyperparameters): the 64-32-10 tanh MLP with Adam and
  AdamW, and softmax (multinomial logistic) regression, 64-10, with Adam and
  SGD+momentum. One held-out image is 0.28 points, so "within half a point"
  allows one image either way: seed 0 (the demo's) must be within it, and so
  must the mean over seeds 0-4;
* binary logistic regression on a synthetic set with 20,000 held-out points
  (one point is 0.005 points of accuracy).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pytest

from fastopt import optim
from fastopt.demo import cli, precision
from fastopt.demo.problems import OptimizerSpec, problems
from fastopt.demo.training import _batches
from fastopt.examples import MLP, Dataset

CLOSE = 0.005          # half a percentage point of held-out accuracy
SEED = 0               # the demo's default seed
SEEDS = tuple(range(5))
EIGHT_BIT = {"state_bits": 8, "min_8bit_size": 0}
BLOCK = 256            # elements per absmax block


@dataclass
class Run:
    test_accuracy: float
    final_loss: float                   # on the training data
    params: list[np.ndarray] = field(repr=False)
    optimizer: object = field(repr=False)


@functools.cache
def digits_problem():
    pytest.importorskip("sklearn")      # the digits data set
    return next(p for p in problems() if p.name == "digits")


def spec(label: str) -> OptimizerSpec:
    """The demo's hyperparameters for ``label`` on digits."""
    return next(s for s in digits_problem().optimizers if s.label == label)


def float32(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return data.X.astype(np.float32), data.T.astype(np.float32)


def train(loss_and_grads, accuracy, params, spec: OptimizerSpec, train_data, test_data,
          seed: int, epochs: int, batch_size: int, bits: int) -> Run:
    """``epochs`` epochs of mini-batches (order from ``seed + 1``, as the demo)
    on float32 ``params``, the state in ``bits`` bits."""
    opt = spec.cls(params, **spec.kwargs, **(EIGHT_BIT if bits == 8 else {}))
    X, T = train_data
    shuffle = np.random.default_rng(seed + 1)
    for _ in range(epochs):
        for rows in _batches(len(X), batch_size, shuffle):
            loss, grads = loss_and_grads(params, X[rows], T[rows])
            opt.step(grads, loss=loss)
    assert all(p.dtype == np.float32 for p in params)
    return Run(accuracy(params, *test_data), loss_and_grads(params, X, T)[0], params, opt)


@functools.cache
def digits_run(sizes: tuple[int, ...], label: str, seed: int, bits: int) -> Run:
    """The demo's digits problem with an MLP of ``sizes`` (float32), one optimizer."""
    problem = digits_problem()
    model = MLP(list(sizes), hidden="tanh", output="softmax", dtype=np.float32)
    params = model.init_params(np.random.default_rng(seed))
    return train(model.loss_and_grads, model.accuracy, params, spec(label), float32(problem.data),
                 float32(problem.test), seed, problem.epochs, problem.batch_size, bits)


MLP_SIZES = (64, 32, 10)
SOFTMAX_REGRESSION = (64, 10)


def check_state(run: Run, bits: int) -> None:
    """8 bits: every state array is uint8 codes of its parameter's shape with
    a float32 absmax per block of 256, and no float state is left; 32 bits:
    float32 arrays."""
    opt = run.optimizer
    for k, p in enumerate(run.params):
        state = opt.state[k]
        arrays = {key: v for key, v in state.items() if isinstance(v, np.ndarray)}
        roles = [key for key in arrays if not key.endswith("_absmax")]
        assert roles, f"params[{k}] has no state array"
        for role in roles:
            value = arrays[role]
            assert value.shape == p.shape, (k, role)
            if bits == 32:
                assert value.dtype == np.float32, (k, role, value.dtype)
                assert role + "_absmax" not in arrays
                continue
            assert value.dtype == np.uint8, (k, role, value.dtype)
            absmax = arrays[role + "_absmax"]
            assert absmax.dtype == np.float32, (k, role)
            assert absmax.shape == (-(-p.size // BLOCK),), (k, role)
            assert np.all(np.isfinite(absmax)), (k, role)
            assert np.any(absmax > 0), (k, role)
            if p.size >= 16:
                assert len(np.unique(value)) > 2, (k, role)     # codes in use, not a constant
        assert set(arrays) == set(roles) | ({r + "_absmax" for r in roles} if bits == 8 else set())


def report(what: str, run32: Run, run8: Run) -> float:
    gap = run8.test_accuracy - run32.test_accuracy
    print(f"{what}: held-out accuracy 32-bit state {100 * run32.test_accuracy:.2f}%, "
          f"8-bit state {100 * run8.test_accuracy:.2f}% ({100 * gap:+.2f} points); "
          f"training loss {run32.final_loss:.4g} vs {run8.final_loss:.4g}")
    return gap


def assert_quantization_changed_the_run(run32: Run, run8: Run) -> None:
    """Not vacuous: the 8-bit run took other steps than the 32-bit one."""
    assert any(not np.array_equal(a, b) for a, b in zip(run32.params, run8.params))


# ----------------------------------------------- digits: MLP, softmax regression
CASES = [
    pytest.param(MLP_SIZES, "Adam", id="mlp-Adam"),
    pytest.param(MLP_SIZES, "AdamW", id="mlp-AdamW"),
    # Multinomial logistic regression: the 64-10 network has no hidden layer.
    pytest.param(SOFTMAX_REGRESSION, "Adam", id="softmax-regression-Adam"),
    pytest.param(SOFTMAX_REGRESSION, "SGD+momentum", id="softmax-regression-SGD+momentum"),
]


def name(sizes) -> str:
    return "digits MLP" if sizes == MLP_SIZES else "digits softmax regression"


@pytest.mark.parametrize(("sizes", "optimizer"), CASES)
def test_8bit_state_keeps_32bit_test_accuracy(sizes, optimizer):
    """Seed 0, the demo's budget: within half a point (one held-out image)."""
    run32 = digits_run(sizes, optimizer, SEED, 32)
    run8 = digits_run(sizes, optimizer, SEED, 8)
    check_state(run32, 32)
    check_state(run8, 8)
    assert_quantization_changed_the_run(run32, run8)
    gap = report(f"{name(sizes)} {optimizer} seed {SEED}", run32, run8)
    assert run32.test_accuracy > (0.95 if sizes == MLP_SIZES else 0.9)
    assert abs(gap) <= CLOSE, (f"{optimizer}: 8-bit state {100 * run8.test_accuracy:.2f}% vs 32-bit "
                               f"{100 * run32.test_accuracy:.2f}%")
    assert run8.final_loss == pytest.approx(run32.final_loss, rel=0.25)


@pytest.mark.parametrize(("sizes", "optimizer"), CASES)
def test_8bit_state_over_seeds(sizes, optimizer):
    """Over seeds 0-4 the 8-bit state does not cost accuracy on average. A
    single seed moves by one to three held-out images either way (0.28-0.84
    points; with 32-bit state the seeds themselves span about a point), so
    per seed only a collapse (more than 2 points) fails."""
    runs32 = [digits_run(sizes, optimizer, s, 32) for s in SEEDS]
    runs8 = [digits_run(sizes, optimizer, s, 8) for s in SEEDS]
    gaps = np.array([report(f"{name(sizes)} {optimizer} seed {s}", a, b) for s, a, b in zip(SEEDS, runs32, runs8)])
    mean32 = np.mean([r.test_accuracy for r in runs32])
    mean8 = np.mean([r.test_accuracy for r in runs8])
    print(f"{name(sizes)} {optimizer} seeds {SEEDS[0]}-{SEEDS[-1]}: mean held-out accuracy 32-bit "
          f"{100 * mean32:.2f}%, 8-bit {100 * mean8:.2f}%; gaps {np.round(100 * gaps, 2).tolist()} points")
    assert abs(mean8 - mean32) <= CLOSE, f"{optimizer}: mean gap {100 * (mean8 - mean32):+.2f} points"
    assert np.max(np.abs(gaps)) <= 0.02, f"{optimizer}: gaps {np.round(100 * gaps, 2).tolist()} points"


# ------------------------------------------------- binary logistic regression
def synthetic_logistic(seed: int = 7, n_train: int = 4000, n_test: int = 20000, d: int = 50):
    """Labels drawn from a known logistic model (so about 82% is the best any
    classifier can do): a fine-grained held-out set, 0.005 points per example."""
    rng = np.random.default_rng(seed)
    w = 3.0 * rng.standard_normal(d) / np.sqrt(d)
    X = rng.standard_normal((n_train + n_test, d)).astype(np.float32)
    y = (rng.random(len(X)) < 1.0 / (1.0 + np.exp(-(X @ w + 0.5)))).astype(np.float32)
    return (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])


def logistic_loss_and_grads(params, X, y):
    """Mean log loss of sigmoid(X w + b) and its gradient."""
    w, b = params
    z = X @ w + b
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    delta = (0.5 * (1.0 + np.tanh(0.5 * z)) - y) / len(y)
    return loss, [X.T @ delta, np.array([delta.sum()], dtype=np.float32)]


def logistic_accuracy(params, X, y):
    w, b = params
    return float(np.mean((X @ w + b > 0) == (y > 0.5)))


@pytest.mark.parametrize(("label", "cls", "kwargs"), [
    pytest.param("Adam", optim.Adam, dict(lr=0.01), id="Adam"),
    pytest.param("SGD+momentum", optim.SGD, dict(lr=0.1, momentum=0.9), id="SGD+momentum"),
])
def test_binary_logistic_regression_8bit_state_keeps_32bit_test_accuracy(label, cls, kwargs):
    train_data, test_data = synthetic_logistic()
    spec = OptimizerSpec(label, cls, kwargs)
    runs = {}
    for bits in (32, 8):
        params = [np.zeros(train_data[0].shape[1], np.float32), np.zeros(1, np.float32)]
        runs[bits] = train(logistic_loss_and_grads, logistic_accuracy, params, spec, train_data, test_data,
                           SEED, epochs=10, batch_size=64, bits=bits)
    check_state(runs[8], 8)
    assert_quantization_changed_the_run(runs[32], runs[8])
    gap = report(f"binary logistic regression {label}", runs[32], runs[8])
    assert runs[32].test_accuracy > 0.8
    assert abs(gap) <= CLOSE
    assert runs[8].final_loss == pytest.approx(runs[32].final_loss, rel=0.01)


def test_small_arrays_keep_float32_state_by_default():
    """Why the tests pass min_8bit_size=0: every array of these models is
    under the default 4096 elements, which keeps float32 state."""
    params = MLP(list(MLP_SIZES), dtype=np.float32).init_params(np.random.default_rng(SEED))
    assert max(p.size for p in params) < 4096
    opt = optim.Adam(params, lr=0.01, state_bits=8)
    opt.step([np.ones_like(p) for p in params])
    assert all(opt.state[k]["exp_avg"].dtype == np.float32 for k in range(len(params)))


# ----------------------------------------------------------------------- demo
def test_demo_precision_comparison_has_an_8bit_state_row():
    """The demo's 16-bit comparison (python -m fastopt.demo) also trains
    float32 parameters with 8-bit state: its own runs, after the storages'
    (here float32 only, two epochs, so no ml_dtypes needed)."""
    digits_problem()                    # skips without scikit-learn
    problem = next(p for p in problems(quick=True) if p.name == "digits")
    comparison = precision.compare(problem, [SEED], optimizers=["Adam"], storages=[precision.FLOAT32])
    assert [r.storage.label for r in comparison.runs] == ["float32"]
    (run8,) = comparison.state_runs
    assert run8.storage == precision.STATE_8BIT
    assert run8.storage.options(SEED) == EIGHT_BIT
    opt = run8.optimizer_object
    assert all(opt.state[k][role].dtype == np.uint8 for k in range(4) for role in ("exp_avg", "exp_avg_sq"))
    # The same run as this file's (same seed, data, batches, hyperparameters): the same parameters.
    own = train(MLP(list(MLP_SIZES), dtype=np.float32).loss_and_grads, lambda *_: 0.0,
                [p.copy() for p in run8.initial], spec("Adam"), float32(problem.data), float32(problem.test),
                SEED, comparison.epochs, problem.batch_size, 8)
    assert precision.bitwise_equal(own.params, run8.params)
    table = cli.precision_table(comparison)
    assert table.splitlines()[-1].split()[:5] == ["Adam", "float32", "+", "8-bit", "state"]
    verdict = "yes" if abs(comparison.gap("Adam", precision.STATE_8BIT.label)) <= precision.CLOSE else "NO"
    assert f"float32 + 8-bit state {verdict}." in cli.precision_notes(comparison)[0]
