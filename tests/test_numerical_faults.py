"""Numerical faults: NaN, +-Inf, subnormals and huge values in gradients,
parameters and state; extreme but valid hyperparameters; the non-finite policy
of the classes (``nonfinite="ignore" | "raise" | "skip"``).

The contract (docs/algorithms.md, section 1): the kernels compute what
``fastopt.reference`` computes, NaN and Inf included (a NaN reaches the
parameter it updates, as in torch); the policy decides whether a step with a
non-finite gradient runs, raises before anything changes, or is skipped.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

import fastopt
from fastopt import NonFiniteGradientError
from registry import CASE_IDS, CASES, DTYPES, KernelCase

# Every special value an element can hold, each many times among ordinary ones.
SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0, 3.0, -2.0, 1e38, -1e300, 1e-40, 5e-324)
REPEATS = 40
STEPS = 3
LOSSES = [1.0, 2.0, 1.5, 3.0]


def special_values(dtype, seed: int = 0) -> np.ndarray:
    """The specials, shuffled, in `dtype` (1e-40 and 5e-324 are subnormal or
    zero there, 1e38 and -1e300 huge or infinite)."""
    values = np.array(SPECIALS * REPEATS)
    with np.errstate(over="ignore"):
        return values[np.random.default_rng(seed).permutation(values.size)].astype(dtype)


def inputs(case: KernelCase, dtype, where: str):
    """Parameters, gradients and state with the specials in one of them. The
    first state array (a sum of squares for most rules) gets their magnitudes,
    the others the signed values, so both kinds of state see every special."""
    rng = np.random.default_rng(1)
    n = len(SPECIALS) * REPEATS
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    state = case.new_state((n,), dtype)
    special = special_values(dtype)
    if where == "grads":
        g = special
    elif where == "params":
        p = special
    else:
        state = [None if s is None else (np.abs(special) if k == 0 else special.copy()) for k, s in enumerate(state)]
    return p, g, state


def run(fn, case: KernelCase, p, g, state, **hyper):
    p, state = p.copy(), [None if s is None else s.copy() for s in state]
    with np.errstate(all="ignore"):
        for t in range(1, STEPS + 1):
            fn(p, g, *state, **{**case.kwargs(t, LOSSES), **hyper})
    return p, state


def assert_same(fast, ref, label: str):
    (p_fast, s_fast), (p_ref, s_ref) = fast, ref
    np.testing.assert_array_equal(p_fast, p_ref, err_msg=f"{label}: params")
    for k, (a, b) in enumerate(zip(s_fast, s_ref)):
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=f"{label}: state {k}")


@pytest.mark.parametrize("where", ["grads", "params", "state"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_special_values_give_the_reference_result(case, dtype, where):
    """NaN, +-Inf, +-0, subnormals and overflowing values, in any input:
    bitwise the reference's parameters and state (NaN where it has NaN)."""
    p, g, state = inputs(case, dtype, where)
    fast = run(case.functional, case, p, g, state)
    assert_same(fast, run(case.reference, case, p, g, state), case.id)
    if where == "grads" and case.name not in ("lamb", "adafactor"):
        # elementwise rules: a NaN gradient reaches its parameter, the others stay finite
        nan_grad = np.isnan(g)
        assert np.isnan(fast[0][nan_grad]).all(), "a NaN gradient was swallowed"


def extreme_hyperparameters(case: KernelCase) -> dict[str, dict]:
    """Valid but extreme values of the hyperparameters this rule has."""
    names = inspect.signature(case.functional).parameters
    extremes = {}
    if "lr" in names:
        extremes["lr-tiny"] = {"lr": 1e-30}
        extremes["lr-huge"] = {"lr": 1e30}
    if "betas" in names:
        extremes["betas-near-one"] = {"betas": (1 - 1e-9, 1 - 1e-12)}
    if "eps" in names:
        extremes["eps-zero"] = {"eps": (0.0, 0.0) if case.name == "adafactor" else 0.0}
    if "alpha" in names and case.name == "rmsprop":
        extremes["alpha-one"] = {"alpha": 1.0}
    if "momentum" in names and "momentum_buffers" in case.array_state:
        extremes["momentum-near-one"] = {"momentum": 1 - 1e-12}
    if "rho" in names:
        extremes["rho-near-one"] = {"rho": 1 - 1e-12}
    if "step_size_max" in names:
        extremes["step-sizes-extreme"] = {"step_size_min": 0.0, "step_size_max": 1e300}
    return extremes


# Each rule's first configuration, and every Rprop variant.
_FIRST = {case.name: case for case in reversed(CASES)}
EXTREME_CASES = [(case, label, hyper) for case in CASES if case is _FIRST[case.name] or case.name == "rprop"
                 for label, hyper in extreme_hyperparameters(case).items()]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(("case", "label", "hyper"), EXTREME_CASES,
                         ids=[f"{c.id}-{label}" for c, label, _ in EXTREME_CASES])
