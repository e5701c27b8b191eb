"""The NumPy references of Adadelta, Adamax, NAdam, RAdam, ASGD, Lion, LAMB and
Adafactor (fastopt.reference, the kernels' oracle) against independent
implementations: torch.optim for the six torch has, literal transcriptions of
optax's update rules for Lion and LAMB, math.fsum and a loop transcription for
the kernels' reduction order (_ordered_sum)."""

import inspect
import math

import numpy as np
import pytest

from fastopt import reference as R

STEPS = 200
# torch orders some operations differently (lerp for averages, division by
# sqrt(bc2) instead of a multiplication by its reciprocal, norms in the dtype):
# agreement is to rounding, relative to each array's scale.
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
# Two param groups; factored (ndim >= 2) and unfactored arrays (incl. 0-d) in each.
GROUP_SHAPES = [[(7,), (5, 3)], [(2, 4, 6), ()]]


def assert_close(actual, desired, dtype, err_msg=""):
    desired = np.asarray(desired, dtype=np.float64)
    scale = float(np.max(np.abs(desired), initial=0.0))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), desired,
                               rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=err_msg)


def gradient(p, t, k, sign=1.0):
    """Noisy quadratic, minimum at 0.3, curvature 1.5; the noise depends on the
    step and the array only. sign=-1 is the gradient of the negated objective
    (for maximize=True, which then descends the same quadratic)."""
    rng = np.random.default_rng(1000 * t + k)
    g = sign * 1.5 * (p.astype(np.float64) - 0.3) + 0.5 * rng.standard_normal(np.shape(p))
    return np.asarray(g.astype(p.dtype))


# Hyperparameters only the classes take (ASGD's schedule), with torch's defaults.
CLASS_ONLY = {"alpha": 0.75, "t0": 1e6}


def hyper(fn, kw):
    """The reference function's keyword defaults (and the class-only ones),
    overridden by kw."""
    defaults = {n: q.default for n, q in inspect.signature(fn).parameters.items()
                if q.default is not inspect.Parameter.empty}
    return {**(CLASS_ONLY if fn is R.asgd_ else {}), **defaults, **kw}


def initial_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [[np.asarray(rng.standard_normal(s).astype(dtype)) for s in shapes]
            for shapes in GROUP_SHAPES]


# ---------------------------------------------------------------- vs torch.optim

class _Group:
    """One param group's reference state, named like torch's state keys."""

    def __init__(self, name, params, kw):
        self.name, self.params, self.kw = name, params, kw
        zeros = lambda: [np.zeros_like(p) for p in params]  # noqa: E731
        if name == "Adadelta":
            self.arrays = {"square_avg": zeros(), "acc_delta": zeros()}
        elif name == "Adamax":
            self.arrays = {"exp_avg": zeros(), "exp_inf": zeros()}
        elif name in ("NAdam", "RAdam"):
            self.arrays = {"exp_avg": zeros(), "exp_avg_sq": zeros()}
        elif name == "ASGD":
            self.arrays = {"ax": zeros()}
        elif name == "Adafactor":
            self.arrays = {
                "row_var": [np.zeros(p.shape[:-1] + (1,), p.dtype) if p.ndim >= 2 else None
                            for p in params],
                "col_var": [np.zeros(p.shape[:-2] + (1, p.shape[-1]), p.dtype)
                            if p.ndim >= 2 else None for p in params],
                "variance": [np.zeros_like(p) if p.ndim <= 1 else None for p in params],
            }
        full = hyper(FUNCTIONS[name], kw)
        self.scalars = {"NAdam": {"mu_product": 1.0},
                        "ASGD": {"eta": full["lr"], "mu": 1.0}}.get(name, {})

    def step(self, grads, t):
        a, s, kw, ps = self.arrays, self.scalars, self.kw, self.params
        full = hyper(FUNCTIONS[self.name], kw)
        if self.name == "Adadelta":
            R.adadelta_(ps, grads, a["square_avg"], a["acc_delta"], **kw)
        elif self.name == "Adamax":
            R.adamax_(ps, grads, a["exp_avg"], a["exp_inf"], step=t, **kw)
        elif self.name == "NAdam":
            R.nadam_(ps, grads, a["exp_avg"], a["exp_avg_sq"], step=t,
                     mu_product=s["mu_product"], **kw)
            s["mu_product"] *= R.nadam_mu(t, full["betas"][0], full["momentum_decay"])
        elif self.name == "RAdam":
            R.radam_(ps, grads, a["exp_avg"], a["exp_avg_sq"], step=t, **kw)
        elif self.name == "ASGD":
            schedule_only = ("alpha", "t0")  # used by the schedule below, not by the step
            R.asgd_(ps, grads, a["ax"], eta=s["eta"], mu=s["mu"],
                    **{k: v for k, v in kw.items() if k not in schedule_only})
            s["eta"], s["mu"] = R.asgd_schedule(t, full["lr"], full["lambd"], full["alpha"],
                                                full["t0"])
        elif self.name == "Adafactor":
            R.adafactor_(ps, grads, a["row_var"], a["col_var"], a["variance"], step=t, **kw)

    def state(self, k, key):
        return self.scalars[key] if key in self.scalars else self.arrays[key][k]

    def keys(self, k):
        return {key for key, arrays in self.arrays.items() if arrays[k] is not None} | set(
            self.scalars)


