"""fastopt.torch: every fastopt optimizer as a torch.optim.Optimizer over CPU
tensors. Training runs (an MLP and a small CNN, two param groups) agree with
torch.optim; state dicts load from torch and back; schedulers, hooks and
closures work; 16-bit parameters step in place, bitwise as fastopt's NumPy
classes; bad inputs raise before anything is written."""

import copy
import io
import subprocess
import sys

import numpy as np
import pytest

import fastopt

torch = pytest.importorskip("torch")
import fastopt.torch as ft  # noqa: E402  (after the importorskip: this module imports torch)

nn = torch.nn
F = torch.nn.functional

STEPS = 200
RTOL = {torch.float32: 1e-4, torch.float64: 1e-10}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch's OpenMP barriers crawl when the machine is busy; one thread is
    also deterministic. Both sides of every comparison run under it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def default_dtype(request):
    """torch keeps scalar state (step, mu_product, eta, mu) in its default
    dtype: float64 runs use a float64 default, as torch's own float64 tests do."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(previous)


# ------------------------------------------------------------------ models
def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def cnn(dtype=torch.float32, seed=0, activation=nn.Tanh):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), activation(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).to(dtype)


def relu_cnn(dtype=torch.float32, seed=0):
    return cnn(dtype, seed, nn.ReLU)


def data(kind, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (64, 6) if kind == "mlp" else (128, 1, 8, 8)
    return torch.randn(shape, generator=g).to(dtype), torch.randn(shape[0], 3, generator=g).to(dtype)


MODELS = {"mlp": mlp, "cnn": cnn, "relu-cnn": relu_cnn}


def two_groups(model, second):
    """The first layer in group 0 (the constructor's values), the rest in group 1 (overrides)."""
    params = list(model.parameters())
    return [{"params": params[:2]}, {"params": params[2:], **second}]


def train(model, opt, batch, steps, sign=1.0, scheduler=None):
    x, y = batch
    for _ in range(steps):
        opt.zero_grad()
        (sign * F.mse_loss(model(x), y)).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def assert_params_close(ours, theirs, dtype, where=""):
    rtol = RTOL[dtype]
    for k, (a, b) in enumerate(zip(ours.parameters(), theirs.parameters())):
        a, b = a.detach().numpy(), b.detach().numpy()
        scale = max(float(np.max(np.abs(b))), 1e-30)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=f"{where} param {k}")


def assert_state_close(ours, theirs, dtype, skip=()):
    """Every state entry torch has, under torch's key name, to the same tolerance."""
    rtol = RTOL[dtype]
    for k, (p, tp) in enumerate(zip(ours_params(ours), ours_params(theirs))):
        mine, reference = ours.state[p], theirs.state[tp]
        assert set(reference) - set(skip) <= set(mine), (k, set(reference), set(mine))
        for key, value in reference.items():
            if key in skip:
                continue
            a, b = mine[key].numpy().astype(np.float64), value.numpy().astype(np.float64)
            scale = max(float(np.max(np.abs(b))), 1e-30)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=f"param {k} state {key}")


def ours_params(opt):
    return [p for g in opt.param_groups for p in g["params"]]


# ------------------------------------------- training against torch.optim
# (name, keywords for both groups, group 1's overrides). maximize runs descend
# the negated loss, so they train too. The rates keep every run out of the
# chaotic regime near convergence, where a rounding difference grows
# exponentially from step to step (an RMSprop with alpha=0.9 and momentum
# goes from 1e-15 to 1e-6 apart within 60 steps in float64, torch's foreach and
# single-tensor implementations included): there no two implementations agree.
# The CNN's activation is tanh: with ReLU, a float32 rounding difference
# sometimes puts one pre-activation on the other side of the kink, a jump of
# that sample's share of the gradient (up to 1e-3 apart after 200 steps, while
# differentiable models stay within 1e-7); ReLU is run in float64, where such a
# coincidence is 1e9 times rarer.
RUNS = [("mlp", torch.float32), ("mlp", torch.float64), ("cnn", torch.float32), ("cnn", torch.float64),
        ("relu-cnn", torch.float64)]
