"""Lion and LAMB (the classes) against independent transcriptions of optax's
published rules; and, for every class of fastopt.optim (Optimizer and LBFGS
aside), the machinery every optimizer shares: state_dict and checkpoint
resume (bitwise), schedules, step statistics, clipping, the non-finite
policies and the proximal L1 step. The six optimizers torch also has are
compared with torch.optim in test_vs_torch.py."""

import inspect
import math

import numpy as np
import pytest

import fastopt
from fastopt import optim
from fastopt import schedules as S
from problems import sparse_regression

# ============================================= Lion and LAMB vs optax's rules

OPTAX_STEPS = 200
CHECK_EVERY = 20
RTOL64 = 1e-10
# Two param groups; a 0-d array, a (33, 40) one (SIMD bodies and tails), and an
# all-zero one (||p|| = 0 at the first step: LAMB's trust ratio is then 1).
OPTAX_SHAPES = [[(7,), (5, 3), "zeros"], [(2, 4, 6), (), (33, 40)]]

# fastopt's defaults (docs/algorithms.md 3.13, 3.14); checked against the signatures below.
LION_DEFAULTS = dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False,
                     decoupled_weight_decay=True)
LAMB_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, maximize=False)


def optax_lion_update(p, g, mu, *, lr, b1, b2, weight_decay):
    """optax.lion = chain(scale_by_lion(b1, b2), add_decayed_weights(weight_decay),
    scale_by_learning_rate(lr)); optax.apply_updates adds the update."""
    direction = np.sign((1.0 - b1) * g + b1 * mu)
    new_mu = (1.0 - b2) * g + b2 * mu
    update = -lr * (direction + weight_decay * p)
    return p + update, new_mu


def optax_lamb_update(p, g, mu, nu, count, *, lr, b1, b2, eps, weight_decay):
    """optax.lamb = chain(scale_by_adam(b1, b2, eps, eps_root=0), add_decayed_weights(weight_decay),
    scale_by_trust_ratio(), scale_by_learning_rate(lr)); count is the step after the increment."""
    new_mu = (1.0 - b1) * g + b1 * mu
    new_nu = (1.0 - b2) * (g * g) + b2 * nu
    mu_hat = new_mu / (1.0 - b1**count)
    nu_hat = new_nu / (1.0 - b2**count)
    update = mu_hat / (np.sqrt(nu_hat + 0.0) + eps) + weight_decay * p
    # scale_by_trust_ratio(min_norm=0, trust_coefficient=1, eps=0)
    param_norm = math.sqrt(float(np.sum(p * p)))
    update_norm = math.sqrt(float(np.sum(update * update)))
    ratio = 1.0 if param_norm == 0.0 or update_norm == 0.0 else param_norm / update_norm
    return p + (-lr * (update * ratio)), new_mu, new_nu


def optax_params(seed=0):
    rng = np.random.default_rng(seed)
    return [[np.zeros(6) if s == "zeros" else np.asarray(rng.standard_normal(s)) for s in shapes]
            for shapes in OPTAX_SHAPES]


def quadratic_gradient(p, t, key, sign=1.0):
    """1.5*(p - 0.3) + noise fixed by (step, array); sign=-1: the gradient of
    the negated objective (which maximize=True then descends)."""
    rng = np.random.default_rng(1000 * t + key)
    g = sign * 1.5 * (np.asarray(p, np.float64) - 0.3) + 0.5 * rng.standard_normal(np.shape(p))
    return np.asarray(g, dtype=p.dtype)


LION_CONFIGS = [
    (dict(lr=1e-3), dict(lr=3e-3, betas=(0.95, 0.98))),
    (dict(lr=1e-3, maximize=True), dict(lr=3e-3)),
    (dict(lr=1e-3, weight_decay=0.1), dict(lr=3e-3, weight_decay=0.5, betas=(0.8, 0.9))),
    # coupled: an L2 term on the gradient (optax: the same rule on the gradient of f + wd/2 ||p||^2)
    (dict(lr=1e-3, weight_decay=0.1, decoupled_weight_decay=False), dict(lr=3e-3, weight_decay=0.5)),
]
LAMB_CONFIGS = [
    ({}, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-4)),
    (dict(maximize=True), dict(lr=0.02)),
    (dict(weight_decay=0.1), dict(lr=0.02, weight_decay=0.01, eps=1e-8)),
]