FUNCTIONS = {"Adadelta": R.adadelta_, "Adamax": R.adamax_, "NAdam": R.nadam_,
             "RAdam": R.radam_, "ASGD": R.asgd_, "Adafactor": R.adafactor_}

# (torch class, first group = the constructor's keywords, second group's overrides)
TORCH_CONFIGS = [
    ("Adadelta", {}, dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.05, maximize=True)),
    ("Adadelta", dict(weight_decay=0.1, maximize=True), dict(lr=2.0, maximize=False)),
    ("Adamax", {}, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, maximize=True)),
    ("NAdam", {}, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05,
                       momentum_decay=0.01, maximize=True)),
    ("NAdam", dict(weight_decay=0.1, decoupled_weight_decay=True),
     dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05, maximize=True)),
    ("RAdam", {}, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, maximize=True)),
    ("RAdam", dict(weight_decay=0.1, decoupled_weight_decay=True),
     dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05, maximize=True)),
    # t0=50: mu < 1 (true averaging) from step 53 on; the first group never averages.
    ("ASGD", {}, dict(lr=0.05, lambd=1e-3, alpha=0.6, t0=50, weight_decay=0.05, maximize=True)),
    # second group: lr above 1/sqrt(t) from step 5 on; eps1 and eps2 large enough to
    # clamp (eps1**2 clamps about a quarter of the variance estimates)
    ("Adafactor", {}, dict(lr=0.5, beta2_decay=-0.5, eps=(0.4, 0.5), d=2.0, weight_decay=0.05,
                           maximize=True)),
    ("Adafactor", dict(weight_decay=0.1, maximize=True), dict(eps=(None, 1e-2), maximize=False)),
]


def config_id(config):
    name, kw1, kw2 = config
    fmt = lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults"  # noqa: E731
    return f"{name}[{fmt(kw1)}][{fmt(kw2)}]"


@pytest.fixture
def torch_scalar_dtype(dtype):
    """torch keeps per-parameter scalars (NAdam's mu_product, ASGD's eta and
    mu, step) in float32 unless the default dtype is float64; the reference
    keeps them in double. float64 runs therefore use torch's float64 default."""
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    yield torch
    torch.set_default_dtype(previous)


