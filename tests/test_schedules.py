"""fastopt.schedules: the same learning rates as torch.optim.lr_scheduler,
the lecture forms torch lacks, and state dicts that resume exactly."""

import doctest
import json
import math
import warnings

import numpy as np
import pytest

import fastopt
from fastopt import schedules as S

STEPS = 200
BASE_LRS = (0.1, 0.03)   # two param groups with different base learning rates
# Closed form vs torch's recursive form: they differ by accumulated rounding only
# (measured: at most 7e-14 relative over 200 steps).
RTOL, ATOL = 1e-12, 1e-16

# (class name, kwargs): every schedule torch also has, in several configurations.
TORCH_CASES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("StepLR", dict(step_size=1)),
    ("MultiStepLR", dict(milestones=[10, 30, 30, 90], gamma=0.3)),
    ("MultiStepLR", dict(milestones=[150, 5])),
    ("ExponentialLR", dict(gamma=0.97)),
    ("CosineAnnealingLR", dict(T_max=37, eta_min=1e-4)),
    ("CosineAnnealingLR", dict(T_max=200)),
    ("CosineAnnealingWarmRestarts", dict(T_0=10, T_mult=2, eta_min=1e-3)),
    ("CosineAnnealingWarmRestarts", dict(T_0=7)),
    ("LinearLR", dict()),
    ("LinearLR", dict(start_factor=0.1, end_factor=0.9, total_iters=25)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.05, total_iters=180)),
    ("PolynomialLR", dict()),
    ("PolynomialLR", dict(total_iters=150, power=2.0)),
    ("PolynomialLR", dict(total_iters=80, power=0.5)),
]


def case_id(case):
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


def fastopt_optimizer():
    return fastopt.SGD([{"params": [np.zeros(3)]}, {"params": [np.zeros(2)], "lr": BASE_LRS[1]}],
                       lr=BASE_LRS[0], momentum=0.9)


def torch_optimizer(torch):
    return torch.optim.SGD([{"params": [torch.zeros(3, requires_grad=True)]},
                            {"params": [torch.zeros(2, requires_grad=True)], "lr": BASE_LRS[1]}],
                           lr=BASE_LRS[0], momentum=0.9)


def group_lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


def assert_lrs_match(ours, theirs, where):
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=where)


def run_side_by_side(torch, make_ours, make_theirs, steps=STEPS, metrics=None):
    """Step a fastopt and a torch scheduler together; compare every step."""
    ours_opt, theirs_opt = fastopt_optimizer(), torch_optimizer(torch)
    ours, theirs = make_ours(ours_opt), make_theirs(theirs_opt)
    assert_lrs_match(group_lrs(ours_opt), group_lrs(theirs_opt), "after construction")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch warns when its optimizer never stepped
        for k in range(steps):
            args = () if metrics is None else (metrics[k],)
            theirs_opt.step()
            theirs.step(*args)
            ours.step(*args)
            assert_lrs_match(ours.get_last_lr(), theirs.get_last_lr(), f"get_last_lr, step {k}")
            assert_lrs_match(group_lrs(ours_opt), group_lrs(theirs_opt),
                             f"param_groups lr, step {k}")
            assert ours.last_epoch == theirs.last_epoch
    return ours, theirs


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_matches_torch_over_200_steps(case):
    torch = pytest.importorskip("torch")
    name, kwargs = case
    ours, theirs = run_side_by_side(
        torch, lambda opt: getattr(S, name)(opt, **kwargs),
        lambda opt: getattr(torch.optim.lr_scheduler, name)(opt, **kwargs))
    assert ours.base_lrs == list(BASE_LRS) == theirs.base_lrs


def test_cosine_warm_restarts_fractional_epochs_match_torch():
    torch = pytest.importorskip("torch")
    ours_opt, theirs_opt = fastopt_optimizer(), torch_optimizer(torch)
    ours = S.CosineAnnealingWarmRestarts(ours_opt, T_0=3, T_mult=2, eta_min=1e-3)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(theirs_opt, T_0=3, T_mult=2,
                                                                  eta_min=1e-3)
    for epoch in range(30):
        for i in range(4):   # torch's documented use: step(epoch + i / iters) within an epoch
            ours.step(epoch + i / 4)
            theirs.step(epoch + i / 4)
            assert_lrs_match(ours.get_last_lr(), theirs.get_last_lr(), f"epoch {epoch} + {i}/4")
    with pytest.raises(ValueError, match="non-negative"):
        ours.step(-1)