def optax_config_id(config):
    fmt = lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults"  # noqa: E731
    return f"[{fmt(config[0])}][{fmt(config[1])}]"


def assert_close64(actual, desired, where):
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, where
    assert actual.dtype == np.float64, where
    scale = float(np.max(np.abs(desired), initial=0.0))
    np.testing.assert_allclose(actual, desired, rtol=RTOL64, atol=RTOL64 * scale, err_msg=where)


def test_lion_and_lamb_defaults_are_the_documented_ones():
    for cls, documented in ((optim.Lion, LION_DEFAULTS), (optim.LAMB, LAMB_DEFAULTS)):
        params = inspect.signature(cls).parameters
        assert {name: params[name].default for name in documented} == documented, cls.__name__


@pytest.mark.parametrize(("name", "config"), [("Lion", c) for c in LION_CONFIGS] + [("LAMB", c) for c in LAMB_CONFIGS],
                         ids=[f"Lion{optax_config_id(c)}" for c in LION_CONFIGS]
                         + [f"LAMB{optax_config_id(c)}" for c in LAMB_CONFIGS])
def test_lion_lamb_classes_match_optax_rules(name, config):
    kw1, kw2 = config
    defaults = LION_DEFAULTS if name == "Lion" else LAMB_DEFAULTS
    full = [{**defaults, **kw1}, {**defaults, **kw1, **kw2}]
    ours = optax_params()
    opt = getattr(optim, name)([{"params": ours[0]}, {"params": ours[1], **kw2}], **kw1)
    theirs = [[p.copy() for p in group] for group in ours]
    mu = [[np.zeros_like(p) for p in group] for group in ours]
    nu = [[np.zeros_like(p) for p in group] for group in ours]
    signs = [-1.0 if kw["maximize"] else 1.0 for kw in full]
    for t in range(1, OPTAX_STEPS + 1):
        opt.step([quadratic_gradient(p, t, 10 * i + k, signs[i])
                  for i, group in enumerate(ours) for k, p in enumerate(group)])
        for i, kw in enumerate(full):
            b1, b2 = kw["betas"]
            for k, p in enumerate(theirs[i]):
                # optax has no maximize: it minimizes -objective, whose gradient is -g
                g = signs[i] * quadratic_gradient(p, t, 10 * i + k, signs[i])
                if name == "Lion":
                    coupled = not kw["decoupled_weight_decay"]
                    theirs[i][k], mu[i][k] = optax_lion_update(
                        p, g + kw["weight_decay"] * p if coupled else g, mu[i][k], lr=kw["lr"], b1=b1,
                        b2=b2, weight_decay=0.0 if coupled else kw["weight_decay"])
                else:
                    theirs[i][k], mu[i][k], nu[i][k] = optax_lamb_update(
                        p, g, mu[i][k], nu[i][k], t, lr=kw["lr"], b1=b1, b2=b2, eps=kw["eps"],
                        weight_decay=kw["weight_decay"])
        if t % CHECK_EVERY:
            continue
        index = 0
        for i, group in enumerate(ours):
            for k, p in enumerate(group):
                where = f"step {t}, group {i}, param {k} {p.shape}"
                assert_close64(p, theirs[i][k], where)
                state = opt.state[index]
                assert set(state) == ({"step", "exp_avg"} | ({"exp_avg_sq"} if name == "LAMB" else set())), where
                assert state["step"] == t, where
                assert_close64(state["exp_avg"], mu[i][k], where + " exp_avg")
                if name == "LAMB":
                    assert_close64(state["exp_avg_sq"], nu[i][k], where + " exp_avg_sq")
                index += 1
    start = optax_params()
    for group, group0 in zip(ours, start):
        for p, p0 in zip(group, group0):
            assert not np.allclose(p, p0, rtol=0, atol=1e-3), p.shape  # every array moved