CONFIGS = [
    ("SGD", dict(lr=0.05), dict(lr=0.02, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.02, weight_decay=1e-3)),
    ("SGD", dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-3), dict(lr=0.05, weight_decay=0.0)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.1, maximize=True), dict(lr=0.02, weight_decay=1e-2)),
    ("Adagrad", dict(lr=0.05), dict(lr=0.02, weight_decay=1e-3)),
    ("Adagrad", dict(lr=0.05, lr_decay=1e-2, maximize=True), dict(lr=0.02, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3), dict(lr=5e-4, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, centered=True), dict(lr=5e-4, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9), dict(lr=5e-4, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.5), dict(lr=5e-4, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.5, maximize=True), dict(lr=5e-4)),
    ("Adam", dict(lr=1e-2), dict(lr=5e-3, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, amsgrad=True), dict(lr=5e-3, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, maximize=True), dict(lr=5e-3, weight_decay=1e-3)),
    ("Adam", dict(lr=3e-3, betas=(0.8, 0.99)), dict(lr=1e-3, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2, decoupled_weight_decay=True, weight_decay=0.1), dict(lr=5e-3, weight_decay=0.01)),
    ("AdamW", dict(lr=1e-2), dict(lr=5e-3, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, amsgrad=True), dict(lr=5e-3, weight_decay=0.1)),
    ("Rprop", dict(lr=1e-3), dict(lr=2e-3, etas=(0.4, 1.1))),
    ("Rprop", dict(lr=1e-3, maximize=True, step_sizes=(1e-5, 0.1)), dict(lr=2e-3)),
    ("Adadelta", dict(lr=1.0, rho=0.95), dict(lr=0.5, weight_decay=1e-3)),
    ("Adadelta", dict(lr=0.5, rho=0.8, maximize=True), dict(lr=0.2)),
    ("Adamax", dict(lr=1e-2), dict(lr=5e-3, weight_decay=1e-3)),
    ("NAdam", dict(lr=3e-3), dict(lr=1e-3, weight_decay=1e-3)),
    ("NAdam", dict(lr=3e-3, decoupled_weight_decay=True, weight_decay=0.1, maximize=True),
     dict(lr=1e-3, momentum_decay=1e-2)),
    ("RAdam", dict(lr=1e-2), dict(lr=5e-3, weight_decay=1e-3)),
    ("RAdam", dict(lr=1e-2, decoupled_weight_decay=True, weight_decay=0.1), dict(lr=5e-3)),
    ("ASGD", dict(lr=0.05, t0=50), dict(lr=0.02, weight_decay=1e-3)),
    ("ASGD", dict(lr=0.05, t0=20, lambd=1e-3, maximize=True), dict(lr=0.02, alpha=0.6)),
    ("Adafactor", dict(lr=1e-2), dict(lr=5e-3, weight_decay=1e-3)),
    ("Adafactor", dict(lr=1e-2, maximize=True), dict(lr=5e-3, d=2.0)),
]


def config_id(config):
    name, kw, second = config
    return name + "-" + ",".join(f"{k}={v}" for k, v in {**kw, **{f"g1.{k}": v for k, v in second.items()}}.items())