SEQUENTIAL_CASES = {
    "warmup-cosine": (lambda L, opt: [L.LinearLR(opt, start_factor=0.1, total_iters=10),
                                      L.CosineAnnealingLR(opt, T_max=190, eta_min=1e-5)], [10]),
    "three-parts": (lambda L, opt: [L.ExponentialLR(opt, gamma=0.9), L.StepLR(opt, step_size=10),
                                    L.PolynomialLR(opt, total_iters=60, power=1.5)], [20, 90]),
    "restarts-after-warmup": (lambda L, opt: [L.LinearLR(opt, start_factor=0.5, total_iters=4),
                                              L.CosineAnnealingWarmRestarts(opt, T_0=15)], [5]),
}


@pytest.mark.parametrize("name", SEQUENTIAL_CASES)
def test_sequential_matches_torch(name):
    torch = pytest.importorskip("torch")
    parts, milestones = SEQUENTIAL_CASES[name]
    run_side_by_side(
        torch, lambda opt: S.SequentialLR(opt, parts(S, opt), milestones),
        lambda opt: torch.optim.lr_scheduler.SequentialLR(opt, parts(torch.optim.lr_scheduler, opt),
                                                          milestones))


def plateau_metrics(steps=STEPS, seed=0):
    """A loss curve with plateaus, noise, a spike and exact repeats."""
    rng = np.random.default_rng(seed)
    k = np.arange(steps)
    loss = 1.0 / (1 + k / 15) + 0.05 * (k // 40 % 2) + 0.01 * rng.standard_normal(steps)
    loss[60:80] = loss[60]     # flat: no improvement at all
    loss[120] = 10.0           # a spike
    return [float(x) for x in loss]


PLATEAU_CASES = [
    dict(),
    dict(patience=0),
    dict(patience=3, factor=0.5, cooldown=4),
    dict(patience=2, threshold=0.05, threshold_mode="abs", min_lr=[0.02, 0.001]),
    dict(mode="max", patience=1, factor=0.3, threshold=0.01),
    dict(mode="max", patience=5, threshold_mode="abs", threshold=0.0, eps=0.05, min_lr=1e-3),
]


def kwargs_id(kwargs):
    return "-".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"


@pytest.mark.parametrize("kwargs", PLATEAU_CASES, ids=kwargs_id)
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    metrics = plateau_metrics()
    if kwargs.get("mode") == "max":
        metrics = [-m for m in metrics]   # an accuracy-like curve
    ours, theirs = run_side_by_side(
        torch, lambda opt: S.ReduceLROnPlateau(opt, **kwargs),
        lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs), metrics=metrics)
    assert ours.best == theirs.best
    assert ours.num_bad_epochs == theirs.num_bad_epochs
    assert ours.get_last_lr() != list(BASE_LRS), "the metric sequence should trigger a reduction"


def test_optimizer_follows_the_schedule_like_torch():
    """End to end: SGD + warm-up/cosine moves the weights as torch does."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((60, 5))
    w = np.zeros(5)
    ours_opt = fastopt.SGD([w], lr=0.2, momentum=0.9, nesterov=True)
    ours = S.SequentialLR(ours_opt, [S.LinearLR(ours_opt, 0.2, total_iters=5),
                                     S.CosineAnnealingLR(ours_opt, T_max=55)], [5])
    t = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    theirs_opt = torch.optim.SGD([t], lr=0.2, momentum=0.9, nesterov=True)
    L = torch.optim.lr_scheduler
    theirs = L.SequentialLR(theirs_opt, [L.LinearLR(theirs_opt, 0.2, total_iters=5),
                                         L.CosineAnnealingLR(theirs_opt, T_max=55)], [5])
    for g in grads:
        ours_opt.step([g])
        ours.step()
        t.grad = torch.from_numpy(g.copy())
        theirs_opt.step()
        theirs.step()
    np.testing.assert_allclose(w, t.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("cls", "power"), [(S.InverseLR, 1), (S.InverseSquareLR, 2)])
def test_inverse_schedules_closed_form(cls, power):
    opt = fastopt_optimizer()
    sched = cls(opt)
    for k in range(STEPS):
        expected = [base / (k + 1) ** power for base in BASE_LRS]
        assert sched.last_epoch == k
        assert sched.get_last_lr() == pytest.approx(expected, rel=1e-15)
        assert group_lrs(opt) == sched.get_last_lr()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.1 / (STEPS + 1) ** power, rel=1e-15)


def test_lecture_exponential_form():
    """eta0*exp(-beta*k) is ExponentialLR with gamma = exp(-beta)."""
    beta = 0.05
    sched = S.ExponentialLR(fastopt_optimizer(), gamma=math.exp(-beta))
    for _ in range(STEPS):
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * math.exp(-beta * STEPS), rel=1e-12)


def test_lecture_linear_warmup_form():
    """start_factor=1/k_warm, total_iters=k_warm-1 is the lectures' eta*k/k_warm one step ahead."""
    k_warm = 8
    sched = S.LinearLR(fastopt_optimizer(), start_factor=1 / k_warm, total_iters=k_warm - 1)
    for k in range(20):
        assert sched.get_last_lr()[0] == pytest.approx(0.1 * min(k + 1, k_warm) / k_warm, rel=1e-14)
        sched.step()