# ======================================= every class: the shared machinery

CLASS_NAMES = [n for n in optim.__all__ if n not in ("Optimizer", "LBFGS")]

# Per class: constructor keywords (first param group) and the second group's
# overrides, using as much of the class's state as possible.
CONFIGS = {
    "SGD": (dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), dict(lr=0.02)),
    "Adagrad": (dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1), dict(lr=0.05)),
    "RMSprop": (dict(lr=0.01, centered=True, momentum=0.5), dict(lr=0.005, alpha=0.9)),
    "Adam": (dict(lr=0.02, amsgrad=True), dict(lr=0.01, weight_decay=0.01)),
    "AdamW": (dict(lr=0.02), dict(lr=0.01, amsgrad=True)),
    "Rprop": (dict(lr=0.02, variant="irprop+"), dict(lr=0.01)),  # irprop+ keeps prev_loss
    "Quickprop": (dict(lr=0.02, mode_switch=1e-4, momentum=0.1), dict(lr=0.01)),
    "Adadelta": (dict(weight_decay=0.01), dict(lr=0.5, rho=0.8)),
    "Adamax": (dict(lr=0.01), dict(lr=0.02, weight_decay=0.01, decoupled_weight_decay=True)),
    "NAdam": (dict(lr=0.01), dict(lr=0.02, momentum_decay=0.01)),
    "RAdam": (dict(lr=0.01, betas=(0.8, 0.9)), dict(lr=0.02)),  # rho_t > 5 from step 6
    "ASGD": (dict(lr=0.02, t0=5), dict(lr=0.05, lambd=1e-2)),  # averaging from step 7
    "Adafactor": (dict(lr=0.05), dict(lr=0.5, weight_decay=0.01)),
    "Lion": (dict(lr=3e-3, weight_decay=0.01), dict(lr=1e-3)),
    "LAMB": (dict(lr=0.01, weight_decay=0.01), dict(lr=0.02)),
}
# Two param groups mixing float32 and float64 (two kernel calls per step), with
# a 0-d array and 2-D/3-D ones (Adafactor's factored state).
SPECS = [[((5, 3), np.float64), ((3,), np.float32)],
         [((2, 3, 4), np.float64), ((), np.float64), ((40,), np.float32)]]

every_class = pytest.mark.parametrize("name", CLASS_NAMES)


def test_every_class_has_a_configuration():
    assert set(CONFIGS) == set(CLASS_NAMES) == set(L1_CASES)


def make(name, seed=1, configured=True):
    """Parameters (flat list, param_groups order) and the optimizer over them;
    configured=False builds the optimizer with the class's defaults."""
    rng = np.random.default_rng(seed)
    groups = [[np.asarray(rng.standard_normal(shape), dtype=dtype) for shape, dtype in specs]
              for specs in SPECS]
    kw1, kw2 = CONFIGS[name] if configured else ({}, {})
    opt = getattr(optim, name)([{"params": groups[0]}, {"params": groups[1], **kw2}], **kw1)
    return [p for group in groups for p in group], opt


def gradients(params, t):
    return [quadratic_gradient(p, t, k) for k, p in enumerate(params)]


def loss_of(params, t):
    """The quadratic's value, doubled at odd steps: the loss rises every other
    step, so irprop+ backtracks (which needs prev_loss, its scalar state)."""
    return float(sum(np.sum(0.75 * (p.astype(np.float64) - 0.3) ** 2) for p in params)) * (1 + t % 2)


def train(params, opt, first, last, sched=None, **step_kw):
    for t in range(first, last + 1):
        opt.step(gradients(params, t), loss=loss_of(params, t), **step_kw)
        if sched is not None:
            sched.step()


def assert_bitwise(params_a, opt_a, params_b, opt_b, groups=True):
    """Same parameters and the same state_dict, bit for bit (dtypes included);
    groups=False leaves the param_groups out."""
    for k, (a, b) in enumerate(zip(params_a, params_b)):
        assert a.dtype == b.dtype, k
        assert a.shape == b.shape, k
        np.testing.assert_array_equal(a, b, err_msg=f"param {k}")
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    if groups:
        assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys(), i
        for key, value in sa["state"][i].items():
            other = sb["state"][i][key]
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype, (i, key)
                np.testing.assert_array_equal(value, other, err_msg=f"state {i} {key}")
            else:
                assert type(value) is type(other), (i, key, value, other)
                assert value == other, (i, key, value, other)


