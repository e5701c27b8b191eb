"""The cached step plan of the classes (optimizers/_base.py) is invalidated by
every mutation of the state or of the param groups, and the next step then
does what the mutation says, as torch.optim would: a new state array is the
one the kernel updates, a removed state restarts its parameter, a new
parameter starts fresh, a removed parameter and its state are left alone.
No step ever writes into an array the optimizer no longer owns.

Each case runs the optimizer next to a *twin*: copies of the parameters and a
torch-style state (keyed by the parameter array, not its index), stepped by
the NumPy reference (fastopt.reference) with the hyperparameters the
optimizer's param groups hold. After every step both must agree bitwise.
Subjects: Adam, SGD with momentum, Rprop's irprop+ (which keeps the loss).
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from fastopt import _core, optim
from fastopt import reference as R
from fastopt.optimizers._base import SPECS, Optimizer, TrackedState


# ------------------------------------------------------------------ helpers
def gradient(p: np.ndarray, t: int) -> np.ndarray:
    """Depends on p (a wrong update compounds) and flips signs with t (Rprop's branches)."""
    return (np.sin(3.0 * p + 0.9 * t) + 0.2 * np.cos(1.3 * t)).astype(p.dtype)


def loss_at(t: int) -> float:
    """Goes up and down: irprop+ backtracks on some steps only."""
    return 1.0 + 0.3 * math.sin(1.7 * t)


# Every declared pair (betas, etas, step_sizes, ...) and its halves.
PAIRS = {name: halves for spec in SPECS.values() for name, halves in spec.pairs.items()}


def reference_kwargs(fn, group) -> dict:
    """The reference's keyword arguments from a param group (pairs split)."""
    params = inspect.signature(fn).parameters
    out = {}
    for name, value in group.items():
        if name in params and params[name].kind == params[name].KEYWORD_ONLY:
            out[name] = value
        elif name in PAIRS:
            for half, v in zip(PAIRS[name], value):
                if half in params:
                    out[half] = v
    return out


def adam_ref(p, g, st, group, loss):
    st.setdefault("exp_avg", np.zeros_like(p))
    st.setdefault("exp_avg_sq", np.zeros_like(p))
    if group["amsgrad"]:
        st.setdefault("max_exp_avg_sq", np.zeros_like(p))
    st["step"] = st.get("step", 0) + 1
    R.adam_(p, g, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq"), step=st["step"],
            **reference_kwargs(R.adam_, group))


def sgd_ref(p, g, st, group, loss):
    fresh = group["momentum"] != 0 and "momentum_buffer" not in st
    if group["momentum"] != 0:
        st.setdefault("momentum_buffer", np.zeros_like(p))
    st["step"] = st.get("step", 0) + 1
    # torch: a new momentum buffer starts as the gradient (the reference does that at step 1)
    R.sgd_(p, g, st.get("momentum_buffer"), step=1 if fresh else st["step"], **reference_kwargs(R.sgd_, group))


def rprop_ref(p, g, st, group, loss):
    st.setdefault("prev", np.zeros_like(p))
    st.setdefault("step_size", np.full_like(p, group["lr"]))
    if group["variant"].endswith("+"):
        st.setdefault("prev_update", np.zeros_like(p))
    st["step"] = st.get("step", 0) + 1
    R.rprop_(p, g, st["prev"], st["step_size"], st.get("prev_update"), loss=loss, prev_loss=st.get("prev_loss"),
             **reference_kwargs(R.rprop_, group))
    if group["variant"] == "irprop+":
        st["prev_loss"] = float(loss)


@dataclass(frozen=True)
class Subject:
    name: str
    cls: type
    kwargs: dict
    other_group: dict            # hyperparameters of a second param group
    arrays: tuple[str, ...]      # state arrays every parameter has
    ref: Callable
    scalars: tuple[str, ...] = ("step",)
    invalid: dict = field(default_factory=dict)  # group settings the declaration rejects

    def random_state(self, p, rng) -> dict:
        st = {k: rng.uniform(0.01, 0.5, p.shape).astype(p.dtype) for k in self.arrays}
        st["step"] = 5
        if "prev_loss" in self.scalars:
            st["prev_loss"] = 0.5
        return st


SUBJECTS = [
    Subject("Adam", optim.Adam, dict(lr=0.05), dict(lr=0.02, betas=(0.8, 0.99)), ("exp_avg", "exp_avg_sq"),
            adam_ref, invalid={"lr": -1.0, "betas": (1.0, 0.9), "eps": -1e-8}),
    Subject("SGD-momentum", optim.SGD, dict(lr=0.05, momentum=0.9), dict(lr=0.02, momentum=0.5, dampening=0.1),
            ("momentum_buffer",), sgd_ref,
            invalid={"lr": -1.0, "momentum": -0.5, "nesterov": True}),  # nesterov needs dampening 0
    Subject("Rprop-irprop+", optim.Rprop, dict(lr=0.01, variant="irprop+"),
            dict(lr=0.02, variant="irprop+", etas=(0.4, 1.3)), ("prev", "step_size", "prev_update"), rprop_ref,
            scalars=("step", "prev_loss"),
            invalid={"etas": (1.5, 1.2), "step_sizes": (1.0, 0.5), "variant": "bogus", "weight_decay": -1.0}),
]
SUBJECT_IDS = [s.name for s in SUBJECTS]
by_subject = pytest.mark.parametrize("subject", SUBJECTS, ids=SUBJECT_IDS)


class Twin:
    """Parameter copies and a torch-style state, keyed by the optimizer's parameter arrays."""

    def __init__(self, subject: Subject, opt: Optimizer):
        self.subject = subject
        self.copies: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.state: dict[int, dict] = {}
        for p in opt.params:
            self.track(p)

    def track(self, p):
        self.copies[id(p)] = (p, p.copy())

    def st(self, p) -> dict:
        return self.state.setdefault(id(p), {})

    def drop(self, p):
        self.state.pop(id(p), None)


class Frozen:
    """Arrays the optimizer no longer owns: they must never change again."""

    def __init__(self, *arrays):
        self.items = [(a, a.copy()) for a in arrays if isinstance(a, np.ndarray)]
        assert self.items

    def check(self):
        for a, saved in self.items:
            np.testing.assert_array_equal(a, saved, err_msg="the optimizer wrote into an array it no longer owns")


def arrays_of(state) -> list:
    return [v for v in dict.values(state) if isinstance(v, np.ndarray)]


def make(subject: Subject, groups: bool = False, sizes=(5, 12, 3), dtypes=None, steps: int = 3, **overrides):
    """An optimizer over three parameters (two groups with groups=True), its
    twin, and `steps` steps taken by both."""
    rng = np.random.default_rng(0)
    dtypes = dtypes or [np.float64] * len(sizes)
    params = [rng.standard_normal(n).astype(d) for n, d in zip(sizes, dtypes)]
    kwargs = {**subject.kwargs, **overrides}
    if groups:
        opt = subject.cls([{"params": params[:2]}, {"params": params[2:], **subject.other_group}], **kwargs)
    else:
        opt = subject.cls(params, **kwargs)
    twin = Twin(subject, opt)
    run(opt, twin, 1, steps + 1)
    return opt, twin, params


def step_both(opt, twin, t, skip=(), check=True):
    """One step of the optimizer and of its twin; `skip`: indices whose gradient is None."""
    params = opt.params
    for p in params:
        if id(p) not in twin.copies:
            twin.track(p)
    grads = [None if k in skip else gradient(p, t) for k, p in enumerate(params)]
    loss = loss_at(t)
    opt.step(grads, loss=loss)
    k = 0
    for group in opt.param_groups:
        for p in group["params"]:
            if grads[k] is not None:
                twin.subject.ref(twin.copies[id(p)][1], grads[k], twin.st(p), group, loss)
            k += 1
    if check:
        assert_same(opt, twin, t)


def run(opt, twin, t0, t1, **kw):
    for t in range(t0, t1):
        step_both(opt, twin, t, **kw)


def assert_same(opt, twin, t=None):
    """Every current parameter and its state (at its index in param_groups
    order, as in state_dict) equal the twin's."""
    for i, p in enumerate(opt.params):
        where = f"param {i} after step {t}"
        np.testing.assert_array_equal(p, twin.copies[id(p)][1], err_msg=where)
        expected = twin.state.get(id(p))
        if not expected:
            assert not dict.get(opt.state, i), f"{where}: has state {dict(opt.state[i])}, expected none"
            continue
        actual = opt.state[i]
        assert opt.state[p] is actual, f"{where}: opt.state[p] is not opt.state[{i}]"
        assert set(dict.keys(actual)) == set(expected), f"{where}: state keys"
        for key, want in expected.items():
            got = actual[key]
            if isinstance(want, np.ndarray):
                np.testing.assert_array_equal(got, want, err_msg=f"{where}: state {key!r}")
            else:
                assert got == want, f"{where}: state {key!r} is {got!r}, expected {want!r}"


# ------------------------------------------------------- opt.state mutations
@by_subject
@pytest.mark.parametrize("how", ["setitem", "update"])
def test_state_replaced(subject, how):
    opt, twin, params = make(subject)
    old = Frozen(*arrays_of(opt.state[1]))
    new = subject.random_state(params[1], np.random.default_rng(1))
    if how == "setitem":
        opt.state[1] = new
    else:
        opt.state.update({1: new})
    twin.state[id(params[1])] = copy.deepcopy(new)
    before = {k: v.copy() for k, v in new.items() if isinstance(v, np.ndarray)}
    run(opt, twin, 4, 7)
    for key, arr in before.items():
        assert opt.state[1][key] is new[key], f"{key}: the kernel does not use the new array"
        assert not np.array_equal(new[key], arr), f"{key}: the new array was not updated"
    assert opt.state[1]["step"] == 8
    old.check()


@by_subject
@pytest.mark.parametrize("how", ["delitem", "pop", "popitem"])
def test_state_removed_restarts_the_parameter(subject, how):
    opt, twin, params = make(subject)
    if how == "delitem":
        removed, old = 1, Frozen(*arrays_of(opt.state[1]))
        del opt.state[1]
    elif how == "pop":
        removed = 1
        old = Frozen(*arrays_of(opt.state.pop(1)))
    else:
        removed, popped = opt.state.popitem()
        old = Frozen(*arrays_of(popped))
    twin.drop(params[removed])
    run(opt, twin, 4, 6)
    assert opt.state[removed]["step"] == 2  # restarted at step 1
    assert opt.state[(removed + 1) % 3]["step"] == 5
    old.check()


@by_subject
def test_state_setdefault(subject):
    opt, twin, params = make(subject)
    rng = np.random.default_rng(2)
    decoy = subject.random_state(params[0], rng)
    untouched = Frozen(*arrays_of(decoy))
    existing = opt.state[0]
    assert opt.state.setdefault(0, decoy) is existing  # present: no change
    old = Frozen(*arrays_of(opt.state[2]))
    del opt.state[2]
    twin.drop(params[2])
    new = subject.random_state(params[2], rng)
    opt.state.setdefault(2, new)                       # absent: becomes the state
    twin.state[id(params[2])] = copy.deepcopy(new)
    run(opt, twin, 4, 7)
    assert all(opt.state[2][k] is new[k] for k in subject.arrays)
    untouched.check()
    old.check()


@by_subject
def test_state_clear_restarts_everything(subject):
    opt, twin, _ = make(subject)
    old = Frozen(*[a for i in range(3) for a in arrays_of(opt.state[i])])
    opt.state.clear()
    twin.state.clear()
    run(opt, twin, 4, 6)
    assert [opt.state[i]["step"] for i in range(3)] == [2, 2, 2]
    old.check()


# --------------------------------------------- a parameter's state mutations
@by_subject
@pytest.mark.parametrize("how", ["setitem", "update"])
def test_param_state_array_replaced(subject, how):
    opt, twin, params = make(subject)
    key = subject.arrays[0]
    old = Frozen(opt.state[1][key])
    new = np.random.default_rng(3).uniform(0.01, 0.5, params[1].shape)
    saved = new.copy()
    if how == "setitem":
        opt.state[params[1]][key] = new
        twin.st(params[1])[key] = new.copy()
    else:
        opt.state[params[1]].update({key: new, "step": 10})
        twin.st(params[1]).update({key: new.copy(), "step": 10})
    run(opt, twin, 4, 6)
    assert opt.state[1][key] is new, "the kernel does not use the new array"
    assert not np.array_equal(new, saved)
    old.check()


@by_subject
def test_param_state_step_replaced(subject):
    opt, twin, params = make(subject)
    opt.state[0]["step"] = 1
    twin.st(params[0])["step"] = 1
    run(opt, twin, 4, 6)
    assert opt.state[0]["step"] == 3


@by_subject
@pytest.mark.parametrize("how", ["delitem", "pop", "popitem"])
def test_param_state_entry_removed(subject, how):
    """A removed state array starts again from its initial value (the step
    count goes on); a removed scalar from its initial value too."""
    opt, twin, params = make(subject)
    st = opt.state[params[1]]
    if how == "delitem":
        key = subject.arrays[0]
        value = st[key]
        del st[key]
    elif how == "pop":
        key = subject.arrays[-1]
        value = st.pop(key)
    else:
        key, value = st.popitem()
    twin.st(params[1]).pop(key)
    run(opt, twin, 4, 6)
    if isinstance(value, np.ndarray):
        assert opt.state[1][key] is not value
        Frozen(value).check()
    else:
        assert key not in ("step",) or opt.state[1]["step"] == 2


@by_subject
def test_param_state_entry_removed_keeps_the_old_array_untouched(subject):
    opt, twin, params = make(subject)
    key = subject.arrays[0]
    old = Frozen(opt.state[1][key])
    del opt.state[1][key]
    twin.st(params[1]).pop(key)
    run(opt, twin, 4, 6)
    old.check()


@by_subject
def test_param_state_setdefault(subject):
    opt, twin, params = make(subject)
    key = subject.arrays[0]
    decoy = np.full(params[1].shape, 7.0)
    current = opt.state[1][key]
    assert opt.state[1].setdefault(key, decoy) is current  # present: no change
    old = Frozen(opt.state[1].pop(key))
    new = np.random.default_rng(4).uniform(0.01, 0.5, params[1].shape)
    opt.state[1].setdefault(key, new)                        # absent: the new array
    twin.st(params[1])[key] = new.copy()
    run(opt, twin, 4, 6)
    assert opt.state[1][key] is new
    assert np.all(decoy == 7.0)
    old.check()


@by_subject
def test_param_state_clear_restarts_the_parameter(subject):
    opt, twin, params = make(subject)
    old = Frozen(*arrays_of(opt.state[1]))
    opt.state[params[1]].clear()
    twin.st(params[1]).clear()
    run(opt, twin, 4, 6)
    assert opt.state[1]["step"] == 2
    assert opt.state[0]["step"] == 5
    old.check()


# --------------------------------------------------------- load_state_dict
@by_subject
def test_load_state_dict(subject):
    opt, twin, _ = make(subject)
    saved = opt.state_dict()
    saved_twin = copy.deepcopy(twin.state)
    run(opt, twin, 4, 6)
    in_saved = Frozen(*[a for st in saved["state"].values() for a in arrays_of(st)])
    old = Frozen(*[a for i in range(3) for a in arrays_of(opt.state[i])])
    opt.load_state_dict(saved)
    twin.state = copy.deepcopy(saved_twin)
    run(opt, twin, 6, 9)
    assert opt.state[0]["step"] == 6
    old.check()
    in_saved.check()


# -------------------------------------------------------- param group mutations
def new_group(subject, opt, p, **hyper):
    """A complete param group (as torch's step needs) for a new parameter."""
    return {**opt.defaults, **subject.other_group, **hyper, "params": [p]}


def new_param(n=4, seed=9):
    return np.random.default_rng(seed).standard_normal(n)


@by_subject
def test_add_param_group(subject):
    opt, twin, _ = make(subject, groups=True)
    p = new_param()
    opt.add_param_group({"params": [p], "lr": 0.03})
    twin.track(p)
    run(opt, twin, 4, 6)
    assert opt.state[3]["step"] == 2
    assert opt.state[2]["step"] == 5


@by_subject
def test_param_groups_append(subject):
    opt, twin, _ = make(subject, groups=True)
    p = new_param()
    opt.param_groups.append(new_group(subject, opt, p, lr=0.03))
    twin.track(p)
    run(opt, twin, 4, 6)
    assert opt.state[p]["step"] == 2


@by_subject
def test_param_groups_insert(subject):
    """Parameters keep their own state when a group is inserted before them."""
    opt, twin, params = make(subject, groups=True)
    p = new_param()
    opt.param_groups.insert(0, new_group(subject, opt, p, lr=0.03))
    twin.track(p)
    run(opt, twin, 4, 6)
    assert opt.state[p]["step"] == 2
    assert opt.state[params[0]]["step"] == 5


@by_subject
def test_param_groups_setitem(subject):
    """A replaced group's parameters and state are left alone; the new one starts fresh."""
    opt, twin, params = make(subject, groups=True)
    removed = Frozen(params[2], *arrays_of(opt.state[2]))
    p = new_param()
    opt.param_groups[1] = new_group(subject, opt, p)
    twin.track(p)
    twin.drop(params[2])
    run(opt, twin, 4, 6)
    assert opt.state[p]["step"] == 2
    assert opt.state[params[0]]["step"] == 5
    removed.check()


@by_subject
@pytest.mark.parametrize("how", ["delitem", "pop"])
def test_param_groups_removed(subject, how):
    """The remaining parameters keep their own state; the removed ones and
    their state are left alone."""
    opt, twin, params = make(subject, groups=True)
    removed = Frozen(params[0], params[1], *arrays_of(opt.state[0]), *arrays_of(opt.state[1]))
    if how == "delitem":
        del opt.param_groups[0]
    else:
        opt.param_groups.pop(0)
    twin.drop(params[0])
    twin.drop(params[1])
    run(opt, twin, 4, 6)
    assert opt.params == [params[2]]
    assert opt.state[params[2]]["step"] == 5
    removed.check()


@by_subject
@pytest.mark.parametrize("how", ["assign", "setitem"])
def test_group_params_replaced(subject, how):
    """A parameter replaced in a group: the new array is updated, from fresh
    state; the old one and its state are left alone."""
    opt, twin, params = make(subject, groups=True)
    removed = Frozen(params[0], *arrays_of(opt.state[0]))
    p = new_param(n=params[0].size)  # same shape: the old state would fit, but is not the new array's
    if how == "assign":
        opt.param_groups[0]["params"] = [p, params[1]]
    else:
        opt.param_groups[0]["params"][0] = p
    twin.track(p)
    twin.drop(params[0])
    before = p.copy()
    step_both(opt, twin, 4, check=False)
    assert not np.array_equal(p, before), "the new parameter was not updated"
    assert opt.state_dict()["state"][0]["step"] == 1, \
        "the new parameter did not start fresh: it took over the replaced parameter's state"
    removed.check()
    assert_same(opt, twin, 4)
    run(opt, twin, 5, 6)
    assert opt.state[p]["step"] == 2
    assert opt.state[params[1]]["step"] == 5


@by_subject
def test_group_params_append(subject):
    opt, twin, params = make(subject, groups=True)
    p = new_param()
    opt.param_groups[0]["params"].append(p)
    twin.track(p)
    run(opt, twin, 4, 6)
    assert opt.state[p]["step"] == 2
    assert opt.state[params[2]]["step"] == 5


# ----------------------------------------------------------- lazy scalar state
@by_subject
def test_scalar_state_is_right_when_read_after_steps(subject):
    opt, twin, params = make(subject, steps=1)
    held = opt.state[params[1]]  # a TrackedState taken before the steps
    assert isinstance(held, TrackedState)
    n = 7
    run(opt, twin, 2, n + 1, check=False)  # no reads in between
    assert held["step"] == n
    assert held.get("step") == n
    assert dict(held.items())["step"] == n
    assert held.copy()["step"] == n
    assert [st["step"] for st in opt.state_dict()["state"].values()] == [n] * 3
    assert opt.state[params[0]]["step"] == n
    assert opt.state[2]["step"] == n
    if "prev_loss" in subject.scalars:
        assert held["prev_loss"] == loss_at(n)
        assert opt.state_dict()["state"][0]["prev_loss"] == loss_at(n)
    assert_same(opt, twin, n)


@by_subject
def test_held_state_reference_copied_after_steps(subject):
    """dict(st), {**st} and st == ... read a held per-parameter state like st[key] does."""
    opt, twin, _ = make(subject, steps=1)
    held = opt.state[1]
    run(opt, twin, 2, 8, check=False)
    assert dict(held)["step"] == 7, "dict(opt.state[i]) taken earlier reads a stale step"
    assert {**held}["step"] == 7, "{**opt.state[i]} taken earlier reads a stale step"


# --------------------------------------------------------- hyperparameters
CHANGES = {"Adam": [{"lr": 0.2}, {"lr": 0.0}, {"betas": (0.5, 0.9)}],
           "SGD-momentum": [{"lr": 0.2}, {"lr": 0.0}, {"momentum": 0.3, "dampening": 0.2}],
           "Rprop-irprop+": [{"etas": (0.3, 1.5)}, {"step_sizes": (1e-3, 0.02)}, {"variant": "rprop+"}]}


@by_subject
def test_hyperparameter_changes_need_no_rebuild_and_are_honoured(subject):
    opt, twin, _ = make(subject, groups=True)
    plan = opt._plan
    t = 4
    for change in CHANGES[subject.name]:
        opt.param_groups[0].update(change)
        run(opt, twin, t, t + 2)
        t += 2
        assert opt._plan is plan, f"{change}: the step plan was rebuilt"


@by_subject
def test_none_gradients_skip_like_torch(subject):
    """A parameter whose gradient is None keeps its state and step; one that
    never had a gradient has no state, then starts at step 1."""
    opt, twin, params = make(subject, steps=0)
    run(opt, twin, 1, 4, skip=(2,))
    assert 2 not in opt.state
    frozen_p1 = Frozen(params[1], *arrays_of(opt.state[1]))
    run(opt, twin, 4, 6, skip=(1,))
    frozen_p1.check()
    assert opt.state[1]["step"] == 3
    assert opt.state[0]["step"] == 5
    assert opt.state[2]["step"] == 2
    run(opt, twin, 6, 8)
    assert [opt.state[i]["step"] for i in range(3)] == [7, 5, 4]


@by_subject
def test_step_with_every_gradient_none_then_resumes(subject):
    """A step where every gradient is None changes nothing (torch); the
    following steps update the parameters again."""
    opt, twin, params = make(subject)
    frozen = Frozen(*params, *[a for i in range(3) for a in arrays_of(opt.state[i])])
    run(opt, twin, 4, 5, skip=(0, 1, 2))
    frozen.check()
    assert [opt.state[i]["step"] for i in range(3)] == [3, 3, 3]
    before = [p.copy() for p in params]
    step_both(opt, twin, 5, check=False)
    assert not any(np.array_equal(p, b) for p, b in zip(params, before)), \
        "after a step with every gradient None, the next step updated nothing"
    assert_same(opt, twin, 5)
    run(opt, twin, 6, 8)
    assert [opt.state[i]["step"] for i in range(3)] == [6, 6, 6]


def test_amsgrad_switched_on_mid_run_creates_max_exp_avg_sq():
    subject = SUBJECTS[0]
    opt, twin, _ = make(subject, groups=True)
    assert "max_exp_avg_sq" not in opt.state[0]
    opt.param_groups[0]["amsgrad"] = True
    run(opt, twin, 4, 7)
    assert all("max_exp_avg_sq" in opt.state[i] for i in (0, 1))
    assert "max_exp_avg_sq" not in opt.state[2]
    assert opt.state[0]["step"] == 6


def snapshot(opt):
    return [p.copy() for p in opt.params], copy.deepcopy(opt.state_dict())


def assert_unchanged(opt, snap):
    saved_params, saved = snap
    for p, q in zip(opt.params, saved_params):
        np.testing.assert_array_equal(p, q, err_msg="a rejected step changed a parameter")
    now = opt.state_dict()
    assert now["state"].keys() == saved["state"].keys()
    for i, st in saved["state"].items():
        assert now["state"][i].keys() == st.keys()
        for key, value in st.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(now["state"][i][key], value, err_msg=f"state[{i}][{key!r}]")
            else:
                assert now["state"][i][key] == value, f"a rejected step changed state[{i}][{key!r}]"


@by_subject
@pytest.mark.parametrize("mixed", [False, True], ids=["float64", "float32+float64"])
def test_invalid_hyperparameter_is_rejected_before_anything_changes(subject, mixed):
    """The bad value is in the last group: the first group (another dtype in
    the mixed case) must not have moved either."""
    dtypes = [np.float32, np.float32, np.float64] if mixed else None
    opt, twin, _ = make(subject, groups=True, dtypes=dtypes)
    t = 4
    for name, bad in subject.invalid.items():
        good = opt.param_groups[1][name]
        opt.param_groups[1][name] = bad
        snap = snapshot(opt)
        with pytest.raises(ValueError, match=name.rstrip("s").split("_")[0]):
            opt.step([gradient(p, t) for p in opt.params], loss=loss_at(t))
        assert_unchanged(opt, snap)
        opt.param_groups[1][name] = good
        step_both(opt, twin, t)
        t += 1


@by_subject
def test_invalid_hyperparameter_on_the_rebuild_path(subject):
    """A state change (plan rebuild) and a bad value together: rejected before
    anything changes; once the value is fixed the state change is honoured."""
    opt, twin, params = make(subject, groups=True)
    name, bad = next(iter(subject.invalid.items()))
    good = opt.param_groups[1][name]
    del opt.state[0]
    twin.drop(params[0])
    opt.param_groups[1][name] = bad
    snap = snapshot(opt)
    with pytest.raises(ValueError, match=name.rstrip("s").split("_")[0]):
        opt.step([gradient(p, 4) for p in opt.params], loss=loss_at(4))
    assert_unchanged(opt, snap)
    opt.param_groups[1][name] = good
    run(opt, twin, 4, 6)
    assert opt.state[0]["step"] == 2


# --------------------------------------- every class equals its functional form
def optimizer_classes():
    from fastopt.optimizers.lbfgs import LBFGS
    return [obj for name in optim.__all__ for obj in [getattr(optim, name)]
            if inspect.isclass(obj) and issubclass(obj, Optimizer) and obj not in (Optimizer, LBFGS)]


CLASSES = optimizer_classes()
CONFIGS = {"defaults": {}, "regularized": {"weight_decay": 1e-2, "l1": 1e-3, "maximize": True}}


def functional_call_kwargs(cls, fn, group):
    """The functional form's hyperparameter keywords from a class's group."""
    params = inspect.signature(fn).parameters
    out = {}
    for name, value in group.items():
        if name == "params":
            continue
        if name in params and params[name].kind == params[name].KEYWORD_ONLY:
            out[name] = value
        elif name in cls._pairs:
            for half, v in zip(cls._pairs[name], value):
                if half in params:
                    out[half] = v
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_class_equals_its_functional_form(cls, config):
    """20 steps of the class and 20 calls of its functional form by hand (one
    call per parameter, state arrays made by hand), bitwise."""
    spec = _core.optimizers()[cls._name]
    fn = getattr(sys.modules[cls.__module__], cls.__name__.lower() + "_")
    fn_params = inspect.signature(fn).parameters
    rng = np.random.default_rng(3)
    shapes = [(5,), (4, 6)]
    ps = [rng.standard_normal(s) for s in shapes]
    qs = [p.copy() for p in ps]
    defaults = inspect.signature(cls.__init__).parameters
    opt = cls(ps, **{k: v for k, v in CONFIGS[config].items() if k in defaults})
    group = opt.param_groups[0]
    kwargs = functional_call_kwargs(cls, fn, group)
    shape_of = {"param": lambda s: s, "rows": lambda s: s[:-1] + (1,), "cols": lambda s: s[:-2] + (1,) + s[-1:]}
    states, scalars = None, [{"step": 0} for _ in qs]
    prev_loss = None
    for t in range(1, 21):
        loss = loss_at(t)
        opt.step([gradient(p, t) for p in ps], loss=loss)
        if states is None:  # the state arrays the class made are the ones the functional form needs
            states = [[np.full(shape_of[rule](q.shape), opt._initial_value(key, group), dtype=q.dtype)
                       if key in opt.state[i] else None for key, rule in spec.state] for i, q in enumerate(qs)]
        for i, q in enumerate(qs):
            scalars[i]["step"] += 1
            extra = {}
            per_step = {h[0] for h in spec.hypers if h[3] == "per_step"}
            hook = None
            for name in per_step & set(fn_params):
                if name == "step":
                    extra["step"] = scalars[i]["step"]
                else:  # other per-step values (NAdam's mu_product, ...): the class's hook
                    fresh = {key for (key, _), a in zip(spec.state, states[i]) if a is not None} if t == 1 else set()
                    hook = hook or opt._per_step(group, dict(scalars[i]), fresh, loss)
                    extra[name] = hook[name]
            if "loss" in fn_params:
                extra["loss"], extra["prev_loss"] = loss, prev_loss
            fn(q, gradient(q, t), *states[i], **kwargs, **extra)
            scalars[i] = opt._after_step(group, dict(scalars[i]), loss)
        prev_loss = loss
    for i, (p, q) in enumerate(zip(ps, qs)):
        np.testing.assert_array_equal(p, q, err_msg=f"param {i}")
        assert opt.state[i]["step"] == 20
        for (key, _), arr in zip(spec.state, states[i]):
            if arr is not None:
                np.testing.assert_array_equal(opt.state[i][key], arr, err_msg=f"state[{i}][{key!r}]")