@pytest.mark.parametrize(("kind", "default_dtype"), RUNS, ids=lambda v: str(v).replace("torch.float", "f"),
                         indirect=["default_dtype"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_training_matches_torch_optim(config, kind, default_dtype):
    name, kw, second = config
    dtype = default_dtype
    ours, theirs = MODELS[kind](dtype), MODELS[kind](dtype)
    start = [p.detach().clone() for p in ours.parameters()]
    pointers = [p.data_ptr() for p in ours.parameters()]
    opt = getattr(ft, name)(two_groups(ours, second), **kw)
    ref = getattr(torch.optim, name)(two_groups(theirs, second), foreach=False, **kw)
    sign = -1.0 if kw.get("maximize") else 1.0
    batch = data(kind, dtype)
    train(ours, opt, batch, STEPS, sign)
    train(theirs, ref, batch, STEPS, sign)
    assert_params_close(ours, theirs, dtype, f"{name} {kind}")
    assert_state_close(opt, ref, dtype)
    # in place (the same memory), and every tensor moved
    assert [p.data_ptr() for p in ours.parameters()] == pointers
    for p, p0 in zip(ours.parameters(), start):
        assert not torch.equal(p.detach(), p0)
    # the training did train: the loss fell
    x, y = batch
    assert F.mse_loss(ours(x), y) < F.mse_loss(MODELS[kind](dtype)(x), y)


def test_torch_foreach_and_fused_agree():
    """torch's foreach (and fused Adam) implementations compute the same
    training; fastopt.torch accepts and ignores the switches."""
    for name, kw in [("Adam", dict(lr=1e-2, foreach=True)), ("Adam", dict(lr=1e-2, fused=True)),
                     ("SGD", dict(lr=0.05, momentum=0.9, foreach=True)), ("NAdam", dict(lr=3e-3, foreach=True))]:
        ours, theirs = mlp(), mlp()
        opt = getattr(ft, name)(two_groups(ours, dict(lr=kw["lr"] / 2)), **kw)
        ref = getattr(torch.optim, name)(two_groups(theirs, dict(lr=kw["lr"] / 2)), **kw)
        train(ours, opt, data("mlp"), STEPS)
        train(theirs, ref, data("mlp"), STEPS)
        assert_params_close(ours, theirs, torch.float32, name)
        assert "foreach" not in opt.param_groups[0]
        assert "fused" not in opt.param_groups[0]


# ------------------------------------------- bitwise against fastopt's NumPy classes
ALL = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Rprop", "Quickprop", "Adadelta", "Adamax", "NAdam", "RAdam",
       "ASGD", "Adafactor", "Lion", "LAMB"]
NUMPY_KW = {"SGD": dict(lr=0.05, momentum=0.9), "Quickprop": dict(lr=1e-2), "Lion": dict(lr=1e-3, weight_decay=0.1),
            "LAMB": dict(lr=1e-2, weight_decay=0.01), "Rprop": dict(lr=1e-3)}


def numpy_grads(model):
    return [p.grad.detach().numpy().copy() if p.grad is not None else None for p in model.parameters()]


@pytest.mark.parametrize("name", ALL)
def test_bitwise_equal_to_numpy_class(name):
    """The adapter adds no arithmetic: parameters and state are the fastopt
    NumPy class's, bit for bit (Lion, LAMB and Quickprop have no torch peer)."""
    model, kw = mlp(), NUMPY_KW.get(name, dict(lr=1e-2))
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    opt = getattr(ft, name)(two_groups(model, dict(lr=kw["lr"] / 2)), **kw)
    ref = getattr(fastopt.optim, name)([{"params": arrays[:2]}, {"params": arrays[2:], "lr": kw["lr"] / 2}], **kw)
    x, y = data("mlp")
    for _ in range(50):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        grads = numpy_grads(model)
        loss = opt.step()
        assert loss is None
        ref.step(grads)
        for p, a in zip(model.parameters(), arrays):
            np.testing.assert_array_equal(p.detach().numpy(), a)
    for k, p in enumerate(model.parameters()):
        assert set(opt.state[p]) == set(ref.state[k])
        for key, value in ref.state[k].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(opt.state[p][key].numpy(), value)
            elif key == "step":
                assert int(opt.state[p][key]) == value
            else:
                assert float(opt.state[p][key]) == value
    assert F.mse_loss(model(x), y) < F.mse_loss(mlp()(x), y)


# ------------------------------------------------------------- state dicts
ROUND_TRIP = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.5)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("Rprop", dict(lr=1e-3)),
    ("Adadelta", dict(lr=1.0)),
    ("Adamax", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2)),
    ("RAdam", dict(lr=1e-2)),
    ("ASGD", dict(lr=0.05, t0=10)),
    ("Adafactor", dict(lr=1e-2)),
]
BEFORE, AFTER = 15, 15