def test_construction_sets_initial_lr_and_base_lrs():
    opt = fastopt_optimizer()
    sched = S.StepLR(opt, step_size=2)
    assert [g["initial_lr"] for g in opt.param_groups] == list(BASE_LRS) == sched.base_lrs
    assert sched.last_epoch == 0
    assert sched.get_last_lr() == list(BASE_LRS)
    # A second schedule on the same optimizer keeps the first initial_lr (setdefault, as torch).
    for _ in range(2):
        sched.step()
    second = S.ExponentialLR(opt, gamma=0.5)
    assert second.base_lrs == list(BASE_LRS)
    # The optimizer still steps with the extra key in its groups, and its state dict keeps it.
    opt.step([np.ones(3), np.ones(2)])
    assert opt.state_dict()["param_groups"][1]["initial_lr"] == BASE_LRS[1]


def test_resume_with_last_epoch_argument():
    opt = fastopt_optimizer()
    with pytest.raises(KeyError, match="initial_lr"):
        S.ExponentialLR(opt, gamma=0.9, last_epoch=4)
    S.ExponentialLR(opt, gamma=0.9)            # stores initial_lr
    resumed = S.ExponentialLR(opt, gamma=0.9, last_epoch=4)
    assert resumed.last_epoch == 5
    assert resumed.get_last_lr() == pytest.approx([b * 0.9 ** 5 for b in BASE_LRS], rel=1e-15)


def all_schedulers(opt):
    """One of each fastopt scheduler (a factory per name)."""
    return {
        "StepLR": lambda: S.StepLR(opt, step_size=9, gamma=0.7),
        "MultiStepLR": lambda: S.MultiStepLR(opt, milestones=[20, 60, 60, 140]),
        "ExponentialLR": lambda: S.ExponentialLR(opt, gamma=0.98),
        "InverseLR": lambda: S.InverseLR(opt),
        "InverseSquareLR": lambda: S.InverseSquareLR(opt),
        "CosineAnnealingLR": lambda: S.CosineAnnealingLR(opt, T_max=70, eta_min=1e-4),
        "CosineAnnealingWarmRestarts": lambda: S.CosineAnnealingWarmRestarts(opt, T_0=11, T_mult=2),
        "LinearLR": lambda: S.LinearLR(opt, start_factor=0.25, total_iters=80),
        "PolynomialLR": lambda: S.PolynomialLR(opt, total_iters=120, power=1.7),
        "SequentialLR": lambda: S.SequentialLR(
            opt, [S.LinearLR(opt, 0.1, total_iters=10), S.CosineAnnealingWarmRestarts(opt, T_0=20)],
            [10]),
        "ReduceLROnPlateau": lambda: S.ReduceLROnPlateau(opt, patience=2, factor=0.5, cooldown=1),
    }


def advance(sched, steps, metrics, start):
    lrs = []
    for k in range(start, start + steps):
        if isinstance(sched, S.ReduceLROnPlateau):
            sched.step(metrics[k])
        else:
            sched.step()
        lrs.append(sched.get_last_lr())
    return lrs


@pytest.mark.parametrize("name", list(all_schedulers(None)))
def test_state_dict_resume_gives_identical_lrs(name):
    metrics = plateau_metrics()
    opt = fastopt_optimizer()
    straight = all_schedulers(opt)[name]()
    expected = advance(straight, STEPS, metrics, 0)

    opt = fastopt_optimizer()
    first = all_schedulers(opt)[name]()
    advance(first, 73, metrics, 0)
    # Through JSON, as fastopt.save stores it: the state must be plain data.
    saved = json.loads(json.dumps({"sched": first.state_dict(),
                                   "groups": opt.state_dict()["param_groups"]}))

    fresh_opt = fastopt_optimizer()
    resumed = all_schedulers(fresh_opt)[name]()
    for group, saved_group in zip(fresh_opt.param_groups, saved["groups"]):
        group["lr"] = saved_group["lr"]   # what the optimizer's load_state_dict restores
    resumed.load_state_dict(saved["sched"])
    assert advance(resumed, STEPS - 73, metrics, 73) == expected[73:]