@DTYPES
@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=config_id)
def test_matches_torch(config, dtype, torch_scalar_dtype):
    torch = torch_scalar_dtype
    name, kw1, kw2 = config
    kws = [kw1, {**kw1, **kw2}]  # a torch group inherits the constructor's keywords
    ours = initial_params(dtype)
    theirs = [[torch.tensor(p.copy()) for p in group] for group in ours]
    groups = [_Group(name, ps, kw) for ps, kw in zip(ours, kws)]
    opt = getattr(torch.optim, name)(
        [{"params": theirs[0]}, {"params": theirs[1], **kw2}], foreach=False, **kw1)
    signs = [-1.0 if kw.get("maximize") else 1.0 for kw in kws]
    for t in range(1, STEPS + 1):
        for i, group in enumerate(groups):
            group.step([gradient(p, t, 10 * i + k, signs[i]) for k, p in enumerate(group.params)],
                       t)
            for k, tp in enumerate(theirs[i]):
                tp.grad = torch.from_numpy(gradient(tp.numpy(), t, 10 * i + k, signs[i]))
        opt.step()
    for i, group in enumerate(groups):
        for k, (p, tp) in enumerate(zip(group.params, theirs[i])):
            where = f"group {i} param {k} shape {p.shape}"
            assert_close(p, tp.numpy(), dtype, err_msg=where)
            state = opt.state[tp]
            assert set(state) - {"step"} == group.keys(k), where
            assert int(state["step"]) == STEPS
            for key in group.keys(k):
                theirs_value = state[key].numpy()
                # scalars: rounded to torch's storage (float32 mu_product underflows to 0)
                ours_value = np.asarray(group.state(k, key)).astype(theirs_value.dtype)
                assert_close(ours_value, theirs_value, dtype, err_msg=f"{where} state {key}")
            # the run went somewhere: the steps are not all zero
            assert not np.allclose(p, initial_params(dtype)[i][k], rtol=0, atol=1e-3), where


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_defaults_match_torch(name):
    torch = pytest.importorskip("torch")
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    ours = inspect.signature(FUNCTIONS[name]).parameters
    shared = [n for n in ours if n in theirs and n not in ("params",)]
    assert len(shared) >= 4, shared
    for n in shared:
        assert ours[n].default == theirs[n].default, n


# ------------------------------------------------- Lion and LAMB vs optax's rules

def optax_lion(p, g, mu, *, lr, b1, b2, weight_decay):
    """optax.lion: chain(scale_by_lion(b1, b2), add_decayed_weights(wd),
    scale_by_learning_rate(lr)), then apply_updates (p + update)."""
    update = np.sign((1 - b1) * g + b1 * mu)  # scale_by_lion
    mu = (1 - b2) * g + b2 * mu
    update = update + weight_decay * p  # add_decayed_weights
    update = -lr * update  # scale_by_learning_rate
    return p + update, mu


def optax_lamb(p, g, mu, nu, count, *, lr, b1, b2, eps, weight_decay):
    """optax.lamb: chain(scale_by_adam(b1, b2, eps, eps_root=0), add_decayed_weights(wd),
    scale_by_trust_ratio(), scale_by_learning_rate(lr)), then p + update."""
    mu = (1 - b1) * g + b1 * mu  # scale_by_adam
    nu = (1 - b2) * g**2 + b2 * nu
    mu_hat = mu / (1 - b1**count)
    nu_hat = nu / (1 - b2**count)
    update = mu_hat / (np.sqrt(nu_hat + 0.0) + eps)
    update = update + weight_decay * p  # add_decayed_weights
    param_norm = np.linalg.norm(p)  # scale_by_trust_ratio(min_norm=0, trust_coefficient=1, eps=0)
    update_norm = np.linalg.norm(update)
    trust_ratio = 1.0 * param_norm / (update_norm + 0.0)
    zero_norm = param_norm == 0.0 or update_norm == 0.0
    update = update * (1.0 if zero_norm else trust_ratio)
    update = -lr * update  # scale_by_learning_rate
    return p + update, mu, nu


OPTAX_CONFIGS = {
    "lion": [dict(lr=1e-3), dict(lr=3e-3, betas=(0.95, 0.98), weight_decay=0.1, maximize=True)],
    "lamb": [{}, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.05, maximize=True)],
}


