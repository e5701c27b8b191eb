"""The torch-like classes: state handling, param groups, resume, skips."""

import numpy as np
import pytest

import fastopt
from fastopt import optim
from fastopt import reference as R
from registry import NoisyQuadratic

# One entry per class configuration: (class, kwargs, reference kernel, its
# kwargs, state arrays in reference order as (state key, initial value)).
CLASS_CASES = {
    "SGD-momentum": (optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1), R.sgd_,
                     dict(lr=0.05, momentum=0.9, dampening=0.1), [("momentum_buffer", 0.0)]),
    "Adagrad": (optim.Adagrad, dict(lr=0.1, initial_accumulator_value=0.2, lr_decay=0.01), R.adagrad_,
                dict(lr=0.1, lr_decay=0.01), [("sum", 0.2)]),
    "RMSprop": (optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.3), R.rmsprop_,
                dict(lr=0.01, centered=True, momentum=0.3),
                [("square_avg", 0.0), ("grad_avg", 0.0), ("momentum_buffer", 0.0)]),
    "Adam": (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01), R.adam_,
             dict(lr=0.01, amsgrad=True, weight_decay=0.01),
             [("exp_avg", 0.0), ("exp_avg_sq", 0.0), ("max_exp_avg_sq", 0.0)]),
    "AdamW": (optim.AdamW, dict(lr=0.01), R.adamw_, dict(lr=0.01), [("exp_avg", 0.0), ("exp_avg_sq", 0.0)]),
    **{f"Rprop-{v}": (optim.Rprop, dict(lr=0.02, variant=v), R.rprop_, dict(variant=v),
                      [("prev", 0.0), ("step_size", 0.02)] + ([("prev_update", 0.0)] if v.endswith("+") else []))
       for v in ("irprop-", "rprop-", "rprop+", "irprop+")},
    "Quickprop": (optim.Quickprop, dict(lr=0.05, momentum=0.2, mode_switch=1e-4), R.quickprop_,
                  dict(lr=0.05, momentum=0.2, mode_switch=1e-4), [("prev_step", 0.0), ("prev_grad", 0.0)]),
}
NAMES = list(CLASS_CASES)
USES_STEP = {R.sgd_, R.adagrad_, R.adam_, R.adamw_}


def make(name, params):
    cls, kwargs, *_ = CLASS_CASES[name]
    return cls(params, **kwargs)


def drive(opt, params, problems, t0, t1):
    for t in range(t0, t1):
        opt.step([pr.grad(p, t) for pr, p in zip(problems, params)], loss=float(problems[0].losses[t - 1]))


@pytest.mark.parametrize("name", NAMES)
def test_class_matches_reference(name):
    _, _, ref, ref_kwargs, state_spec = CLASS_CASES[name]
    problem = NoisyQuadratic(100, 40, seed=2)
    p = problem.p0.copy()
    opt = make(name, [p])
    q = problem.p0.copy()
    state = [np.full_like(q, init) for _, init in state_spec]
    for t in range(1, 41):
        opt.step([problem.grad(p, t)], loss=float(problem.losses[t - 1]))
        kw = dict(ref_kwargs)
        if ref in USES_STEP:
            kw["step"] = t
        if kw.get("variant") == "irprop+":
            kw["loss"], kw["prev_loss"] = problem.losses[t - 1], (problem.losses[t - 2] if t > 1 else None)
        ref(q, problem.grad(q, t), *state, **kw)
    np.testing.assert_array_equal(p, q)
    for (key, _), arr in zip(state_spec, state):
        np.testing.assert_array_equal(opt.state[0][key], arr)
    assert opt.state[0]["step"] == 40


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_state_dict_is_bitwise_identical(name):
    problems = [NoisyQuadratic(n, 30, seed=n) for n in (5, 300)]
    params = [pr.p0.copy() for pr in problems]
    opt = make(name, params)
    drive(opt, params, problems, 1, 16)
    saved_params = [p.copy() for p in params]
    saved = opt.state_dict()
    drive(opt, params, problems, 16, 31)  # uninterrupted run

    resumed_params = [p.copy() for p in saved_params]
    resumed = make(name, resumed_params)
    resumed.load_state_dict(saved)
    drive(resumed, resumed_params, problems, 16, 31)
    for a, b in zip(params, resumed_params):
        np.testing.assert_array_equal(a, b)
    # the saved dict was a copy: the continued run did not change it
    assert saved["state"][0]["step"] == 15