def snapshot(params, opt):
    return [p.copy() for p in params], opt.state_dict()


def assert_unchanged(params, opt, snap):
    old_params, old_state = snap
    for k, (p, q) in enumerate(zip(params, old_params)):
        np.testing.assert_array_equal(p, q, err_msg=f"param {k} changed")
    new_state = opt.state_dict()
    assert new_state["state"].keys() == old_state["state"].keys()
    for i, entries in old_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(new_state["state"][i][key], value, err_msg=f"state {i} {key}")
            else:
                assert new_state["state"][i][key] == value, (i, key)


# ------------------------------------------------------------------ resume

@every_class
def test_state_dict_round_trip_resumes_bitwise(name):
    straight_params, straight = make(name)
    train(straight_params, straight, 1, 30)

    params, opt = make(name)
    train(params, opt, 1, 12)
    saved, saved_params = opt.state_dict(), [p.copy() for p in params]
    train(params, opt, 13, 15)  # the run goes on: the saved copy must not follow it

    # another process: other initial values, the class's default hyperparameters
    resumed_params, resumed = make(name, seed=7, configured=False)
    for p, q in zip(resumed_params, saved_params):
        p[...] = q
    resumed.load_state_dict(saved)
    for entries in saved["state"].values():  # the optimizer holds copies, not the dict's arrays
        for value in entries.values():
            if isinstance(value, np.ndarray):
                value.fill(np.nan)
    train(resumed_params, resumed, 13, 30)
    assert_bitwise(straight_params, straight, resumed_params, resumed)


@every_class
def test_checkpoint_round_trip_resumes_bitwise(name, tmp_path):
    straight_params, straight = make(name)
    straight_sched = S.StepLR(straight, step_size=4, gamma=0.5)
    train(straight_params, straight, 1, 30, straight_sched)

    params, opt = make(name)
    sched = S.StepLR(opt, step_size=4, gamma=0.5)
    train(params, opt, 1, 12, sched)
    fastopt.save(tmp_path / "run.npz", opt, sched, extra={"step": 12})
    train(params, opt, 13, 15, sched)  # the file must not follow the run

    resumed_params, resumed = make(name, seed=7)  # other initial values: load restores them
    resumed_sched = S.StepLR(resumed, step_size=4, gamma=0.5)
    assert fastopt.load(tmp_path / "run.npz", resumed, resumed_sched) == {"step": 12}
    train(resumed_params, resumed, 13, 30, resumed_sched)
    assert_bitwise(straight_params, straight, resumed_params, resumed)
    assert resumed_sched.get_last_lr() == straight_sched.get_last_lr()


# --------------------------------------------------------------- schedules

def lr_changes_the_run(name):
    """Rprop's lr is only the initial per-weight step size (docs/algorithms.md
    3.5): changing it after the first step changes nothing."""
    return name != "Rprop"