@pytest.mark.parametrize("name", sorted(OPTAX_CONFIGS))
def test_matches_optax_rules(name):
    fn = {"lion": R.lion_, "lamb": R.lamb_}[name]
    ours = initial_params(np.float64)
    ours[0].append(np.zeros(6))  # ||p|| = 0 at the first step: LAMB's trust ratio is 1
    theirs = [[p.copy() for p in group] for group in ours]
    m = [[np.zeros_like(p) for p in group] for group in ours]
    v = [[np.zeros_like(p) for p in group] for group in ours]
    tm, tv = [[a.copy() for a in group] for group in m], [[a.copy() for a in group] for group in v]
    for t in range(1, STEPS + 1):
        for i, kw in enumerate(OPTAX_CONFIGS[name]):
            full = hyper(fn, kw)
            sign = -1.0 if full["maximize"] else 1.0
            grads = [gradient(p, t, 10 * i + k, sign) for k, p in enumerate(ours[i])]
            if name == "lion":
                R.lion_(ours[i], grads, m[i], **kw)
            else:
                R.lamb_(ours[i], grads, m[i], v[i], step=t, **kw)
            b1, b2 = full["betas"]
            for k, tp in enumerate(theirs[i]):
                g = gradient(tp, t, 10 * i + k, sign)
                g = -g if full["maximize"] else g
                if name == "lion":
                    theirs[i][k], tm[i][k] = optax_lion(
                        tp, g, tm[i][k], lr=full["lr"], b1=b1, b2=b2,
                        weight_decay=full["weight_decay"])
                else:
                    theirs[i][k], tm[i][k], tv[i][k] = optax_lamb(
                        tp, g, tm[i][k], tv[i][k], t, lr=full["lr"], b1=b1, b2=b2,
                        eps=full["eps"], weight_decay=full["weight_decay"])
    for i in range(2):
        for k, p in enumerate(ours[i]):
            assert_close(p, theirs[i][k], np.float64, err_msg=f"group {i} param {k}")
            assert_close(m[i][k], tm[i][k], np.float64, err_msg=f"group {i} exp_avg {k}")
            if name == "lamb":
                assert_close(v[i][k], tv[i][k], np.float64, err_msg=f"group {i} exp_avg_sq {k}")
            assert not np.allclose(p, initial_params(np.float64)[i][k] if k < 2 else 0.0,
                                   rtol=0, atol=1e-3)


def test_lion_coupled_weight_decay_is_l2_on_the_gradient():
    rng = np.random.default_rng(5)
    p, g, m = rng.standard_normal((3, 50))
    p1, m1 = p.copy(), m.copy()
    R.lion_(p1, g, m1, lr=0.01, weight_decay=0.3, decoupled_weight_decay=False)
    p2, m2 = p.copy(), m.copy()
    R.lion_(p2, g + 0.3 * p, m2, lr=0.01)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(m1, m2)
    p3 = p.copy()
    R.lion_(p3, g, m.copy(), lr=0.01, weight_decay=0.3)  # decoupled by default
    np.testing.assert_array_equal(p3, p * (1 - 0.01 * 0.3) - 0.01 * np.sign(0.9 * m + 0.1 * g))


# ----------------------------------------- shared arguments, one step of each

def one_step(name, p, g, wrap=np.asarray, **kw):
    """One step (the third) of `name` from a fixed random state; returns the new
    parameter and the state arrays. `wrap` is applied to every array passed."""
    rng = np.random.default_rng(7)
    p, g = wrap(p.copy()), wrap(g)
    # float32-representable, so a float32 and a float64 run start from the same state
    positive = lambda shape: wrap(  # noqa: E731
        (np.abs(rng.standard_normal(shape)) + 0.1).astype(np.float32).astype(p.dtype))
    signed = lambda: wrap(  # noqa: E731
        rng.standard_normal(p.shape).astype(np.float32).astype(p.dtype))
    if name == "adadelta_":
        state = [positive(p.shape), positive(p.shape)]
        R.adadelta_(p, g, *state, **kw)
    elif name == "adamax_":
        state = [signed(), positive(p.shape)]
        R.adamax_(p, g, *state, step=3, **kw)
    elif name == "nadam_":
        state = [signed(), positive(p.shape)]
        R.nadam_(p, g, *state, step=3, mu_product=0.8, **kw)
    elif name == "radam_":  # b2 = 0.5: rho_t > 5 at step 3 (the rectified branch)
        state = [signed(), positive(p.shape)]
        R.radam_(p, g, *state, step=3, betas=(0.9, 0.5), **kw)
    elif name == "asgd_":
        state = [signed()]
        R.asgd_(p, g, *state, eta=0.05, mu=0.5, **kw)
    elif name == "lion_":
        state = [signed()]
        R.lion_(p, g, *state, **kw)
    elif name == "lamb_":
        state = [signed(), positive(p.shape)]
        R.lamb_(p, g, *state, step=3, **kw)
    elif name == "adafactor_":
        state = [positive(p.shape[:-1] + (1,)), positive((1, p.shape[-1]))]
        R.adafactor_(p, g, *state, None, step=3, **kw)
    return p, state


ONE_STEP = ["adadelta_", "adamax_", "nadam_", "radam_", "asgd_", "lion_", "lamb_", "adafactor_"]


def _data(dtype=np.float64, seed=11):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((20, 30)).astype(dtype), rng.standard_normal((20, 30)).astype(dtype)


