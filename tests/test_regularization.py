"""Regularization, clipping, step statistics and the non-finite policy.
(Every option also runs through the registry against fastopt.reference,
bitwise, on every SIMD target: see registry.SHARED_OPTIONS.)"""

import math

import numpy as np
import pytest

import fastopt
from fastopt import functional as F
from fastopt import optim
from problems import sparse_regression

CLASSES = {
    "SGD": (optim.SGD, dict(lr=0.05, momentum=0.9)),
    "Adagrad": (optim.Adagrad, dict(lr=0.2)),
    "RMSprop": (optim.RMSprop, dict(lr=0.01)),
    "Adam": (optim.Adam, dict(lr=0.02)),
    "AdamW": (optim.AdamW, dict(lr=0.02)),
    "Rprop": (optim.Rprop, dict(lr=0.01)),
    "Quickprop": (optim.Quickprop, dict(lr=0.05, decay=0.0)),
}


def train_lasso(name, l1, steps=1500):
    cls, kwargs = CLASSES[name]
    x, y, w_true = sparse_regression()
    w = np.zeros(x.shape[1])
    opt = cls([w], l1=l1, **kwargs)
    for _ in range(steps):
        opt.step([x.T @ (x @ w - y) / len(y)])
    return w, w_true


@pytest.mark.parametrize("name", ["SGD", "Quickprop"])
def test_l1_prox_recovers_the_sparsity_pattern(name):
    """With a plain gradient step the threshold lr*l1 matches the step the
    weight takes, and the lasso's sparsity pattern comes out exactly."""
    w, w_true = train_lasso(name, l1=0.05)
    assert np.count_nonzero(w[w_true == 0] == 0.0) >= 24  # of 25 (measured: SGD 25, Quickprop 24)
    assert np.all(w[w_true != 0] != 0.0)
    np.testing.assert_allclose(w[w_true != 0], w_true[w_true != 0], atol=0.05)


@pytest.mark.parametrize("name", ["Adagrad", "RMSprop", "Adam", "AdamW"])
def test_l1_prox_gives_exact_zeros_with_adaptive_methods(name):
    """The rule is docs/algorithms.md's tau = lr*l1 with the base lr; an adaptive
    method's per-weight step differs, so fewer weights settle at exactly 0
    (documented), but the prox does produce exact zeros where none appear
    without it."""
    w, w_true = train_lasso(name, l1=0.05)
    w0, _ = train_lasso(name, l1=0.0)
    assert np.count_nonzero(w0 == 0.0) == 0
    assert np.count_nonzero(w[w_true == 0] == 0.0) >= 1
    assert np.all(w[w_true != 0] != 0.0)


def test_subgradient_l1_does_not_give_zeros_but_the_prox_does():
    """The reason for the proximal form (docs/algorithms.md)."""
    x, y, w_true = sparse_regression()
    w_sub, w_prox = np.zeros(30), np.zeros(30)
    sub, prox = optim.SGD([w_sub], lr=0.05), optim.SGD([w_prox], lr=0.05, l1=0.05)
    for _ in range(1000):
        sub.step([x.T @ (x @ w_sub - y) / len(y) + 0.05 * np.sign(w_sub)])
        prox.step([x.T @ (x @ w_prox - y) / len(y)])
    assert np.count_nonzero(w_sub[w_true == 0] == 0) < 5
    assert np.count_nonzero(w_prox[w_true == 0] == 0) == 25


def test_adam_with_decoupled_decay_is_adamw():
    p, q = np.ones(9), np.ones(9)
    a = optim.Adam([p], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)
    b = optim.AdamW([q], lr=0.1, weight_decay=0.1)
    for t in range(20):
        a.step([np.sin(p + t)])
        b.step([np.sin(q + t)])
    np.testing.assert_array_equal(p, q)