def test_state_dict_is_a_deep_copy_and_load_copies():
    p = np.ones(4)
    opt = optim.Adam([p], lr=0.1)
    opt.step([np.ones(4)])
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][:] = 123.0
    assert not np.any(opt.state[0]["exp_avg"] == 123.0)
    opt.load_state_dict(sd)
    sd["state"][0]["exp_avg"][:] = 7.0
    assert np.all(opt.state[0]["exp_avg"] == 123.0)


def test_state_dict_layout_matches_torch():
    a, b = np.ones(3), np.ones(2)
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}])
    opt.step([np.ones(3), np.ones(2)])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert opt.state[b] is opt.state[1]  # an array is also a key, like torch's opt.state[p]


def test_lr_is_read_at_every_step():
    p, q = np.ones(5), np.ones(5)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    buf = np.zeros(5)
    for t, lr in enumerate([0.1, 0.1, 0.01, 0.5], start=1):
        opt.param_groups[0]["lr"] = lr
        g = 2 * p
        opt.step([g])
        R.sgd_(q, 2 * q, buf, step=t, lr=lr, momentum=0.9)
    np.testing.assert_array_equal(p, q)


def test_groups_with_different_hyperparameters_equal_separate_optimizers():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(n) for n in (7, 100, 33))
    a2, b2, c2 = a.copy(), b.copy(), c.copy()
    together = optim.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.05, "betas": (0.5, 0.9),
                                                 "amsgrad": True}], lr=0.01)
    first = optim.Adam([a2, b2], lr=0.01)
    second = optim.Adam([c2], lr=0.05, betas=(0.5, 0.9), amsgrad=True)
    for _ in range(20):
        together.step([a * 2, np.sin(b), c - 1])
        first.step([a2 * 2, np.sin(b2)])
        second.step([c2 - 1])
    for x, y in ((a, a2), (b, b2), (c, c2)):
        np.testing.assert_array_equal(x, y)


def test_none_gradient_skips_a_parameter():
    a, b = np.ones(3), np.ones(4)
    opt = optim.Adam([a, b], lr=0.1)
    opt.step([np.ones(3), None])
    assert np.all(b == 1)
    assert 1 not in opt.state
    assert opt.state[0]["step"] == 1
    opt.step([np.ones(3), np.ones(4)])
    assert opt.state[0]["step"] == 2
    assert opt.state[1]["step"] == 1
    # b's first step uses bias corrections for t = 1, like a's first step did
    np.testing.assert_allclose(b, 1 - 0.1)


def test_mixed_dtype_model_matches_per_dtype_optimizers():
    p32, p64 = np.ones(10, np.float32), np.ones(6)
    q32, q64 = p32.copy(), p64.copy()
    opt = optim.RMSprop([p32, p64], lr=0.01, momentum=0.5)
    o32, o64 = optim.RMSprop([q32], lr=0.01, momentum=0.5), optim.RMSprop([q64], lr=0.01, momentum=0.5)
    for _ in range(5):
        opt.step([p32 * 3, p64 - 4])
        o32.step([q32 * 3])
        o64.step([q64 - 4])
    np.testing.assert_array_equal(p32, q32)
    np.testing.assert_array_equal(p64, q64)
    assert p32.dtype == np.float32
    assert opt.state[0]["square_avg"].dtype == np.float32


