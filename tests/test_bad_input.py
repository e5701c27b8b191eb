"""Bad input raises TypeError/ValueError naming the argument, before any
buffer is written: every test snapshots all arrays and checks them after."""

import inspect

import numpy as np
import pytest

from fastopt import functional as F
from fastopt import optim
from registry import CASE_IDS, CASES

SIZE = 16


class Call:
    """A valid functional call (float64, size 16) that a mutation then breaks."""

    def __init__(self, case):
        rng = np.random.default_rng(0)
        self.case = case
        self.params = rng.standard_normal(SIZE)
        self.grads = rng.standard_normal(SIZE)
        self.state = {name: np.full(SIZE, 0.01) if name in case.array_state else None for name in case.state}
        self.kwargs = case.kwargs(2, np.array([1.0, 2.0]))

    def arrays(self):
        return [self.params, self.grads, *self.state.values()]

    def run(self):
        self.case.functional(self.params, self.grads, *self.state.values(), **self.kwargs)


def check_rejected(call, error, *fragments):
    before = [np.array(a, copy=True) for a in call.arrays() if isinstance(a, np.ndarray)]
    with pytest.raises(error) as info:
        call.run()
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {info.value}"
    after = [a for a in call.arrays() if isinstance(a, np.ndarray)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def first_state(call):
    return call.case.array_state[0]


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


# mutation id -> (applies(case), mutate(call) -> (error, fragments of the message))
def _wrong_dtype(c):
    c.params = c.params.astype(np.int64)
    return TypeError, ["params[0]", "int64"]


def _half_grads(c):
    c.grads = c.grads.astype(np.float16)
    return TypeError, ["grads[0]", "float16"]


def _mixed_dtypes(c):
    name = first_state(c)
    c.state[name] = c.state[name].astype(np.float32)
    return TypeError, [f"{name}[0]", "float32", "single dtype"]


def _mixed_in_list(c):
    c.params = [c.params, np.zeros(3, np.float32)]
    c.grads = [c.grads, np.zeros(3, np.float32)]
    for name in c.state:
        c.state[name] = [c.state[name], None if c.state[name] is None else np.zeros(3, np.float32)]
    return TypeError, ["params[1]", "single dtype"]


def _size_mismatch(c):
    c.grads = c.grads[:-1].copy()
    return ValueError, ["grads[0]", "shape"]


def _shape_mismatch(c):
    name = first_state(c)
    c.state[name] = c.state[name].reshape(4, 4).copy()
    return ValueError, [f"{name}[0]", "shape"]


def _non_contiguous_param(c):
    c.params = np.repeat(c.params, 2)[::2]
    return ValueError, ["params[0]", "C-contiguous"]


def _fortran_state(c):
    c.params = np.asfortranarray(c.params.reshape(4, 4) * np.ones((4, 4)))
    c.grads = c.grads.reshape(4, 4).copy()
    for name in c.case.array_state:
        c.state[name] = c.state[name].reshape(4, 4).copy()
    return ValueError, ["params[0]", "C-contiguous"]


def _readonly_param(c):
    c.params = readonly(c.params)
    return ValueError, ["params[0]", "read-only"]


def _readonly_state(c):
    name = first_state(c)
    c.state[name] = readonly(c.state[name])
    return ValueError, [f"{name}[0]", "read-only"]


def _python_list_param(c):
    c.params = list(c.params)
    return TypeError, ["params[0]", "numpy.ndarray", "float"]


def _scalar_grad(c):
    c.grads = 1.0
    return TypeError, ["grads", "numpy.ndarray"]


def _byteswapped(c):
    c.grads = c.grads.astype(">f8")
    return TypeError, ["grads[0]"]


def _state_aliases_param(c):
    c.state[first_state(c)] = c.params
    return ValueError, ["params[0]", first_state(c), "share memory"]


def _states_overlap(c):
    buffer = np.zeros(2 * SIZE)
    names = list(c.case.array_state)
    c.state[names[0]] = buffer[:SIZE]
    c.state[names[1]] = buffer[SIZE // 2: SIZE // 2 + SIZE]
    return ValueError, ["share memory"]


def _grad_is_param(c):
    c.grads = c.params
    return ValueError, ["share memory"]


def _list_length(c):
    c.params, c.grads = [c.params, np.zeros(2)], [c.grads]
    return ValueError, ["grads has 1 arrays but params has 2"]


def _missing_state(c):
    name = c.case.array_state[-1]
    c.state[name] = None
    return ValueError, [name, "required"]


def _negative_lr(c):
    c.kwargs["lr"] = -0.1
    return ValueError, ["lr"]


def _nan_lr(c):
    c.kwargs["lr"] = float("nan")
    return ValueError, ["lr", "finite"]


def _step_zero(c):
    c.kwargs["step"] = 0
    return ValueError, ["step"]


def _bad_betas(c):
    c.kwargs["betas"] = (0.9, 1.0)
    return ValueError, ["beta", "index 1"]


def _bad_etas(c):
    c.kwargs["etaminus"], c.kwargs["etaplus"] = 1.5, 1.2
    return ValueError, ["eta"]


def _bad_step_sizes(c):
    c.kwargs["step_size_min"], c.kwargs["step_size_max"] = 1.0, 0.1
    return ValueError, ["step_size_min"]


def _missing_loss(c):
    c.kwargs["loss"] = None
    return ValueError, ["loss", "irprop+"]


def _bad_variant(c):
    c.kwargs["variant"] = "rprop*"
    return ValueError, ["variant"]


def _negative_threads(c):
    c.kwargs["num_threads"] = -1
    return ValueError, ["num_threads"]


always = lambda case: True  # noqa: E731
MUTATIONS = {
    "wrong-dtype": (always, _wrong_dtype),
    "float16-grads": (always, _half_grads),
    "mixed-dtypes": (lambda c: bool(c.array_state), _mixed_dtypes),
    "mixed-dtypes-in-list": (always, _mixed_in_list),
    "size-mismatch": (always, _size_mismatch),
    "shape-mismatch": (lambda c: bool(c.array_state), _shape_mismatch),
    "non-contiguous": (always, _non_contiguous_param),
    "fortran-order": (always, _fortran_state),
    "read-only-param": (always, _readonly_param),
    "read-only-state": (lambda c: bool(c.array_state), _readonly_state),
    "python-list": (always, _python_list_param),
    "scalar-grad": (always, _scalar_grad),
    "byteswapped": (always, _byteswapped),
    "state-aliases-param": (lambda c: bool(c.array_state), _state_aliases_param),
    "states-overlap": (lambda c: len(c.array_state) >= 2, _states_overlap),
    "grad-is-param": (always, _grad_is_param),
    "list-length": (always, _list_length),
    "missing-state": (lambda c: bool(c.array_state), _missing_state),
    "negative-lr": (lambda c: c.name != "rprop", _negative_lr),
    "nan-lr": (lambda c: c.name != "rprop", _nan_lr),
    "step-zero": (lambda c: c.uses_step, _step_zero),
    "betas": (lambda c: "betas" in inspect.signature(c.functional).parameters, _bad_betas),
    "etas": (lambda c: c.name == "rprop", _bad_etas),
    "step-sizes": (lambda c: c.name == "rprop", _bad_step_sizes),
    "missing-loss": (lambda c: c.uses_loss, _missing_loss),
    "variant": (lambda c: c.name == "rprop", _bad_variant),
    "negative-threads": (always, _negative_threads),
}

PAIRS = [(case, m) for case in CASES for m, (applies, _) in MUTATIONS.items() if applies(case)]


@pytest.mark.parametrize(("case", "mutation"), PAIRS, ids=[f"{c.id}:{m}" for c, m in PAIRS])
def test_rejected_before_any_write(case, mutation):
    call = Call(case)
    error, fragments = MUTATIONS[mutation][1](call)
    check_rejected(call, error, *fragments)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_readonly_grads_are_accepted(case):
    """Gradients are only read, so a read-only gradient is fine."""
    call = Call(case)
    call.grads = readonly(call.grads)
    call.run()


def test_empty_lists_are_a_no_op():
    F.adam_([], [], [], [], step=1)


# ------------------------------------------------------------------ classes
def test_optimizer_constructor_rejects_bad_hyperparameters():
    p = np.zeros(3)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([p], betas=(1.2, 0.9))
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=0.9)
    with pytest.raises(ValueError, match="eta"):
        optim.Rprop([p], etas=(0.5, 0.9))
    with pytest.raises(ValueError, match="variant"):
        optim.Rprop([p], variant="rprop")
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="alpha"):
        optim.RMSprop([p], alpha=1.5)
    with pytest.raises(ValueError, match="mu"):
        optim.Quickprop([p], mu=0.0)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optim.Adagrad([p], initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="unknown"):
        optim.Adam([{"params": [p], "betas2": 0.9}])
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])