# ------------------------------------------------------------------ clipping
def mixed_grads(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(d) * 3 for s, d in
            [((70000,), np.float32), ((31, 7), np.float64), ((5,), np.float32), ((1,), np.float64)]]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_global_norm_matches_numpy_and_is_the_same_for_any_thread_count(norm_type):
    grads = mixed_grads()
    flat = np.concatenate([g.astype(np.float64).ravel() for g in grads])
    expected = np.linalg.norm(flat, ord=norm_type)
    norms = []
    for threads in (1, 2, 3):
        fastopt.set_num_threads(threads)
        try:
            norms.append(fastopt.global_grad_norm(grads, norm_type)[0])
        finally:
            fastopt.set_num_threads(0)
    assert norms[0] == norms[1] == norms[2]
    assert norms[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    ours = [g.astype(np.float32) for g in mixed_grads(1)]
    theirs = [torch.tensor(g.copy()) for g in ours]
    for t in theirs:
        t.grad = t.clone()
    total = fastopt.clip_grad_norm_(ours, max_norm, norm_type)
    total_torch = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert total == pytest.approx(float(total_torch), rel=1e-5)
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=2e-6, atol=1e-7)


def test_clip_grad_value_matches_torch():
    torch = pytest.importorskip("torch")
    ours = [g.astype(np.float32) for g in mixed_grads(2)]
    theirs = [torch.tensor(g.copy()) for g in ours]
    for t in theirs:
        t.grad = t.clone()
    fastopt.clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for a, t in zip(ours, theirs):
        np.testing.assert_array_equal(a, t.grad.numpy())


def test_clipping_inside_the_step_equals_clipping_first_and_leaves_grads_untouched():
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(s) for s in (40000, 17)]
    inside = [p.copy() for p in params]
    outside = [p.copy() for p in params]
    opt_in = optim.Adam(inside, lr=0.01, max_grad_norm=1.0, grad_clip_value=0.05)
    opt_out = optim.Adam(outside, lr=0.01)
    for _t in range(5):
        grads = [rng.standard_normal(p.shape) for p in params]
        kept = [g.copy() for g in grads]
        stats = opt_in.step(grads, stats=True)
        for g, k in zip(grads, kept):
            np.testing.assert_array_equal(g, k)  # the caller's gradients are not written
        fastopt.clip_grad_norm_(grads, 1.0)
        assert stats.grad_scale < 1
        fastopt.clip_grad_value_(grads, 0.05)
        opt_out.step(grads)
    for a, b in zip(inside, outside):
        np.testing.assert_array_equal(a, b)


def test_clipped_adam_training_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    ours = [rng.standard_normal(s).astype(np.float32) for s in (300, 7)]
    theirs = [torch.tensor(p.copy()) for p in ours]
    opt = optim.Adam(ours, lr=0.01, max_grad_norm=0.5)
    ref = torch.optim.Adam(theirs, lr=0.01)
    for t in range(50):
        grads = [np.cos(p * (t + 1)).astype(np.float32) * 5 for p in ours]
        for tp in theirs:
            tp.grad = torch.cos(tp * (t + 1)) * 5
        opt.step(grads)
        torch.nn.utils.clip_grad_norm_(theirs, 0.5)
        ref.step()
    for a, tp in zip(ours, theirs):
        np.testing.assert_allclose(a, tp.numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ statistics
@pytest.mark.parametrize("name", CLASSES)
def test_step_stats_match_numpy(name):
    cls, kwargs = CLASSES[name]
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(s) for s in (50000, 33)] + [rng.standard_normal(9).astype(np.float32)]
    opt = cls(params, **kwargs)
    for _t in range(3):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        grads[1][4] = np.nan
        before = [p.astype(np.float64) for p in params]
        stats = opt.step(grads, stats=True)
        after = [p.astype(np.float64) for p in params]
        g64 = [g.astype(np.float64) for g in grads]
        finite = [np.where(np.isfinite(g), g, 0) for g in g64]
        param_norm = math.sqrt(sum(np.sum(b * b) for b in before))
        update = math.sqrt(sum(np.nansum((a - b) ** 2) for a, b in zip(after, before)))
        assert stats.nonfinite_grads == 1
        assert opt.last_stats is stats
        assert math.isnan(stats.grad_norm)  # a NaN gradient makes the norm NaN, as in torch
        assert stats.param_norm == pytest.approx(param_norm, rel=1e-12)
        if math.isfinite(stats.update_norm):
            assert stats.update_norm == pytest.approx(update, rel=1e-9)
        grads[1][4] = 0.0
        params[1][:] = np.nan_to_num(params[1])
        stats = F.sgd_(params[0], grads[0], step=1, lr=0.0, stats=True)
        assert stats.grad_norm == pytest.approx(np.linalg.norm(finite[0]), rel=1e-12)
        assert stats.update_norm == 0.0
        assert stats.update_ratio == 0.0