def save_load(state_dict):
    """Through torch.save / torch.load(weights_only=True): plain tensors and containers."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def copy_params(source, target):
    with torch.no_grad():
        for a, b in zip(source.parameters(), target.parameters()):
            b.copy_(a)


@pytest.mark.parametrize("default_dtype", [torch.float64], ids=["f64"], indirect=True)
@pytest.mark.parametrize("config", ROUND_TRIP, ids=lambda c: c[0])
def test_state_dict_from_torch(config, default_dtype):
    """torch.optim.X runs, its state dict loads into fastopt.torch.X, and both continue identically."""
    name, kw = config
    batch = data("mlp", torch.float64)
    theirs = mlp(torch.float64)
    ref = getattr(torch.optim, name)(two_groups(theirs, dict(lr=kw["lr"] / 2)), foreach=False, **kw)
    train(theirs, ref, batch, BEFORE)
    ours = mlp(torch.float64, seed=5)  # different weights: all of them come from torch's
    opt = getattr(ft, name)(two_groups(ours, dict(lr=1.0)), **kw)  # the loaded lr replaces 1.0
    copy_params(theirs, ours)
    opt.load_state_dict(save_load(ref.state_dict()))
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]
    assert "foreach" not in opt.param_groups[0]
    for p, tp in zip(ours.parameters(), theirs.parameters()):  # the values, exactly
        for key, value in ref.state[tp].items():
            np.testing.assert_array_equal(opt.state[p][key].numpy(), value.numpy(), err_msg=key)
    train(theirs, ref, batch, AFTER)
    train(ours, opt, batch, AFTER)
    assert_params_close(ours, theirs, torch.float64, name)
    assert_state_close(opt, ref, torch.float64)


@pytest.mark.parametrize("default_dtype", [torch.float64], ids=["f64"], indirect=True)
@pytest.mark.parametrize("config", ROUND_TRIP, ids=lambda c: c[0])
def test_state_dict_to_torch(config, default_dtype):
    """fastopt.torch.X runs, its state dict loads into torch.optim.X, and both continue identically."""
    name, kw = config
    batch = data("mlp", torch.float64)
    ours = mlp(torch.float64)
    opt = getattr(ft, name)(two_groups(ours, dict(lr=kw["lr"] / 2)), **kw)
    train(ours, opt, batch, BEFORE)
    theirs = mlp(torch.float64, seed=5)
    ref = getattr(torch.optim, name)(two_groups(theirs, dict(lr=1.0)), foreach=False, **kw)
    copy_params(ours, theirs)
    saved = save_load(opt.state_dict())
    assert saved["state"][0]["step"].dtype == torch.float64  # torch's scalar dtype under a float64 default
    ref.load_state_dict(saved)
    assert [g["lr"] for g in ref.param_groups] == [g["lr"] for g in opt.param_groups]
    train(theirs, ref, batch, AFTER)
    train(ours, opt, batch, AFTER)
    assert_params_close(ours, theirs, torch.float64, name)
    # torch's SGD keeps the loaded 'step' as it was (it counts no steps)
    assert_state_close(opt, ref, torch.float64, skip=("step",) if name == "SGD" else ())


def test_state_dict_layout_and_resume_is_bitwise():
    """Torch's layout and key names (step a float32 0-d tensor for Adam; SGD's
    extra step); a fastopt.torch -> fastopt.torch resume is bitwise."""
    model = mlp()
    opt = ft.NAdam(two_groups(model, dict(lr=5e-3)), lr=1e-2)
    batch = data("mlp")
    train(model, opt, batch, 10)
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    entry = sd["state"][0]
    assert set(entry) == {"step", "mu_product", "exp_avg", "exp_avg_sq"}
    assert entry["step"].dtype == torch.float32
    assert entry["step"].shape == ()
    assert float(entry["step"]) == 10
    assert entry["mu_product"].dtype == torch.float64  # fastopt's double, exactly
    # state_dict shares the state's memory, as torch's does
    assert np.shares_memory(entry["exp_avg"].numpy(), opt.numpy_optimizer.state[0]["exp_avg"])
    saved = copy.deepcopy(sd)
    resumed_model = mlp(seed=3)
    copy_params(model, resumed_model)
    resumed = ft.NAdam(two_groups(resumed_model, dict(lr=1.0)), lr=1e-2)
    resumed.load_state_dict(save_load(saved))
    train(model, opt, batch, 10)
    train(resumed_model, resumed, batch, 10)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)

    sgd_model = mlp()
    sgd = ft.SGD(sgd_model.parameters(), lr=0.01, momentum=0.9)
    train(sgd_model, sgd, batch, 3)
    assert set(sgd.state_dict()["state"][0]) == {"momentum_buffer", "step"}  # torch's SGD has no step


def test_adagrad_eager_torch_state_loads():
    """torch's Adagrad creates its state (step 0, sum) at construction; that loads too."""
    theirs, ours = mlp(), mlp()
    ref = torch.optim.Adagrad(theirs.parameters(), lr=0.05, initial_accumulator_value=0.2, foreach=False)
    opt = ft.Adagrad(ours.parameters(), lr=0.05, initial_accumulator_value=0.2)
    opt.load_state_dict(ref.state_dict())
    assert int(opt.state[next(ours.parameters())]["step"]) == 0
    train(theirs, ref, data("mlp"), 50)
    train(ours, opt, data("mlp"), 50)
    assert_params_close(ours, theirs, torch.float32)


def test_bad_state_dicts_change_nothing():
    model = mlp()
    opt = ft.Adam(model.parameters(), lr=1e-2)
    train(model, opt, data("mlp"), 3)
    before = copy.deepcopy(opt.state_dict())
    good = copy.deepcopy(before)
    bad_shape = copy.deepcopy(before)
    bad_shape["state"][1]["exp_avg"] = torch.zeros(5)
    unknown = copy.deepcopy(before)
    unknown["state"][3]["velocity"] = torch.zeros(3)
    groups = copy.deepcopy(before)
    groups["param_groups"].append(groups["param_groups"][0])
    bad_lr = copy.deepcopy(before)
    bad_lr["param_groups"][0]["lr"] = -1.0
    for bad, error in [(bad_shape, "shape"), (unknown, "velocity"), (groups, "groups"), (bad_lr, "lr")]:
        with pytest.raises(ValueError, match=error):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        assert after["param_groups"] == before["param_groups"]
        for i, entry in before["state"].items():
            for key, value in entry.items():
                assert torch.equal(after["state"][i][key], value)
    opt.load_state_dict(good)