def test_optimizer_constructor_rejects_bad_params():
    with pytest.raises(TypeError, match=r"params\[0\].*int64"):
        optim.Adam([np.zeros(3, dtype=np.int64)])
    with pytest.raises(TypeError, match=r"params\[1\].*list"):
        optim.Adam([np.zeros(3), [1.0, 2.0]])
    with pytest.raises(ValueError, match="read-only"):
        optim.Adam([readonly(np.zeros(3))])
    with pytest.raises(ValueError, match="C-contiguous"):
        optim.Adam([np.zeros(6)[::2]])
    p = np.zeros(3)
    with pytest.raises(ValueError, match="share memory"):
        optim.Adam([p, p])
    big = np.zeros(10)
    with pytest.raises(ValueError, match="share memory"):
        optim.Adam([big[:6], big[4:]])


def snapshot(opt, params):
    return [p.copy() for p in params], opt.state_dict()


def assert_unchanged(opt, params, snap):
    old_params, old_sd = snap
    for a, b in zip(params, old_params):
        np.testing.assert_array_equal(a, b)
    sd = opt.state_dict()
    assert sd["state"].keys() == old_sd["state"].keys()
    for i, s in sd["state"].items():
        assert s.keys() == old_sd["state"][i].keys()
        for k, v in s.items():
            np.testing.assert_array_equal(v, old_sd["state"][i][k])
    assert [{k: v for k, v in g.items()} for g in sd["param_groups"]] == old_sd["param_groups"]


