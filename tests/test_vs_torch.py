"""fastopt.optim classes agree with torch.optim for every algorithm torch
also has (Rprop in torch is irprop-): the older ones over 120 steps; Adadelta,
Adamax, NAdam, RAdam, ASGD and Adafactor over 200 steps per flag, parameters
and state compared along the way, and their state dicts load from torch into
fastopt and back."""

import inspect

import numpy as np
import pytest

import fastopt

torch = pytest.importorskip("torch")

STEPS = 120
# torch orders a few operations differently (lerp for averages, addcdiv), so
# agreement is to rounding, not bitwise: relative to each array's scale.
RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def assert_close(actual, desired, dtype, err_msg=""):
    scale = max(1.0, float(np.max(np.abs(desired), initial=0.0)))
    np.testing.assert_allclose(actual, desired, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=err_msg)

CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.02, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("Adagrad", dict(lr=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    # (centered + maximize diverges; v - a*a then cancels and float32 agrees only to ~1e-4)
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.05, betas=(0.8, 0.95), eps=1e-6)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("Rprop", dict(lr=0.01)),
    ("Rprop", dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1))),
    ("Rprop", dict(lr=0.01, maximize=True)),
]
SHAPES = [(7,), (33, 5), (1,), (1025,)]


def config_id(config):
    name, kw = config
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def gradient(p, t, k):
    """A parameter-dependent gradient with sign-flipping noise (deterministic)."""
    rng = np.random.default_rng(1000 * t + k)
    return (1.5 * (p.astype(np.float64) - 0.3) + 0.5 * rng.standard_normal(p.shape)).astype(p.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_matches_torch_optim(config, dtype):
    name, kw = config
    rng = np.random.default_rng(0)
    ours = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    theirs = [torch.tensor(p.copy(), requires_grad=True) for p in ours]
    # Two param groups with different learning rates: one fastopt call, two torch groups.
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": kw["lr"] * 0.5}]  # noqa: E731
    opt = getattr(fastopt.optim, name)(groups(ours), **kw)
    ref = getattr(torch.optim, name)(groups(theirs), foreach=False, **kw)
    for t in range(1, STEPS + 1):
        grads = [gradient(p, t, k) for k, p in enumerate(ours)]
        for k, tp in enumerate(theirs):
            tp.grad = torch.from_numpy(gradient(tp.detach().numpy(), t, k))
        opt.step(grads)
        ref.step()
    for p, tp in zip(ours, theirs):
        assert_close(p, tp.detach().numpy(), dtype)
    # state keys and contents agree too (torch keeps 'step' as a tensor)
    for k, tp in enumerate(theirs):
        for key, value in ref.state[tp].items():
            if key == "step":
                assert opt.state[k]["step"] == int(value)
            else:
                assert_close(opt.state[k][key], value.numpy(), dtype, err_msg=key)


def test_torch_fused_adam_agrees():
    """torch's fused CPU Adam, the fastest peer, computes the same steps."""
    rng = np.random.default_rng(3)
    ours = rng.standard_normal(4097).astype(np.float32)
    theirs = torch.tensor(ours.copy(), requires_grad=True)
    opt = fastopt.optim.Adam([ours], lr=1e-2, weight_decay=0.01)
    ref = torch.optim.Adam([theirs], lr=1e-2, weight_decay=0.01, fused=True)
    for t in range(1, 101):
        g = gradient(ours, t, 0)
        theirs.grad = torch.from_numpy(gradient(theirs.detach().numpy(), t, 0))
        opt.step([g])
        ref.step()
    assert_close(ours, theirs.detach().numpy(), np.float32)


# =============================================================================
# Adadelta, Adamax, NAdam, RAdam, ASGD and Adafactor: the fastopt CLASSES (not
# fastopt.reference) against torch.optim. Two param groups with different
# hyperparameters, one configuration per flag, 200 steps; parameters and the
# whole state (torch's key names) are compared every CHECK_EVERY steps.

NEW_STEPS = 200
CHECK_EVERY = 20
# torch orders some operations differently (lerp, sqrt(v/bc2), norms in the
# dtype; float32 scalar state unless the default dtype is float64): agreement
# is to rounding, relative to each array's largest magnitude.
NEW_RTOL = {np.float32: 1e-4, np.float64: 1e-10}
# Scalar state is compared relatively, with a floor only below float32's
# normal range: torch's float32 mu_product goes subnormal, then 0, after about
# 120 steps (fastopt keeps a double), where a relative comparison means nothing.
SCALAR_ATOL = {np.float32: 1e-36, np.float64: 0.0}
SCALAR_STATE = ("mu_product", "eta", "mu")  # per-parameter scalars besides 'step'
# Two param groups; factored (ndim >= 2, Adafactor) and unfactored arrays,
# including a 0-d one, in each; (33, 40) has 1320 elements (SIMD bodies and tails).
NEW_GROUP_SHAPES = [[(7,), (5, 3)], [(2, 4, 6), (), (33, 40)]]
NEW_DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])