# ------------------------------------------------------------- the state view
def test_state_view_shares_memory_and_writes_through():
    model = mlp()
    p = next(model.parameters())
    opt = ft.Adam(model.parameters(), lr=1e-2)
    assert p not in opt.state
    assert len(opt.state) == 0
    assert opt.state.get(p) is None
    train(model, opt, data("mlp"), 2)
    assert p in opt.state
    assert len(opt.state) == 4
    assert list(opt.state) == list(model.parameters())
    exp_avg = opt.state[p]["exp_avg"]
    assert np.shares_memory(exp_avg.numpy(), opt.numpy_optimizer.state[0]["exp_avg"])
    exp_avg.zero_()  # in place: the optimizer's own array
    assert not opt.numpy_optimizer.state[0]["exp_avg"].any()
    opt.state[p]["step"] = torch.tensor(7.0)
    assert opt.numpy_optimizer.state[0]["step"] == 7
    with pytest.raises(ValueError, match="shape"):
        opt.state[p]["exp_avg_sq"] = torch.zeros(3)
    with pytest.raises(ValueError, match="unknown key"):
        opt.state[p]["velocity"] = torch.zeros_like(p)
    del opt.state[p]
    assert p not in opt.state
    train(model, opt, data("mlp"), 1)
    assert int(opt.state[p]["step"]) == 1  # started afresh
    snapshot = copy.deepcopy(opt.state)  # a dict of copies (keys included, as for torch's state)
    first = next(iter(snapshot.values()))
    assert isinstance(snapshot, dict)
    assert torch.equal(first["exp_avg"], opt.state[p]["exp_avg"])
    assert not np.shares_memory(first["exp_avg"].numpy(), opt.state[p]["exp_avg"].numpy())
    with pytest.raises(KeyError):
        opt.state[torch.zeros(3)]
    opt.state.clear()
    assert len(opt.state) == 0


# ------------------------------------------------------------- schedulers
@pytest.mark.parametrize("scheduler", ["StepLR", "CosineAnnealingLR"])
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_lr_scheduler_drives_it_like_torch(scheduler, name):
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=1e-2)
    make = {"StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=30, gamma=0.5),
            "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=60, eta_min=1e-4)}
    ours, theirs = mlp(), mlp()
    opt = getattr(ft, name)(two_groups(ours, dict(lr=kw["lr"] / 2)), **kw)
    ref = getattr(torch.optim, name)(two_groups(theirs, dict(lr=kw["lr"] / 2)), foreach=False, **kw)
    ours_sched, theirs_sched = make[scheduler](opt), make[scheduler](ref)
    batch = data("mlp")
    lrs = []
    for _ in range(100):
        train(ours, opt, batch, 1, scheduler=ours_sched)
        train(theirs, ref, batch, 1, scheduler=theirs_sched)
        assert ours_sched.get_last_lr() == theirs_sched.get_last_lr()
        lrs.append(opt.param_groups[0]["lr"])
    assert len(set(lrs)) > 2  # the schedule did change the rate
    assert_params_close(ours, theirs, torch.float32, scheduler)


# ------------------------------------------------------------- hooks, closure
def test_hooks_fire():
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    model = mlp()
    opt = ft.Adam(model.parameters(), lr=1e-2)
    calls = []
    handles = [
        opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o is opt))),
        opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o is opt))),
        register_optimizer_step_pre_hook(lambda o, a, k: calls.append(("global pre", o is opt))),
        register_optimizer_step_post_hook(lambda o, a, k: calls.append(("global post", o is opt))),
        opt.register_state_dict_pre_hook(lambda o: calls.append(("sd pre", o is opt))),
        opt.register_state_dict_post_hook(lambda o, sd: calls.append(("sd post", "state" in sd))),
        opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append(("load pre", "state" in sd))),
        opt.register_load_state_dict_post_hook(lambda o: calls.append(("load post", o is opt))),
    ]
    try:
        train(model, opt, data("mlp"), 1)
        assert calls == [("global pre", True), ("pre", True), ("post", True), ("global post", True)]
        calls.clear()
        opt.load_state_dict(opt.state_dict())
        assert calls == [("sd pre", True), ("sd post", True), ("load pre", True), ("load post", True)]
    finally:
        for handle in handles:
            handle.remove()

    # a post hook may replace the state dict, a load pre hook the loaded one
    handle = opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    assert opt.state_dict()["extra"] == 1
    handle.remove()
    assert "extra" not in opt.state_dict()


