"""fastopt.optim classes agree with torch.optim over 120 steps for every
algorithm torch also has (Rprop in torch is irprop-)."""

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