def test_stats_are_the_same_for_any_thread_count():
    results = []
    for threads in (1, 2, 3):
        p = np.linspace(-1, 1, 300001, dtype=np.float32)
        g = np.cos(p * 7)
        m, v = np.zeros_like(p), np.zeros_like(p)
        results.append(F.adam_(p, g, m, v, step=1, lr=0.01, stats=True, num_threads=threads))
    assert results[0] == results[1] == results[2]


# ------------------------------------------------------------ non-finite policy
def bad_step_setup(policy):
    params = [np.ones(5), np.ones(40000, np.float32)]
    opt = optim.Adam(params, lr=0.1, nonfinite=policy, amsgrad=True)
    opt.step([np.ones(5), np.ones(40000, np.float32)])
    grads = [np.ones(5), np.ones(40000, np.float32)]
    grads[1][123] = np.inf
    return params, opt, grads


def snapshot(opt, params):
    return [p.copy() for p in params], opt.state_dict()


def unchanged(opt, params, snap):
    old_params, old = snap
    new = opt.state_dict()
    return (all(np.array_equal(a, b) for a, b in zip(params, old_params))
            and all(new["state"][i]["step"] == old["state"][i]["step"] for i in old["state"])
            and all(np.array_equal(new["state"][i][k], old["state"][i][k])
                    for i in old["state"] for k in old["state"][i] if k != "step"))


def test_nonfinite_skip_leaves_every_buffer_untouched():
    params, opt, grads = bad_step_setup("skip")
    snap = snapshot(opt, params)
    stats = opt.step(grads, stats=True)
    assert stats.skipped
    assert stats.nonfinite_grads == 1
    assert stats.update_norm == 0
    assert unchanged(opt, params, snap)
    grads[1][123] = 1.0
    assert not opt.step(grads, stats=True).skipped  # and the next good step runs
    assert opt.state[0]["step"] == 2


def test_nonfinite_raise_raises_before_any_change():
    params, opt, grads = bad_step_setup("raise")
    snap = snapshot(opt, params)
    with pytest.raises(fastopt.NonFiniteGradientError, match="1 gradient elements"):
        opt.step(grads)
    assert unchanged(opt, params, snap)


def test_nonfinite_ignore_lets_it_through_like_torch():
    params, opt, grads = bad_step_setup("ignore")
    opt.step(grads)
    assert not np.isfinite(params[1][123])
    assert np.all(np.isfinite(params[0]))


def test_invalid_options_are_named():
    p = np.zeros(3)
    for kwargs, word in [(dict(max_grad_norm=0.0), "max_grad_norm"), (dict(grad_clip_value=-1), "grad_clip_value"),
                         (dict(nonfinite="drop"), "nonfinite"), (dict(norm_type=3), "norm_type"),
                         (dict(l1=-0.1), "l1")]:
        with pytest.raises(ValueError, match=word):
            optim.Adam([p], **kwargs)
    with pytest.raises(ValueError, match="max_norm"):
        fastopt.clip_grad_norm_([np.ones(3)], 0.0)
    with pytest.raises(ValueError, match="clip_value"):
        F.adam_(p, np.ones(3), np.zeros(3), np.zeros(3), step=1, clip_value=0.0)
    with pytest.raises(ValueError, match="grad_scale"):
        F.sgd_(p, np.ones(3), step=1, lr=0.1, grad_scale=float("nan"))
    assert not p.any()