def test_closure():
    model = mlp()
    x, y = data("mlp")
    opt = ft.Rprop(model.parameters(), lr=1e-3, variant="irprop+")  # needs the loss

    def closure():
        assert torch.is_grad_enabled()
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        return loss

    first = closure().item()
    with pytest.raises(ValueError, match="irprop"):
        opt.step()
    with torch.no_grad():  # the closure still runs with gradients
        losses = [opt.step(closure).item() for _ in range(30)]
    assert losses[0] == first
    assert losses[-1] < first
    assert isinstance(opt.state[next(model.parameters())]["prev_loss"], float)


def test_stats_and_step_options():
    model = mlp()
    opt = ft.SGD(model.parameters(), lr=0.1, max_grad_norm=1e-3, nonfinite="raise")
    x, y = data("mlp")
    F.mse_loss(model(x), y).backward()
    opt.step(stats=True)
    assert opt.last_stats.grad_scale < 1
    assert opt.max_grad_norm == 1e-3
    p = next(model.parameters())
    before = [q.detach().clone() for q in model.parameters()]
    p.grad[0, 0] = float("nan")
    with pytest.raises(fastopt.NonFiniteGradientError):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    opt.nonfinite = "skip"
    opt.step()
    assert opt.last_stats.skipped


# ------------------------------------------------------------- param groups
def test_add_param_group_and_changed_tensors():
    """A group added mid-run matches torch; a tensor whose .data is replaced
    keeps its state (converted to the new dtype) and is stepped in its new memory."""
    ours, theirs = mlp(), mlp()
    params, tparams = list(ours.parameters()), list(theirs.parameters())
    opt = ft.Adam(params[:2], lr=1e-2)
    ref = torch.optim.Adam(tparams[:2], lr=1e-2, foreach=False)
    batch = data("mlp")
    train(ours, opt, batch, 20)
    train(theirs, ref, batch, 20)
    opt.add_param_group({"params": params[2:], "lr": 5e-3, "weight_decay": 0.1})
    ref.add_param_group({"params": tparams[2:], "lr": 5e-3, "weight_decay": 0.1})
    train(ours, opt, batch, 40)
    train(theirs, ref, batch, 40)
    assert_params_close(ours, theirs, torch.float32)

    w = params[0]
    exp_avg = opt.state[w]["exp_avg"].clone()
    w.data = w.data.to(torch.float64)  # new storage and dtype
    w.grad = None
    opt.step()  # w has no gradient: only its view is rebuilt
    assert opt.state[w]["exp_avg"].dtype == torch.float64
    np.testing.assert_array_equal(opt.state[w]["exp_avg"].numpy(), exp_avg.double().numpy())
    pointer, value = w.data_ptr(), w.detach().clone()
    w.grad = torch.ones_like(w)
    opt.step()
    assert w.data_ptr() == pointer
    assert not torch.equal(w, value)
    assert int(opt.state[w]["step"]) == 61

    # removing a parameter from its group drops its state
    del opt.param_groups[1]["params"][1]
    assert len(opt.state) == 3
    assert params[3] not in opt.state