def test_add_param_group_and_single_array_shortcuts():
    a = np.ones(3)
    opt = optim.SGD(a, lr=0.1)           # a bare array is one parameter
    opt.step(np.ones(3))                 # and a bare gradient its gradient
    np.testing.assert_allclose(a, 0.9)
    b = np.ones(2)
    opt.add_param_group({"params": b, "lr": 1.0})
    opt.step([np.ones(3), np.ones(2)])
    np.testing.assert_allclose(b, 0.0)
    with pytest.raises(ValueError, match="share memory"):
        opt.add_param_group({"params": [a]})


def test_toggling_momentum_on_starts_the_buffer_from_the_gradient():
    """As in torch: a momentum buffer created mid-run is initialised to g."""
    p, q = np.ones(4), np.ones(4)
    opt = optim.SGD([p], lr=0.1)
    opt.step([np.ones(4)])
    opt.param_groups[0]["momentum"] = 0.9
    opt.step([np.ones(4)])
    R.sgd_(q, np.ones(4), step=1, lr=0.1)
    buf = np.zeros(4)
    R.sgd_(q, np.ones(4), buf, step=1, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(p, q)


def test_step_returns_the_loss_and_repr_lists_groups():
    opt = optim.Rprop([np.ones(2)], variant="irprop+")
    assert opt.step([np.ones(2)], loss=3.5) == 3.5
    assert "variant: irprop+" in repr(opt)


def test_runtime_info():
    info = fastopt.runtime_info()
    assert info["simd_target"] in info["supported_targets"]
    assert info["parallel_grain"] == fastopt._core.PARALLEL_GRAIN


# ------------------------------------------------- the cached step plan
def _pair_of_runs(mutate, steps_before=3, steps_after=3):
    """Runs an optimizer with a cached plan and a fresh optimizer rebuilt from
    its state_dict after `mutate`; both must take identical steps."""
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(n) for n in (3, 40, 7)]
    opt = optim.Adam(params, lr=0.05)
    grads = lambda: [np.cos(p) for p in params]  # noqa: E731
    for _ in range(steps_before):
        opt.step(grads())
    mutate(opt, params)
    twin_params = [p.copy() for p in params]
    twin = optim.Adam(twin_params, lr=0.05)
    twin.load_state_dict(opt.state_dict())
    for _ in range(steps_after):
        opt.step(grads())
        twin.step([np.cos(p) for p in twin_params])
    for a, b in zip(params, twin_params):
        np.testing.assert_array_equal(a, b)


def test_plan_sees_a_state_array_replaced_by_hand():
    _pair_of_runs(lambda opt, ps: opt.state[1].__setitem__("exp_avg", np.full(40, 0.5)))


def test_plan_sees_a_step_counter_set_by_hand():
    _pair_of_runs(lambda opt, ps: opt.state[0].__setitem__("step", 1))


def test_plan_sees_a_whole_state_replaced_or_deleted():
    def mutate(opt, ps):
        opt.state[2] = {"step": 1, "exp_avg": np.zeros(7), "exp_avg_sq": np.ones(7)}
        del opt.state[0]
    _pair_of_runs(mutate)


def test_plan_sees_amsgrad_switched_on_mid_run():
    _pair_of_runs(lambda opt, ps: opt.param_groups[0].__setitem__("amsgrad", True))


def test_plan_follows_the_none_pattern_and_lr_changes():
    p, q = np.ones(4), np.ones(4)
    opt = optim.SGD([p, q], lr=0.1, momentum=0.5)
    opt.step([np.ones(4), np.ones(4)])
    opt.step([np.ones(4), None])          # q skipped: new plan
    opt.param_groups[0]["lr"] = 0.0       # lr is read every step, even from a cached plan
    opt.step([np.ones(4), None])
    assert opt.state[0]["step"] == 3
    assert opt.state[1]["step"] == 1
    np.testing.assert_allclose(p, 1 - 0.1 - 0.1 * 1.5)