@pytest.mark.parametrize("name", ONE_STEP)
def test_shared_arguments(name):
    """maximize, grad_scale and clip_value act on the gradient (before coupled
    L2); l1 is the proximal step after the update, threshold lr*l1 (eta*l1 in ASGD)."""
    p, g = _data()
    lr = 0.1
    base, base_state = one_step(name, p, g, lr=lr)
    same, _ = one_step(name, p, -g, lr=lr, maximize=True)
    np.testing.assert_array_equal(same, base)
    clipped, clipped_state = one_step(name, p, g, lr=lr, grad_scale=0.5, clip_value=0.3)
    pre, pre_state = one_step(name, p, np.clip(g * 0.5, -0.3, 0.3), lr=lr)
    np.testing.assert_array_equal(clipped, pre)
    for a, b in zip(clipped_state, pre_state):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(clipped, base)
    tau = (0.05 if name == "asgd_" else lr) * 0.8
    shrunk, _ = one_step(name, p, g, lr=lr, l1=0.8)
    expected = np.where(np.abs(base) - tau > 0, np.copysign(np.abs(base) - tau, base), 0)
    np.testing.assert_array_equal(shrunk, expected)
    assert 0 < np.count_nonzero(shrunk == 0) < shrunk.size


class NoPromotion(np.ndarray):
    """An array whose ufuncs fail if they turn float32 operands into a float64
    result (e.g. an np.float64 scalar times a float32 array). Explicit
    astype(np.float64) for the double-precision sums stays allowed."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = lambda x: x.view(np.ndarray) if isinstance(x, NoPromotion) else x  # noqa: E731
        inputs = [plain(x) for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(plain(x) for x in kwargs["out"])
        result = getattr(ufunc, method)(*inputs, **kwargs)
        narrow = any(np.asarray(x).dtype == np.float32 for x in inputs
                     if isinstance(x, (np.ndarray, np.generic)))
        outputs = result if isinstance(result, tuple) else (result,)
        if narrow and any(np.asarray(r).dtype == np.float64 for r in outputs):
            raise AssertionError(f"{ufunc.__name__}.{method} promotes float32 to float64")
        wrap = lambda r: r.view(NoPromotion) if isinstance(r, np.ndarray) else r  # noqa: E731
        return tuple(map(wrap, result)) if isinstance(result, tuple) else wrap(result)


def test_no_promotion_detector_works():
    x = np.ones(3, np.float32).view(NoPromotion)
    assert (0.5 * x).dtype == np.float32
    assert (x.astype(np.float64) ** 2).dtype == np.float64
    with pytest.raises(AssertionError, match="promotes"):
        np.float64(0.5) * x


@pytest.mark.parametrize("name", ONE_STEP)
def test_float32_arithmetic_stays_float32(name):
    """Element arithmetic runs in float32 for float32 arrays (weak Python
    scalars, no float64 operand), so it rounds differently from a float64 run."""
    p, g = _data(np.float32)
    no_promotion = lambda a: np.asarray(a).view(NoPromotion)  # noqa: E731
    ours, state = one_step(name, p, g, wrap=no_promotion, lr=0.1, weight_decay=0.01)
    ours, state = np.asarray(ours), [np.asarray(s) for s in state]
    assert type(ours) is np.ndarray
    wide, wide_state = one_step(name, p.astype(np.float64), g.astype(np.float64), lr=0.1,
                                weight_decay=0.01)
    assert ours.dtype == np.float32
    assert all(s.dtype == np.float32 for s in state)
    np.testing.assert_allclose(ours, wide, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(ours, wide.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_adafactor_second_moments_follow_torch_lerp(dtype):
    """torch.lerp's two formulas: at step 1 (w = 1) the factors become exactly
    the new means, b - (b - a)*0 (a + 1*(b - a) need not round to b); for
    w < 0.5, a + w*(b - a). Column means are sequential sums over rows."""
    rng = np.random.default_rng(21)
    p = rng.standard_normal((6, 5)).astype(dtype)
    v = rng.standard_normal(9).astype(dtype)
    g, gv = (rng.standard_normal(a.shape).astype(dtype) * 3 for a in (p, v))
    col_mean = (np.cumsum(g.astype(np.float64) ** 2, axis=0)[-1:] / 6).astype(dtype)
    for step, w in [(1, 1.0), (5, 5.0**-0.8)]:
        col0 = (np.abs(rng.standard_normal((1, 5))) * 1e-3 + 1e3).astype(dtype)
        var0 = (np.abs(rng.standard_normal(9)) * 1e-3 + 1e3).astype(dtype)
        row, col, var = np.ones((6, 1), dtype), col0.copy(), var0.copy()
        R.adafactor_([p.copy(), v.copy()], [g, gv], [row, None], [col, None], [None, var],
                     step=step)
        if w < 0.5:
            np.testing.assert_array_equal(col, col0 + w * (col_mean - col0))
            np.testing.assert_array_equal(var, var0 + w * (gv * gv - var0))
        else:
            np.testing.assert_array_equal(col, col_mean)
            np.testing.assert_array_equal(var, gv * gv)
            # the data make the naive formula round differently
            assert not np.array_equal(var0 + 1.0 * (gv * gv - var0), gv * gv)


# ----------------------------------------------------------------- _ordered_sum

def ordered_sum_loops(x):
    """The kernels' order written as loops: chunks of 4096, lane i % 8, the
    lane tree, chunk sums in order."""
    total = 0.0
    for start in range(0, len(x), 4096):
        lanes = [0.0] * 8
        for i, value in enumerate(x[start:start + 4096]):
            lanes[i % 8] += float(value)
        total += ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
            (lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    return total


@pytest.mark.parametrize("n", [0, 1, 7, 8, 4095, 4096, 4097, 20000])
def test_ordered_sum_is_accurate(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) ** 2 * np.exp(rng.uniform(-5, 5, n))
    got = R._ordered_sum(x)
    assert isinstance(got, float)
    assert got == pytest.approx(math.fsum(x), rel=1e-12, abs=0.0)
    if n == 0:
        assert got == 0.0


@pytest.mark.parametrize("n", [1, 9, 100, 4095, 4096, 4097, 8200])
def test_ordered_sum_order_is_pinned(n):
    """Bitwise equal to the loop transcription, on data where the order shows."""
    rng = np.random.default_rng(100 + n)
    x = rng.standard_normal(n) ** 2 * np.exp(rng.uniform(-20, 20, n))
    assert R._ordered_sum(x) == ordered_sum_loops(x)


E = 2.0**-53  # half an ulp of 1.0: 1 + E rounds to 1, 1 + 2E is exact


@pytest.mark.parametrize(("x", "expected"), [
    # lanes combined as (l0 + l1) + (l2 + l3), not l0 + l1 + l2 + l3 in sequence
    ([1, 0, E, E], 1 + 2 * E),
    # and not as (l0 + l2) + (l1 + l3)
    ([1, E, 0, E], 1.0),
    # the top split is (l0..l3) + (l4..l7)
    ([1, 0, 0, 0, E, 0, E, 0], 1 + 2 * E),
    # element i goes to lane i % 8 (not to contiguous blocks)
    ([1, E] + [0] * 7 + [E] + [0] * 6, 1 + 2 * E),
    # each lane in index order: lane 0 gets 1 + E (rounds to 1) before + E
    ([1] + [0] * 7 + [E] + [0] * 7 + [E], 1.0),
], ids=["pairs", "not-strided-pairs", "halves", "lane-i-mod-8", "lane-sequential"])
def test_ordered_sum_hand_built(x, expected):
    assert R._ordered_sum(np.array(x, dtype=np.float64)) == expected


def test_ordered_sum_chunks_are_added_in_order():
    """Chunks of 4096, summed sequentially: (c0 + c1) + c2 rounds away each of
    the two half-ulps that a sum without chunks (or c0 + (c1 + c2)) keeps."""
    x = np.zeros(8194)
    x[0], x[4096 + 1], x[8192 + 1] = 1.0, E, E
    assert R._ordered_sum(x) == 1.0
    # without chunking, lane 1 would hold E + E and the sum would be 1 + 2E
    assert (x[1::8].sum() + 1.0) == 1 + 2 * E
    # the same data split differently: two chunks of 4096 then 2 elements
    y = np.zeros(8194)
    y[0], y[1] = E, E
    y[4096] = 1.0
    assert R._ordered_sum(y) == 1 + 2 * E  # c0 = 2E exactly, then + 1