def test_rejected_step_leaves_optimizer_and_params_untouched():
    """A bad gradient in the second dtype's call must not let the first run."""
    params = [np.ones(5), np.ones(4, np.float32), np.ones(3)]
    opt = optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.1}], amsgrad=True)
    opt.step([np.ones(5), np.ones(4, np.float32), np.ones(3)])
    snap = snapshot(opt, params)
    bad_grads = [
        [np.ones(5), np.ones(4, np.float64), np.ones(3)],      # wrong dtype in 2nd call
        [np.ones(5), np.ones(4, np.float32), np.ones(2)],      # wrong size
        [np.ones(5), np.ones(4, np.float32)],                  # too few
        [np.ones(5), np.ones(4, np.float32), [1.0, 2.0, 3.0]],  # a list
    ]
    for grads in bad_grads:
        with pytest.raises((TypeError, ValueError)):
            opt.step(grads)
        assert_unchanged(opt, params, snap)
    opt.param_groups[1]["lr"] = -1.0  # e.g. a broken scheduler
    with pytest.raises(ValueError, match="lr"):
        opt.step([np.ones(5), np.ones(4, np.float32), np.ones(3)])
    opt.param_groups[1]["lr"] = 0.1
    assert_unchanged(opt, params, snap)


def test_load_state_dict_rejects_bad_state_and_changes_nothing():
    params = [np.ones(5), np.ones((2, 3))]
    opt = optim.Adam(params, lr=0.1)
    opt.step([np.ones(5), np.ones((2, 3))])
    good = opt.state_dict()
    snap = snapshot(opt, params)

    def broken(edit):
        sd = opt.state_dict()
        edit(sd)
        return sd

    cases = [
        (ValueError, "shape", lambda sd: sd["state"][1].__setitem__("exp_avg", np.zeros(6))),
        (ValueError, "unknown key", lambda sd: sd["state"][0].__setitem__("momentum", np.zeros(5))),
        (TypeError, "dtype", lambda sd: sd["state"][0].__setitem__("exp_avg", np.zeros(5, dtype=int))),
        (ValueError, "step", lambda sd: sd["state"][0].__setitem__("step", -2)),
        (ValueError, "param groups", lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))),
        (ValueError, "parameters", lambda sd: sd["param_groups"][0]["params"].pop()),
        (ValueError, "parameter 7", lambda sd: sd["state"].__setitem__(7, dict(sd["state"][0]))),
        (ValueError, "lr", lambda sd: sd["param_groups"][0].__setitem__("lr", -1.0)),
    ]
    for error, fragment, edit in cases:
        with pytest.raises(error, match=fragment):
            opt.load_state_dict(broken(edit))
        assert_unchanged(opt, params, snap)
    opt.load_state_dict(good)
    assert_unchanged(opt, params, snap)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    (dict(lr="0.1"), "lr must be a number, got str"),
    (dict(lr=[0.1]), "lr must be a number, got list"),
    (dict(step=1.5), "step must be an integer, got float"),
    (dict(eps=None), "eps must be a number, got NoneType"),
])
def test_non_numeric_hyperparameters_are_named(kwargs, fragment):
    args = dict(step=1, lr=0.1)
    args.update(kwargs)
    p = np.zeros(3)
    with pytest.raises(TypeError, match=fragment):
        F.adam_(p, np.ones(3), np.zeros(3), np.zeros(3), **args)
    assert not p.any()