@every_class
def test_schedule_drives_lr_like_a_manual_change(name):
    sched_params, by_sched = make(name)
    sched = S.StepLR(by_sched, step_size=4, gamma=0.5)
    manual_params, by_hand = make(name)
    base = [group["lr"] for group in by_hand.param_groups]
    const_params, const = make(name)
    for t in range(1, 21):
        for group, lr in zip(by_hand.param_groups, base):
            group["lr"] = lr * 0.5 ** ((t - 1) // 4)  # powers of 2: the same floats as StepLR's
        assert [g["lr"] for g in by_sched.param_groups] == [g["lr"] for g in by_hand.param_groups], t
        for ps, opt in ((sched_params, by_sched), (manual_params, by_hand), (const_params, const)):
            opt.step(gradients(ps, t), loss=loss_of(ps, t))
        sched.step()
    assert by_sched.param_groups[0]["lr"] == base[0] * 0.5**5  # the scheduler ran one epoch ahead
    assert_bitwise(sched_params, by_sched, manual_params, by_hand, groups=False)
    same = all(np.array_equal(a, b) for a, b in zip(sched_params, const_params))
    assert same == (not lr_changes_the_run(name))


# -------------------------------------------------------------- statistics

@every_class
def test_step_stats_are_finite_and_right(name):
    params, opt = make(name)
    twin_params, twin = make(name)
    for t in range(1, 6):
        grads = gradients(params, t)
        before = [p.astype(np.float64) for p in params]
        stats = opt.step(grads, loss=loss_of(params, t), stats=True)
        twin.step(gradients(twin_params, t), loss=loss_of(twin_params, t))
        after = [p.astype(np.float64) for p in params]
        assert isinstance(stats, fastopt.StepStats)
        assert opt.last_stats is stats
        values = [stats.grad_norm, stats.param_norm, stats.update_norm, stats.update_ratio]
        assert all(math.isfinite(v) for v in values), stats
        assert stats.nonfinite_grads == 0
        assert stats.grad_scale == 1.0
        assert not stats.skipped
        grad_norm = math.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
        param_norm = math.sqrt(sum(np.sum(b * b) for b in before))
        update_norm = math.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
        assert stats.grad_norm == pytest.approx(grad_norm, rel=1e-12)
        assert stats.param_norm == pytest.approx(param_norm, rel=1e-12)
        assert stats.update_norm == pytest.approx(update_norm, rel=1e-12)
        assert update_norm > 0
        assert stats.update_ratio == pytest.approx(update_norm / param_norm, rel=1e-12)
    assert_bitwise(params, opt, twin_params, twin)  # gathering statistics changes nothing


# ---------------------------------------------------------------- clipping

CLIPPING = {"max_grad_norm": dict(max_grad_norm=0.5), "grad_clip_value": dict(grad_clip_value=0.3),
            "both": dict(max_grad_norm=2.0, grad_clip_value=0.3)}


@every_class
@pytest.mark.parametrize("clipping", CLIPPING)
def test_clipping_in_the_step_equals_clipping_the_gradients_first(name, clipping):
    options = CLIPPING[clipping]
    params, _ = make(name)
    inside = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:], **CONFIGS[name][1]}],
                                  **CONFIGS[name][0], **options)
    outside_params, outside = make(name)
    for t in range(1, 11):
        grads = gradients(params, t)
        kept = [g.copy() for g in grads]
        stats = inside.step(grads, loss=loss_of(params, t), stats=True)
        for g, k in zip(grads, kept):
            np.testing.assert_array_equal(g, k)  # the caller's gradients are not written
        grads = gradients(outside_params, t)
        if "max_grad_norm" in options:
            norm = fastopt.clip_grad_norm_(grads, options["max_grad_norm"])
            assert stats.grad_norm == pytest.approx(norm, rel=1e-12)
            assert stats.grad_scale < 1.0  # the norm is well above the limit: it did clip
        if "grad_clip_value" in options:
            assert any(np.any(np.abs(g) > options["grad_clip_value"]) for g in grads)
            fastopt.clip_grad_value_(grads, options["grad_clip_value"])
        outside.step(grads, loss=loss_of(outside_params, t))
    assert_bitwise(params, inside, outside_params, outside)


# ------------------------------------------------------ non-finite gradients

@every_class
@pytest.mark.parametrize("policy", ["skip", "raise"])
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_nonfinite_gradient_leaves_everything_unchanged(name, policy, bad):
    """A step with a NaN (in a float32 array) or -Inf (in the 0-d float64
    array) changes nothing: afterwards the run is the one that never saw it."""
    params, _ = make(name)
    opt = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:], **CONFIGS[name][1]}],
                               **CONFIGS[name][0], nonfinite=policy)
    twin_params, twin = make(name)
    train(params, opt, 1, 5)
    train(twin_params, twin, 1, 5)
    grads = gradients(params, 6)
    if bad == "nan":
        grads[4][7] = np.nan
    else:
        grads[3][...] = -np.inf
    snap = snapshot(params, opt)
    if policy == "skip":
        stats = opt.step(grads, loss=loss_of(params, 6), stats=True)
        assert stats.skipped
        assert stats.nonfinite_grads == 1
        assert stats.update_norm == 0.0
    else:
        with pytest.raises(fastopt.NonFiniteGradientError):
            opt.step(grads, loss=loss_of(params, 6))
    assert_unchanged(params, opt, snap)
    train(params, opt, 6, 10)
    train(twin_params, twin, 6, 10)
    assert_bitwise(params, opt, twin_params, twin)