def test_extreme_hyperparameters_give_the_reference_result(case, label, hyper, dtype):
    rng = np.random.default_rng(2)
    p = rng.standard_normal(1023).astype(dtype)
    g = (rng.standard_normal(1023) * np.logspace(-30, 30, 1023)).astype(dtype)
    g[::97] = 0.0
    state = case.new_state(p.shape, dtype)
    assert_same(run(case.functional, case, p, g, state, **hyper), run(case.reference, case, p, g, state, **hyper),
                f"{case.id} {label}")


def test_every_rule_has_extreme_hyperparameter_cases():
    assert {case.name for case, _, _ in EXTREME_CASES} == {case.name for case in CASES}


# ------------------------------------------------------------ the classes
CLASSES = [cls for cls in vars(fastopt.optim).values()
           if isinstance(cls, type) and issubclass(cls, fastopt.optim.Optimizer) and cls._name]


def stepped_optimizer(cls, policy: str, dtype=np.float32):
    """An optimizer of `cls` over a vector and a matrix, two clean steps in."""
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(257).astype(dtype), rng.standard_normal((9, 31)).astype(dtype)]
    opt = cls(params, nonfinite=policy)
    for _ in range(2):
        opt.step([rng.standard_normal(p.shape).astype(dtype) for p in params], loss=1.0)
    return opt, params


def snapshot(opt, params):
    return [p.copy() for p in params], copy.deepcopy(opt.state_dict())


def assert_unchanged(before, opt, params):
    params_before, state_before = before
    for a, b in zip(params_before, params):
        np.testing.assert_array_equal(a, b)
    after = opt.state_dict()
    assert after["param_groups"] == state_before["param_groups"]
    for i, saved in state_before["state"].items():
        for key, value in saved.items():
            np.testing.assert_array_equal(after["state"][i][key], value, err_msg=f"state {i} {key}")


def poisoned_grads(params, value):
    grads = [np.full(p.shape, 0.5, p.dtype) for p in params]
    grads[0][[3, 100]] = value
    return grads


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_raise_policy_changes_nothing(cls, value):
    opt, params = stepped_optimizer(cls, "raise")
    before = snapshot(opt, params)
    with pytest.raises(NonFiniteGradientError, match="2 gradient elements"):
        opt.step(poisoned_grads(params, value), loss=1.0)
    assert_unchanged(before, opt, params)


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_skip_policy_changes_nothing_and_says_so(cls):
    opt, params = stepped_optimizer(cls, "skip")
    before = snapshot(opt, params)
    stats = opt.step(poisoned_grads(params, np.nan), loss=1.0, stats=True)
    assert stats.skipped
    assert stats.nonfinite_grads == 2
    assert_unchanged(before, opt, params)
    opt.step(poisoned_grads(params, 0.5), loss=1.0)  # and the next clean step runs
    assert not np.array_equal(params[0], before[0][0])


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_ignore_policy_lets_the_nan_reach_its_parameter(cls):
    opt, params = stepped_optimizer(cls, "ignore")
    stats = opt.step(poisoned_grads(params, np.nan), loss=1.0, stats=True)
    assert not stats.skipped
    assert stats.nonfinite_grads == 2
    assert np.isnan(params[0][[3, 100]]).all()


def elementwise_state_key(opt, params) -> str | None:
    """A state array shaped like the first parameter, if the class keeps one
    with its defaults (SGD without momentum keeps none)."""
    return next((k for k, v in opt.state[0].items() if isinstance(v, np.ndarray) and v.shape == params[0].shape),
                None)


STATEFUL = [cls for cls in CLASSES if elementwise_state_key(*stepped_optimizer(cls, "ignore"))]


def poison_and_step(cls, policy: str, where: str):
    opt, params = stepped_optimizer(cls, policy)
    if where == "params":
        params[0][3] = np.nan
    else:
        opt.state[0][elementwise_state_key(opt, params)][3] = np.nan
    stats = opt.step(poisoned_grads(params, 0.5), loss=1.0, stats=True)
    return opt, params, stats


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("where", ["params", "state"])
@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_policies_judge_gradients_only(cls, where, policy):
    """A NaN already in a parameter or in the state is not a gradient fault:
    under every policy the step runs exactly as with nonfinite="ignore"."""
    if where == "state" and cls not in STATEFUL:
        assert not elementwise_state_key(*stepped_optimizer(cls, policy))
        return
    opt, params, stats = poison_and_step(cls, policy, where)
    assert not stats.skipped
    assert stats.nonfinite_grads == 0
    ignoring, ignoring_params, _ = poison_and_step(cls, "ignore", where)
    for a, b in zip(params, ignoring_params):
        np.testing.assert_array_equal(a, b)
    for key, value in opt.state[0].items():
        np.testing.assert_array_equal(value, ignoring.state[0][key], err_msg=key)
    if where == "params":
        assert np.isnan(params[0][3])


def test_most_classes_keep_elementwise_state():
    assert len(STATEFUL) >= len(CLASSES) - 1