def test_16bit_parameters_in_place_and_bitwise():
    """float16 and bfloat16 models step in place, with float32 state, bit for
    bit as fastopt's NumPy class on the same arrays (nearest and stochastic)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")  # bfloat16 arrays

    for dtype, np_dtype in [(torch.float16, np.float16), (torch.bfloat16, ml_dtypes.bfloat16)]:
        for name, kw in [("Adam", dict(lr=1e-2)), ("SGD", dict(lr=0.05, momentum=0.9)),
                         ("Lion", dict(lr=1e-3)), ("Adam", dict(lr=1e-2, rounding="stochastic", seed=7))]:
            model = mlp(dtype)
            pointers = [p.data_ptr() for p in model.parameters()]
            arrays = [ft._as_numpy(p).copy() for p in model.parameters()]
            assert arrays[0].dtype == np_dtype
            opt = getattr(ft, name)(two_groups(model, dict(lr=kw["lr"] / 2)), **kw)
            ref = getattr(fastopt.optim, name)([{"params": arrays[:2]}, {"params": arrays[2:],
                                                                          "lr": kw["lr"] / 2}], **kw)
            x, y = data("mlp", dtype)
            start = [p.detach().clone() for p in model.parameters()]
            for _ in range(20):
                opt.zero_grad()
                F.mse_loss(model(x), y).backward()
                ref.step([ft._as_numpy(p.grad).copy() for p in model.parameters()])
                opt.step()
                for p, a in zip(model.parameters(), arrays):
                    np.testing.assert_array_equal(ft._as_numpy(p).view(np.uint16), a.view(np.uint16))
            assert [p.data_ptr() for p in model.parameters()] == pointers
            assert all(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), start))
            state = opt.state[next(model.parameters())]
            assert all(v.dtype == torch.float32 for k, v in state.items() if k != "step")


def test_bfloat16_split_master_weights_equal_float32_run():
    """master_weights='split': the bfloat16 parameter and its low halves
    (state master_low_bits, uint16) are the float32 run, bit for bit, with
    float32 gradients (p.grad_dtype) and with bfloat16 ones."""
    pytest.importorskip("ml_dtypes")  # bfloat16 arrays
    rng = np.random.default_rng(0)
    shapes = [(5, 3), (3,), (7,)]
    for name, kw in [("Adam", dict(lr=1e-2, weight_decay=0.01)), ("SGD", dict(lr=0.05, momentum=0.9)),
                     ("AdamW", dict(lr=1e-2, amsgrad=True))]:
        for grad_dtype in (torch.float32, torch.bfloat16):
            start = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)).bfloat16() for s in shapes]
            params = [nn.Parameter(t.clone()) for t in start]
            masters32 = [t.float().numpy().copy() for t in start]  # exact: bfloat16 values
            opt = getattr(ft, name)([{"params": params[:2]}, {"params": params[2:], "lr": kw["lr"] / 3}],
                                    master_weights="split", **kw)
            ref = getattr(fastopt.optim, name)([{"params": masters32[:2]},
                                                {"params": masters32[2:], "lr": kw["lr"] / 3}], **kw)
            for p in params:
                p.grad_dtype = grad_dtype
            for _ in range(25):
                grads = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(grad_dtype) for s in shapes]
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
                ref.step([g.float().numpy() for g in grads])
            for p, m in zip(params, masters32):
                low = opt.state[p]["master_low_bits"]
                assert low.dtype == torch.uint16
                high = p.detach().view(torch.int16).numpy().view(np.uint16).astype(np.uint32)
                master = ((high << 16) | low.numpy().astype(np.uint32)).view(np.float32)
                np.testing.assert_array_equal(master, m)


def test_16bit_state_stays_float32_through_load_state_dict():
    pytest.importorskip("ml_dtypes")  # bfloat16 arrays
    model = mlp(torch.bfloat16)
    opt = ft.Adam(model.parameters(), lr=1e-2, master_weights="float32")
    train(model, opt, data("mlp", torch.bfloat16), 5)
    saved = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(saved)
    state = opt.state[next(model.parameters())]
    assert state["exp_avg"].dtype == torch.float32
    assert state["master"].dtype == torch.float32
    np.testing.assert_array_equal(state["exp_avg"].numpy(), saved["state"][0]["exp_avg"].numpy())
    # torch.optim loads it into a bfloat16 model (casting to bfloat16, as torch does)
    ref = torch.optim.Adam(mlp(torch.bfloat16).parameters(), lr=1e-2)
    ref.load_state_dict(saved)
    assert ref.state[ref.param_groups[0]["params"][0]]["exp_avg"].dtype == torch.bfloat16


# ------------------------------------------------------------------- errors
def snapshot(model, opt):
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"])
    return params, state


def assert_unchanged(model, opt, before):
    params, state = before
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), params))
    after = opt.state_dict()["state"]
    assert after.keys() == state.keys()
    for i in state:
        assert after[i].keys() == state[i].keys()
        assert all(torch.equal(after[i][k], v) for k, v in state[i].items())


def test_construction_errors():
    good = nn.Parameter(torch.zeros(3))
    with pytest.raises(TypeError, match=r"parameter 1 .*device 'meta'.*mixed devices"):
        ft.Adam([good, nn.Parameter(torch.zeros(3, device="meta"))])
    with pytest.raises(TypeError, match=r"parameter 0 .*device 'meta'"):
        ft.SGD([nn.Parameter(torch.zeros(3, device="meta"))])
    with pytest.raises(ValueError, match=r"parameter 1 .*not contiguous"):
        ft.Adam([good, nn.Parameter(torch.zeros(4, 3).t())])
    with pytest.raises(TypeError, match=r"parameter 0 .*torch.complex64"):
        ft.Adam([nn.Parameter(torch.zeros(3, dtype=torch.complex64))])
    with pytest.raises(TypeError, match=r"parameter 0 .*torch.int32"):
        ft.SGD([torch.zeros(3, dtype=torch.int32)])
    with pytest.raises(TypeError, match="layout"):
        ft.SGD([torch.zeros(3).to_sparse()])
    with pytest.raises(ValueError, match="lr"):
        ft.Adam([good], lr=-1.0)
    with pytest.raises(ValueError, match="capturable"):
        ft.Adam([good], capturable=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ft.Adam([good], momentum=0.9)
    named = ft.Adam(mlp().named_parameters())
    with pytest.raises(ValueError, match=r"parameter 4 '2.weight'.*not contiguous"):
        named.add_param_group({"params": [("2.weight", nn.Parameter(torch.zeros(4, 3).t()))]})
    assert len(named.param_groups) == 1  # the group was not added


def test_step_errors_write_nothing():
    x, y = data("mlp")

    def fresh():
        model = mlp()
        opt = ft.Adam(two_groups(model, dict(lr=5e-3)), lr=1e-2)
        train(model, opt, (x, y), 3)
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        return model, opt

    # a sparse gradient (the last parameter's: the others must not move either)
    model, opt = fresh()
    before = snapshot(model, opt)
    last = list(model.parameters())[-1]
    last.grad = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.tensor([1.0]), last.shape, check_invariants=True)
    with pytest.raises(TypeError, match=r"parameter 3 .*sparse gradient"):
        opt.step()
    assert_unchanged(model, opt, before)

    # a gradient of another shape (its tensor's .data was replaced by a new shape)
    model, opt = fresh()
    extra = nn.Parameter(torch.zeros(3))
    opt.add_param_group({"params": [extra]})
    extra.grad = torch.ones(3)
    extra.data = torch.zeros(5)
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match=r"parameter 4 .*gradient of shape \(3,\)"):
        opt.step()
    assert_unchanged(model, opt, before)

    # a parameter whose state no longer fits its new shape
    model, opt = fresh()
    last = list(model.parameters())[-1]
    before = snapshot(model, opt)
    last.data = torch.zeros(5)
    last.grad = torch.ones(5)
    with pytest.raises(ValueError, match=r"parameter 3 .*no longer fits"):
        opt.step()
    del opt.state[last]  # the way out the message gives
    opt.step()
    assert int(opt.state[last]["step"]) == 1

    # a meta tensor added to a group behind the optimizer's back
    model, opt = fresh()
    before = snapshot(model, opt)
    opt.param_groups[1]["params"].append(nn.Parameter(torch.zeros(2, device="meta")))
    with pytest.raises(TypeError, match=r"parameter 4 .*mixed devices"):
        opt.step()
    opt.param_groups[1]["params"].pop()
    assert_unchanged(model, opt, before)

    # an invalid hyperparameter set between steps
    model, opt = fresh()
    before = snapshot(model, opt)
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert_unchanged(model, opt, before)
    opt.param_groups[1]["lr"] = 5e-3

    # a gradient of the wrong dtype (allowed by grad_dtype=None)
    model, opt = fresh()
    before = snapshot(model, opt)
    first = next(model.parameters())
    first.grad_dtype = None
    first.grad = first.grad.double()
    with pytest.raises(TypeError, match=r"parameter 0 .*torch.float64 gradient"):
        opt.step()
    assert_unchanged(model, opt, before)


def test_non_contiguous_gradient_is_copied():
    a, b = mlp(), mlp()
    opt_a, opt_b = ft.Adam(a.parameters(), lr=1e-2), ft.Adam(b.parameters(), lr=1e-2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        g = torch.randn(pa.shape[::-1]).t() if pa.ndim == 2 else torch.randn(pa.shape)
        pa.grad, pb.grad = g, g.contiguous()
    opt_a.step()
    opt_b.step()
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))


def test_signature_and_lazy_import():
    import inspect

    parameters = inspect.signature(ft.AdamW).parameters
    assert parameters["weight_decay"].default == 1e-2
    assert parameters["lr"].default == 1e-3
    for name in ("max_grad_norm", "grad_clip_value", "norm_type", "nonfinite", "rounding", "master_weights",
                 "seed", "foreach", "fused"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    for name in ALL:
        cls = getattr(ft, name)
        assert issubclass(cls, torch.optim.Optimizer)
        assert cls.__module__ == "fastopt.torch"
        assert cls._fastopt_class is getattr(fastopt.optim, name)
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(ft.SGD(mlp().parameters()))
    # importing fastopt does not import torch
    code = "import sys, fastopt; assert 'torch' not in sys.modules and 'fastopt.torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