# ---------------------------------------------------------------------- L1

# (constructor keywords, l1, inactive weights of 25 that must be exactly zero
# at the median step of the last 100). The threshold is lr*l1 with the base lr
# (eta*l1 in ASGD), so an adaptive method, whose per-weight step differs, needs
# its own l1 and zeroes fewer weights; its zeros may come and go between steps.
# Measured medians (float64, 1500 steps): SGD 25, Adagrad 12, RMSprop 24,
# Adam 11, AdamW 11, Quickprop 22, Adadelta 22, Adamax 18, NAdam 14, RAdam 12,
# ASGD 25, Adafactor 15, Lion 12, LAMB 14. Rprop: 0 (see the test).
L1_CASES = {
    "SGD": (dict(lr=0.05, momentum=0.9), 0.05, 25),
    "Adagrad": (dict(lr=0.2), 0.01, 6),
    "RMSprop": (dict(lr=0.01), 0.2, 12),
    "Adam": (dict(lr=0.02), 0.05, 5),
    "AdamW": (dict(lr=0.02), 0.05, 5),
    "Rprop": (dict(lr=0.01), 0.2, 0),
    "Quickprop": (dict(lr=0.05, decay=0.0), 0.05, 11),
    "Adadelta": (dict(lr=1.0), 1e-3, 11),
    "Adamax": (dict(lr=0.02), 0.01, 9),
    "NAdam": (dict(lr=0.02), 0.05, 7),
    "RAdam": (dict(lr=0.02), 0.05, 6),
    "ASGD": (dict(lr=0.05, t0=500), 0.01, 25),
    "Adafactor": (dict(lr=0.05), 0.2, 7),
    "Lion": (dict(lr=0.003), 0.05, 6),
    "LAMB": (dict(lr=0.02), 0.2, 7),
}
L1_STEPS = 1500


def lasso_run(name, l1):
    kwargs, _, _ = L1_CASES[name]
    x, y, w_true = sparse_regression()
    w = np.random.default_rng(3).standard_normal(30) * 0.5
    opt = getattr(optim, name)([w], l1=l1, **kwargs)
    zeros = []
    for _ in range(L1_STEPS):
        r = x @ w - y
        opt.step([x.T @ r / len(y)], loss=0.5 * float(np.mean(r * r)))
        zeros.append(int(np.count_nonzero(w[w_true == 0] == 0.0)))
    return w, w_true, zeros


@every_class
def test_l1_gives_exact_zeros_on_a_sparse_problem(name):
    _, l1, floor = L1_CASES[name]
    w, w_true, zeros = lasso_run(name, l1)
    w0, _, zeros0 = lasso_run(name, 0.0)
    assert max(zeros0) == 0  # without the prox: never an exact zero
    assert np.all(w0 != 0)
    active = w_true != 0
    assert np.all(np.sign(w[active]) == np.sign(w_true[active]))  # the signal survives
    if name == "Rprop":
        # The threshold is D*l1 with D the per-weight step size, which shrinks
        # towards step_size_min as the weights converge: the prox acts early
        # (exact zeros appear) and then fades out, and the run ends where the
        # unregularized one does. l1 >= 1 instead stops every weight at 0.
        assert max(zeros) > 0
        assert max(zeros[-100:]) == 0
        np.testing.assert_allclose(w, w0, rtol=0, atol=1e-4)
        return
    assert np.median(zeros[-100:]) >= floor, zeros[-100:]
    assert np.all(w[active] != 0)