def test_state_dict_is_a_copy():
    opt = fastopt_optimizer()
    sched = S.MultiStepLR(opt, milestones=[3])
    state = sched.state_dict()
    state["base_lrs"][0] = 99.0
    state["milestones"].append(1)
    assert sched.base_lrs[0] == BASE_LRS[0]
    assert sorted(sched.milestones.elements()) == [3]


def test_load_state_dict_rejects_a_mismatch_and_changes_nothing():
    opt = fastopt_optimizer()
    sched = S.StepLR(opt, step_size=3)
    for _ in range(5):
        sched.step()
    before = sched.state_dict()
    with pytest.raises(ValueError, match="missing keys.*unknown keys"):
        sched.load_state_dict(S.CosineAnnealingLR(fastopt_optimizer(), T_max=4).state_dict())
    one_group = fastopt.SGD([np.zeros(1)], lr=0.1)
    with pytest.raises(ValueError, match="1 entries but the optimizer has 2 param groups"):
        sched.load_state_dict(S.StepLR(one_group, step_size=3).state_dict())
    with pytest.raises(TypeError, match="must be a dict"):
        sched.load_state_dict([("last_epoch", 1)])
    seq = S.SequentialLR(opt, [S.LinearLR(opt), S.StepLR(opt, 2)], [3])
    other = fastopt_optimizer()
    wrong_part = S.SequentialLR(other, [S.LinearLR(other), S.ExponentialLR(other, 0.5)],
                                [3]).state_dict()
    seq_before = seq.state_dict()
    with pytest.raises(ValueError, match="does not fit StepLR"):
        seq.load_state_dict(wrong_part)
    assert sched.state_dict() == before
    assert seq.state_dict() == seq_before


@pytest.mark.parametrize(("make", "message"), [
    (lambda opt: S.StepLR(opt, step_size=0), "step_size must be a positive integer"),
    (lambda opt: S.StepLR(opt, step_size=2.5), "step_size must be a positive integer"),
    (lambda opt: S.ExponentialLR(opt, gamma=-0.5), "gamma must be finite and >= 0"),
    (lambda opt: S.CosineAnnealingLR(opt, T_max=0), "T_max must be a positive integer"),
    (lambda opt: S.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=0), "T_mult must be a positive"),
    (lambda opt: S.LinearLR(opt, start_factor=0.0), r"start_factor must be in \(0, 1\]"),
    (lambda opt: S.LinearLR(opt, end_factor=1.5), r"end_factor must be in \[0, 1\]"),
    (lambda opt: S.PolynomialLR(opt, total_iters=0), "total_iters must be a positive integer"),
    (lambda opt: S.ReduceLROnPlateau(opt, factor=1.0), r"factor must be in \(0, 1\)"),
    (lambda opt: S.ReduceLROnPlateau(opt, mode="lowest"), "mode must be 'min' or 'max'"),
    (lambda opt: S.ReduceLROnPlateau(opt, threshold_mode="pct"), "threshold_mode must be"),
    (lambda opt: S.ReduceLROnPlateau(opt, min_lr=[0.0]), "expected 2 min_lrs"),
    (lambda opt: S.SequentialLR(opt, [S.StepLR(opt, 2), S.StepLR(opt, 3)], []),
     "one milestone fewer"),
    (lambda opt: S.SequentialLR(opt, [S.ReduceLROnPlateau(opt)], []), "needs a metric"),
    (lambda opt: S.SequentialLR(opt, [S.StepLR(fastopt_optimizer(), 2)], []), "another optimizer"),
])
def test_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make(fastopt_optimizer())


def test_rejects_a_non_optimizer():
    with pytest.raises(TypeError, match="is not an optimizer"):
        S.StepLR([np.zeros(3)], step_size=2)


def test_group_added_after_the_scheduler_is_reported():
    opt = fastopt_optimizer()
    sched = S.ExponentialLR(opt, gamma=0.5)
    opt.add_param_group({"params": [np.zeros(4)]})
    with pytest.raises(ValueError, match="2 learning rates but the optimizer has 3 param groups"):
        sched.step()


def test_module_example_runs():
    assert doctest.testmod(S).failed == 0