# Largest normwise relative difference seen, per (run, array dtype): for reports only.
WORST = {}

# (torch class, first group = the constructor's keywords, second group's overrides).
# A flag's configuration sets it in the constructor, so both groups use it (the
# second may turn it off again where noted).
NEW_CONFIGS = [
    ("Adadelta", {}, dict(lr=0.5, rho=0.8, eps=1e-5)),
    ("Adadelta", dict(maximize=True), dict(lr=0.5)),
    ("Adadelta", dict(weight_decay=0.1), dict(lr=0.5, weight_decay=0.02, rho=0.95)),
    # torch's Adadelta has no decoupled decay: it is applied by hand before torch's step
    ("Adadelta", dict(weight_decay=0.1, decoupled_weight_decay=True), dict(lr=0.5, weight_decay=0.3)),
    # l1 (fastopt only): the proximal step by hand after torch's; part of the weights become 0
    ("Adadelta", dict(l1=0.003), dict(lr=0.5, l1=0.02)),
    ("Adamax", {}, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("Adamax", dict(maximize=True), dict(lr=0.01)),
    ("Adamax", dict(weight_decay=0.1), dict(lr=0.01, weight_decay=0.02)),
    ("Adamax", dict(lr=0.01, weight_decay=0.5, decoupled_weight_decay=True), dict(betas=(0.8, 0.9))),
    ("Adamax", dict(l1=0.5), dict(lr=0.01, l1=0.3)),
    ("NAdam", {}, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("NAdam", dict(maximize=True), dict(lr=0.01)),
    ("NAdam", dict(weight_decay=0.1), dict(lr=0.01, weight_decay=0.02)),
    ("NAdam", dict(lr=0.01, weight_decay=0.5, decoupled_weight_decay=True),
     dict(weight_decay=0.1, betas=(0.8, 0.99))),
    ("NAdam", dict(momentum_decay=0.02), dict(lr=0.01, momentum_decay=0.0)),
    ("NAdam", dict(l1=1.0), dict(lr=0.01, l1=0.8)),
    # beta2 = 0.999: rho_t <= 5 for the first 6 steps (the unrectified branch), then > 5
    ("RAdam", {}, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("RAdam", dict(maximize=True), dict(lr=0.01)),
    ("RAdam", dict(weight_decay=0.1), dict(lr=0.01, weight_decay=0.02)),
    ("RAdam", dict(lr=0.01, weight_decay=0.5, decoupled_weight_decay=True),
     dict(weight_decay=0.1, betas=(0.8, 0.99))),
    ("RAdam", dict(l1=0.3), dict(lr=0.01, l1=0.5)),
    # t0: mu < 1 (true averaging) from step t0 + 2 on
    ("ASGD", {}, dict(lr=0.05, lambd=1e-3, alpha=0.6, t0=50)),
    ("ASGD", dict(maximize=True, t0=100), dict(lr=0.05)),
    ("ASGD", dict(weight_decay=0.1, t0=20), dict(lr=0.05, weight_decay=0.02, lambd=1e-2)),
    # torch's ASGD has no decoupled decay: p*(1 - lr*wd) by hand before torch's step
    ("ASGD", dict(weight_decay=0.5, decoupled_weight_decay=True, t0=20), dict(lr=0.05, weight_decay=0.1)),
    # l1: threshold eta*l1 (eta of the step), the average of the thresholded parameter
    ("ASGD", dict(l1=0.3, t0=50), dict(lr=0.05, l1=0.5, t0=20)),
    ("Adafactor", {}, dict(lr=0.05, beta2_decay=-0.5)),
    ("Adafactor", dict(maximize=True), dict(lr=0.5, maximize=False)),
    ("Adafactor", dict(weight_decay=0.1), dict(lr=0.05, weight_decay=0.5)),
    # eps1 and eps2 large enough to clamp; eps1 explicit instead of the dtype's epsilon
    ("Adafactor", dict(eps=(1e-3, 1e-2)), dict(lr=0.5, eps=(0.4, 0.5))),
    # d: update clipping by RMS(u)/d (lr above 1/sqrt(t) from step 5 on in the second group)
    ("Adafactor", dict(d=1.2), dict(lr=0.5, d=3.0)),
    # (a larger l1 in the second group zeroes it whole: the step is relative to RMS(p), the threshold is not)
    ("Adafactor", dict(l1=0.3), dict(lr=0.05, l1=0.05)),
]


def new_config_id(config):
    name, kw1, kw2 = config
    fmt = lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults"  # noqa: E731
    return f"{name}[{fmt(kw1)}][{fmt(kw2)}]"


@pytest.fixture
def torch_scalars(dtype):
    """torch keeps 'step', mu_product, eta and mu as tensors of its default
    scalar dtype (float32 unless the default dtype is float64); fastopt keeps
    doubles. float64 runs use torch's float64 default; restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    yield
    torch.set_default_dtype(previous)


def signed_gradient(p, t, key, sign):
    """1.5*(p - 0.3) + noise, the noise fixed by (step, array); sign=-1 is the
    gradient of the negated objective, which maximize then descends."""
    rng = np.random.default_rng(1000 * t + key)
    g = sign * 1.5 * (np.asarray(p, np.float64) - 0.3) + 0.5 * rng.standard_normal(np.shape(p))
    return np.asarray(g, dtype=p.dtype)


def new_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [[np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes] for shapes in NEW_GROUP_SHAPES]


class OursRun:
    """A fastopt class over NumPy arrays: constructor keywords kw1, second group's overrides kw2."""

    def __init__(self, name, params, kw1, kw2, skip=None):
        self.params, self.skip = params, skip or (lambda t, i, k: False)
        kws = [kw1, {**kw1, **kw2}]
        self.signs = [-1.0 if kw.get("maximize") else 1.0 for kw in kws]
        self.opt = getattr(fastopt.optim, name)([{"params": params[0]}, {"params": params[1], **kw2}], **kw1)

    def step(self, t):
        self.opt.step([None if self.skip(t, i, k) else signed_gradient(p, t, 10 * i + k, self.signs[i])
                       for i, group in enumerate(self.params) for k, p in enumerate(group)])

    @property
    def flat(self):
        return [p for group in self.params for p in group]


def prox(x, tau):
    """docs/algorithms.md 2.1: weights within tau of zero become +0, the others move tau towards 0."""
    shrunk = np.abs(x) - tau
    return np.where(shrunk > 0, np.copysign(shrunk, x), np.zeros_like(x))


class TorchRun:
    """The same run in torch.optim (single-tensor implementation). Groups get
    their full keywords; what torch lacks is applied by hand: decoupled decay
    (p*(1 - lr*wd) before the step) and l1 (the proximal step after it,
    threshold lr*l1, or eta*l1 for ASGD, whose average then takes the
    thresholded parameter)."""

    def __init__(self, name, params, kw1, kw2, hyperparameters=True, skip=None):
        self.skip = skip or (lambda t, i, k: False)
        self.tensors = [[torch.tensor(p.copy()) for p in group] for group in params]
        kws = [kw1, {**kw1, **kw2}]
        self.signs = [-1.0 if kw.get("maximize") else 1.0 for kw in kws]
        accepted = inspect.signature(getattr(torch.optim, name)).parameters
        self.name, self.hand_decay, self.hand_l1, groups = name, [], [], []
        for tensors, kw in zip(self.tensors, kws):
            kw = dict(kw)
            self.hand_l1.append(kw.pop("l1", 0.0))
            decay = 0.0
            if "decoupled_weight_decay" not in accepted and kw.pop("decoupled_weight_decay", False):
                decay = kw.get("lr", accepted["lr"].default) * kw.pop("weight_decay", 0.0)
            self.hand_decay.append(decay)
            groups.append({"params": tensors, **(kw if hyperparameters else {})})
        self.opt = getattr(torch.optim, name)(groups, foreach=False)

    def step(self, t):
        for i, group in enumerate(self.tensors):
            for k, tp in enumerate(group):
                if self.skip(t, i, k):  # torch leaves a parameter without .grad alone
                    tp.grad = None
                    continue
                tp.grad = torch.from_numpy(signed_gradient(tp.numpy(), t, 10 * i + k, self.signs[i]))
                if self.hand_decay[i]:
                    tp.mul_(1 - self.hand_decay[i])
        before = {}
        if self.name == "ASGD":  # eta and mu before the step (torch creates them at the first)
            for i, group in enumerate(self.tensors):
                for tp in group:
                    state = self.opt.state.get(tp) or {}
                    lr = self.opt.param_groups[i]["lr"]
                    before[tp] = (float(state.get("eta", lr)), float(state.get("mu", 1.0)))
        self.opt.step()
        for i, group in enumerate(self.tensors):
            if not self.hand_l1[i]:
                continue
            for tp in group:
                if tp.grad is None:
                    continue
                stepped = tp.numpy().copy()
                if self.name == "ASGD":
                    eta, mu = before[tp]
                    tp.copy_(torch.from_numpy(prox(stepped, stepped.dtype.type(eta * self.hand_l1[i]))))
                    ax = self.opt.state[tp]["ax"]
                    if mu == 1:
                        ax.copy_(tp)
                    else:  # torch averaged the unthresholded parameter: move its term
                        ax.add_((tp - torch.from_numpy(stepped)) * mu)
                else:
                    tau = stepped.dtype.type(self.opt.param_groups[i]["lr"] * self.hand_l1[i])
                    tp.copy_(torch.from_numpy(prox(stepped, tau)))

    @property
    def flat(self):
        return [tp for group in self.tensors for tp in group]


def assert_close_scaled(actual, desired, dtype, where, record=None):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, f"{where}: shape {actual.shape} vs torch {desired.shape}"
    scale = float(np.max(np.abs(desired), initial=0.0))
    if record is not None and scale > 0:
        worst = float(np.max(np.abs(actual - desired), initial=0.0)) / scale
        key = (record, np.dtype(dtype).name)
        WORST[key] = max(WORST.get(key, 0.0), worst)
    np.testing.assert_allclose(actual, desired, rtol=NEW_RTOL[dtype], atol=NEW_RTOL[dtype] * scale,
                               err_msg=where)


def assert_scalar_close(ours, theirs, dtype, where):
    assert isinstance(ours, float), f"{where}: {type(ours).__name__}, expected a float"
    np.testing.assert_allclose(ours, theirs, rtol=NEW_RTOL[dtype], atol=SCALAR_ATOL[dtype], err_msg=where)


def assert_matches_torch(ours, ours_params, theirs, theirs_params, dtype, where, record=None):
    """Parameters and every state entry, under torch's key names. Arrays are
    compared at their own dtype's tolerance, scalar state at ``dtype``'s
    (torch's default dtype)."""
    for k, (p, tp) in enumerate(zip(ours_params, theirs_params)):
        at = f"{where}, param {k} {p.shape} {p.dtype}"
        assert p.dtype == tp.detach().numpy().dtype
        array_dtype = p.dtype.type
        assert_close_scaled(p, tp.detach().numpy(), array_dtype, at, record)
        if not theirs.state.get(tp):  # never had a gradient: no state on either side
            assert k not in ours.state, at
            continue
        mine, theirs_state = ours.state[k], theirs.state[tp]
        assert set(mine) == set(theirs_state), at
        for key, value in theirs_state.items():
            if key == "step":
                assert type(mine["step"]) is int, f"{at} step"
                assert mine["step"] == int(value), f"{at} step"
            elif key in SCALAR_STATE:
                assert_scalar_close(mine[key], value.item(), dtype, f"{at} state {key}")
            else:
                assert isinstance(mine[key], np.ndarray), f"{at} state {key}"
                assert mine[key].dtype == p.dtype, f"{at} state {key}"
                assert_close_scaled(mine[key], value.numpy(), array_dtype, f"{at} state {key}", record)


@NEW_DTYPES
@pytest.mark.parametrize("config", NEW_CONFIGS, ids=new_config_id)
def test_new_optimizer_classes_match_torch(config, dtype, torch_scalars):
    name, kw1, kw2 = config
    start = new_params(dtype)
    ours = OursRun(name, new_params(dtype), kw1, kw2)
    theirs = TorchRun(name, start, kw1, kw2)
    zeros = 0
    for t in range(1, NEW_STEPS + 1):
        ours.step(t)
        theirs.step(t)
        zeros += sum(int(np.count_nonzero(p == 0)) for p in ours.flat)
        if t % CHECK_EVERY == 0:
            assert_matches_torch(ours.opt, ours.flat, theirs.opt, theirs.flat, dtype, f"step {t}", name)
    # the run went somewhere: every array moved
    for p, p0 in zip(ours.flat, [p for group in start for p in group]):
        assert not np.allclose(p, p0, rtol=0, atol=1e-3), p.shape
    if "l1" in kw1:  # the proximal step did produce exact zeros
        assert zeros > 0


def skip_some(t, i, k):
    """None gradients: param (0, 1) every 4th step (its step count falls
    behind its group's), the 0-d param (1, 1) for the first 10 steps (its state
    starts late). torch leaves a parameter without .grad untouched."""
    return ((i, k) == (0, 1) and t % 4 == 0) or ((i, k) == (1, 1) and t <= 10)


def mixed_params(seed=0):
    """NEW_GROUP_SHAPES with float32 and float64 arrays in both groups."""
    rng = np.random.default_rng(seed)
    dtypes = [[np.float64, np.float32], [np.float32, np.float64, np.float32]]
    return [[np.asarray(rng.standard_normal(s), dtype=d) for s, d in zip(shapes, ds)]
            for shapes, ds in zip(NEW_GROUP_SHAPES, dtypes)]


# one configuration per optimizer, with its per-parameter scalar state in play
IRREGULAR_CONFIGS = [
    ("Adadelta", dict(weight_decay=0.05), dict(lr=0.5)),
    ("Adamax", {}, dict(lr=0.01, maximize=True)),
    ("NAdam", dict(weight_decay=0.05), dict(lr=0.01, momentum_decay=0.01)),
    ("RAdam", {}, dict(lr=0.01, betas=(0.8, 0.99))),
    ("ASGD", dict(t0=20), dict(lr=0.05, lambd=1e-3, t0=60)),
    ("Adafactor", {}, dict(lr=0.5, d=2.0)),
]


@pytest.mark.parametrize("dtype", [np.float64], ids=["mixed"])  # torch's scalars in float64
@pytest.mark.parametrize("config", IRREGULAR_CONFIGS, ids=new_config_id)
def test_none_gradients_and_mixed_dtypes_match_torch(config, dtype, torch_scalars):
    """Parameters of one group with different step counts (and so different
    mu_product, eta, mu, bias corrections) and of both dtypes: fastopt splits
    them into several hyperparameter sets and kernel calls; torch steps each
    on its own."""
    name, kw1, kw2 = config
    ours = OursRun(name, mixed_params(), kw1, kw2, skip=skip_some)
    theirs = TorchRun(name, mixed_params(), kw1, kw2, skip=skip_some)
    for t in range(1, NEW_STEPS + 1):
        ours.step(t)
        theirs.step(t)
        if t % CHECK_EVERY == 0 or t == 10:
            assert_matches_torch(ours.opt, ours.flat, theirs.opt, theirs.flat, dtype, f"step {t}",
                                 name + " (None grads, mixed dtypes)")
    steps = [ours.opt.state[k]["step"] for k in range(len(ours.flat))]
    assert steps == [NEW_STEPS, NEW_STEPS - NEW_STEPS // 4, NEW_STEPS, NEW_STEPS - 10, NEW_STEPS]


# ---------------------------------------------- torch state dicts, both ways

def torch_state_dict_to_numpy(state_dict):
    """torch -> fastopt: state tensors become arrays, and the scalar state
    (torch: 0-d tensors 'step', mu_product, eta, mu) Python numbers. Nothing
    else changes: torch's param_groups are passed as they are (including
    foreach/capturable/differentiable, which fastopt keeps without using)."""
    def convert(key, value):
        if not torch.is_tensor(value):
            return value
        return value.item() if key == "step" or key in SCALAR_STATE else value.numpy().copy()
    return {"state": {i: {key: convert(key, v) for key, v in s.items()} for i, s in state_dict["state"].items()},
            "param_groups": state_dict["param_groups"]}


def numpy_state_dict_to_torch(state_dict):
    """fastopt -> torch: arrays become tensors. The scalar state stays Python
    numbers: torch's __setstate__ (run by load_state_dict) turns 'step',
    mu_product, eta and mu into tensors of its default scalar dtype."""
    def convert(value):
        return torch.from_numpy(value.copy()) if isinstance(value, np.ndarray) else value
    return {"state": {i: {key: convert(v) for key, v in s.items()} for i, s in state_dict["state"].items()},
            "param_groups": state_dict["param_groups"]}


# One configuration per optimizer that uses all of its state, with flags
# torch has; the optimizers that load these start from their defaults.
INTEROP_CONFIGS = [
    ("Adadelta", dict(weight_decay=0.05), dict(lr=0.5, rho=0.8, maximize=True)),
    ("Adamax", dict(weight_decay=0.05), dict(lr=0.01, betas=(0.8, 0.99), maximize=True)),
    ("NAdam", dict(weight_decay=0.05, decoupled_weight_decay=True), dict(lr=0.01, momentum_decay=0.01)),
    ("RAdam", dict(weight_decay=0.05), dict(lr=0.01, decoupled_weight_decay=True, betas=(0.8, 0.99))),
    # the first group averages from step 22 (before the hand-over), the second from step 62
    ("ASGD", dict(t0=20), dict(lr=0.05, lambd=1e-3, alpha=0.6, t0=60, weight_decay=0.02)),
    ("Adafactor", dict(weight_decay=0.05), dict(lr=0.5, eps=(0.4, 0.5), d=2.0, maximize=True)),
]
HANDOVER = 50


def assert_state_equal(ours, ours_params, theirs, theirs_params, where):
    """Right after a load: the same numbers, bit for bit (scalars rounded to torch's storage)."""
    for k, (p, tp) in enumerate(zip(ours_params, theirs_params)):
        np.testing.assert_array_equal(p, tp.detach().numpy())
        mine, other = ours.state[k], theirs.state[tp]
        assert set(mine) == set(other), (where, k)
        for key, value in other.items():
            assert torch.is_tensor(value), (where, k, key)
            if key == "step" or key in SCALAR_STATE:
                assert value.ndim == 0, (where, k, key)
                assert value.dtype == torch.get_default_dtype(), (where, k, key)
                rounded = {torch.float32: np.float32, torch.float64: np.float64}[value.dtype](mine[key])
                assert value.item() == float(rounded), (where, k, key, value.item(), mine[key])
            else:
                assert value.dtype == tp.dtype, (where, k, key)
                np.testing.assert_array_equal(mine[key], value.numpy(), err_msg=f"{where} {k} {key}")


@NEW_DTYPES
@pytest.mark.parametrize("config", INTEROP_CONFIGS, ids=new_config_id)
def test_torch_state_dict_loads_into_fastopt_and_back(config, dtype, torch_scalars):
    """torch runs 50 steps; its state_dict (as NumPy) loads into a fastopt
    optimizer built with the defaults; both run 50 steps; fastopt's state_dict
    (as tensors) loads into a fresh torch optimizer; all three run 50 more.
    Everything agrees within the tolerances of the side-by-side runs. Some
    gradients are None (skip_some), so parameters carry different step counts
    across the hand-overs."""
    name, kw1, kw2 = config
    record = name + " (state dict hand-over)"
    theirs = TorchRun(name, new_params(dtype), kw1, kw2, skip=skip_some)
    for t in range(1, HANDOVER + 1):
        theirs.step(t)

    # torch -> fastopt, into an optimizer with other (default) hyperparameters
    ours = OursRun(name, [[tp.numpy().copy() for tp in group] for group in theirs.tensors], {}, {},
                   skip=skip_some)
    ours.signs = list(theirs.signs)
    ours.opt.load_state_dict(torch_state_dict_to_numpy(theirs.opt.state_dict()))
    for group, tgroup in zip(ours.opt.param_groups, theirs.opt.param_groups):
        for key in set(group) & set(tgroup) - {"params"}:
            assert group[key] == tgroup[key], key
    assert_state_equal(ours.opt, ours.flat, theirs.opt, theirs.flat, "torch -> fastopt")
    for t in range(HANDOVER + 1, 2 * HANDOVER + 1):
        ours.step(t)
        theirs.step(t)
        if t % 10 == 0:
            assert_matches_torch(ours.opt, ours.flat, theirs.opt, theirs.flat, dtype, f"step {t}", record)

    # fastopt -> torch, into an optimizer with the defaults
    back = TorchRun(name, [[p.copy() for p in group] for group in ours.params], {}, {}, hyperparameters=False,
                    skip=skip_some)
    back.signs = list(ours.signs)
    back.opt.load_state_dict(numpy_state_dict_to_torch(ours.opt.state_dict()))
    assert_state_equal(ours.opt, ours.flat, back.opt, back.flat, "fastopt -> torch")
    for t in range(2 * HANDOVER + 1, 3 * HANDOVER + 1):
        ours.step(t)
        theirs.step(t)
        back.step(t)
        if t % 10 == 0:
            assert_matches_torch(ours.opt, ours.flat, theirs.opt, theirs.flat, dtype, f"step {t}", record)
            assert_matches_torch(ours.opt, ours.flat, back.opt, back.flat, dtype, f"step {t} (back)", record)
