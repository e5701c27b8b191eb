"""16-bit parameters (docs/algorithms.md, "16-bit parameters"): every
optimizer on float16 and bfloat16 parameters, every write-back mode, against
``fastopt.reference.narrow_`` bitwise, on every SIMD target and thread count;
the split master against the float32 run; the stall test; the unbiasedness of
stochastic rounding; the conversions themselves against NumPy/ml_dtypes.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import _core, optim
from fastopt import reference as R
from registry import CASES, GRAIN, NoisyQuadratic

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
FORMATS = {"f16": F16, "bf16": BF16}
SUPPORTED = _core.supported_targets()

# (rounding, master_weights) per mode; split needs bfloat16.
MODES = {
    "nearest": ("nearest", None),
    "stochastic": ("stochastic", None),
    "split": ("nearest", "split"),
    "master": ("nearest", "float32"),
    "master-stochastic": ("stochastic", "float32"),
}
MODE_CASES = [(fmt, mode) for fmt in FORMATS for mode in MODES if not (mode == "split" and fmt == "f16")]
# The default configuration of every optimizer, and every configuration of some.
CASES_16 = [c for c in CASES if c.label == "default" or c.name in ("adam", "sgd")]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equal, any NaN equal to any NaN (payloads may differ between
    NumPy's casts and the hardware's)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.itemsize == 2:
        wa, wb = a.astype(np.float32), b.astype(np.float32)
    else:
        wa, wb = a, b
    nan = np.isnan(wa) & np.isnan(wb)
    return a.shape == b.shape and bool(np.all(nan | (a.view(f"u{a.itemsize}") == b.view(f"u{b.itemsize}"))))


def run_16bit(case, fn, fmt, mode, size, steps, *, reference, grad_dtype=None, seed=11, tensors=2):
    """`steps` steps of a registry case on `tensors` 16-bit parameters (one
    call each step, so tensor ids 0, 1, ... select the streams); returns the
    parameters, masters and state."""
    rounding, master_weights = MODES[mode]
    dtype = FORMATS[fmt]
    problems = [NoisyQuadratic(size, steps, seed=k) for k in range(tensors)]
    params = [pr.p0.astype(dtype) for pr in problems]
    masters = None
    if master_weights == "float32":
        masters = [p.astype(np.float32) for p in params]
    elif master_weights == "split":
        masters = [np.zeros(size, np.uint16) for _ in params]
    states = [case.new_state((size,), np.float32) for _ in params]  # per tensor, per role
    state_lists = [None if role[0] is None else list(role) for role in zip(*states)]
    for t in range(1, steps + 1):
        grads = []
        for k, (problem, p) in enumerate(zip(problems, params)):
            if master_weights == "float32":
                current = masters[k]
            elif master_weights == "split":
                current = R.join_master(p, masters[k])
            else:
                current = p.astype(np.float32)
            with np.errstate(over="ignore", invalid="ignore"):  # maximize diverges: float16 overflows
                grads.append(problem.grad(current.astype(np.float64), t).astype(grad_dtype or dtype))
        kwargs = case.kwargs(t, problems[0].losses)
        if reference:
            R.narrow_(case.reference, params, grads, *state_lists, masters=masters, rounding=rounding,
                      master_weights=master_weights, seed=seed, rounding_step=t, **kwargs)
        else:
            fn(params, grads, *state_lists, **kwargs,
               rounding=fastopt.Rounding(rounding, master_weights, masters, seed=seed, step=t))
    return params, masters, state_lists


@pytest.mark.parametrize(("fmt", "mode"), MODE_CASES, ids=[f"{f}-{m}" for f, m in MODE_CASES])
@pytest.mark.parametrize("case", CASES_16, ids=[c.id for c in CASES_16])
def test_bitwise_equal_to_reference(case, fmt, mode):
    """Every optimizer x format x mode, 25 steps, two tensors, one of them
    above the parallel grain (several threads, tiles and units)."""
    size = GRAIN + 77
    got = run_16bit(case, case.functional, fmt, mode, size, 25, reference=False)
    want = run_16bit(case, case.reference, fmt, mode, size, 25, reference=True)
    for k, (a, b) in enumerate(zip(got[0], want[0])):
        assert same_bits(a, b), f"params[{k}]"
    for a, b in zip(got[1] or [], want[1] or []):
        assert same_bits(a, b), "masters"
    for role_a, role_b in zip(got[2], want[2]):
        for a, b in zip(role_a or [], role_b or []):
            assert same_bits(a, b), "state"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [0, 1, 7, 8, 15, 16, 17, 31, 33, 1023, 1025, 4099])
def test_odd_sizes_with_float32_gradients(fmt, size):
    """Tails of vectors and of tiles, float32 gradients, stochastic rounding."""
    case = next(c for c in CASES if c.name == "adam" and c.label == "default")
    got = run_16bit(case, case.functional, fmt, "stochastic", size, 10, reference=False, grad_dtype=np.float32)
    want = run_16bit(case, case.reference, fmt, "stochastic", size, 10, reference=True, grad_dtype=np.float32)
    for a, b in zip(got[0], want[0]):
        assert same_bits(a, b)


@pytest.mark.parametrize(("fmt", "mode"), MODE_CASES, ids=[f"{f}-{m}" for f, m in MODE_CASES])
def test_same_bits_on_every_target_and_thread_count(fmt, mode):
    previous = _core.kernel_target()
    results = {}
    try:
        for name in ("adam", "lamb", "adafactor", "sgd"):
            case = next(c for c in CASES if c.name == name and c.label in ("default", "momentum"))
            for target in SUPPORTED:
                _core.select_target(target)
                for threads in (1, 2):
                    fastopt.set_num_threads(threads)
                    params, masters, _ = run_16bit(case, case.functional, fmt, mode, GRAIN + 4099, 6,
                                                   reference=False)
                    results[name, target, threads] = params + (masters or [])
    finally:
        _core.select_target(previous)
        fastopt.set_num_threads(0)
    for (name, target, threads), arrays in results.items():
        first = results[name, SUPPORTED[0], 1]
        for a, b in zip(arrays, first):
            assert same_bits(a, b), (name, target, threads)


# ------------------------------------------------------------- the classes
CLASS_CASES = {
    "SGD": dict(lr=1e-2, momentum=0.9), "Adagrad": dict(lr=1e-2), "RMSprop": dict(lr=1e-3),
    "Adam": dict(lr=1e-3), "AdamW": dict(lr=1e-3), "Rprop": dict(), "Quickprop": dict(lr=1e-2),
    "Adadelta": dict(), "Adamax": dict(), "NAdam": dict(), "RAdam": dict(), "ASGD": dict(),
    "Adafactor": dict(), "Lion": dict(lr=1e-4), "LAMB": dict(lr=1e-3),
}


def quadratic_grads(params32, rng_seed, t):
    rng = np.random.default_rng(rng_seed + t)
    return [(p - 0.5) + 0.1 * rng.standard_normal(p.shape).astype(np.float32) for p in params32]


@pytest.mark.parametrize("name", CLASS_CASES)
def test_split_master_is_bitwise_the_float32_run(name):
    """200 steps: the split master equals the float32 parameters bitwise, and
    each state array equals the float32 run's."""
    cls = getattr(optim, name)
    rng = np.random.default_rng(3)
    shapes = [(33, 17), (1000,), (5,)]
    start = [rng.standard_normal(s).astype(np.float32).astype(BF16) for s in shapes]
    p32 = [p.astype(np.float32) for p in start]
    p16 = [p.copy() for p in start]
    opt32 = cls(p32, **CLASS_CASES[name])
    opt16 = cls(p16, **CLASS_CASES[name], master_weights="split")
    for t in range(200):
        grads = quadratic_grads(p32, 0, t)
        opt32.step(grads, loss=float(t % 7))
        opt16.step(grads, loss=float(t % 7))
    for k, (a, b) in enumerate(zip(p32, p16)):
        master = R.join_master(b, opt16.state[k]["master_low_bits"])
        np.testing.assert_array_equal(master.view(np.uint32), a.view(np.uint32))
        for key, value in opt32.state[k].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(opt16.state[k][key], value, err_msg=key)


def test_stall_nearest_stochastic_split():
    """bfloat16 1.0 plus 100 SGD steps of 1e-3: "nearest" stays at 1.0 (the
    update is below half a unit in the last place, as in torch), "stochastic"
    reaches 1.1 on average, "split" is exactly the float32 result."""
    n = 4096
    results = {}
    for label, options in {"nearest": {}, "stochastic": dict(rounding="stochastic", seed=5),
                           "split": dict(master_weights="split")}.items():
        p = np.ones(n, BF16)
        opt = optim.SGD([p], lr=1.0, **options)
        for _ in range(100):
            opt.step([np.full(n, -1e-3, np.float32)])
        results[label] = (p, opt)
    assert np.all(results["nearest"][0].astype(np.float32) == 1.0)
    assert abs(results["stochastic"][0].astype(np.float64).mean() - 1.1) < 0.01
    p32 = np.ones(n, np.float32)
    opt32 = optim.SGD([p32], lr=1.0)
    for _ in range(100):
        opt32.step([np.full(n, -1e-3, np.float32)])
    p, opt = results["split"]
    np.testing.assert_array_equal(R.join_master(p, opt.state[0]["master_low_bits"]), p32)
    assert abs(float(p32[0]) - 1.1) < 1e-5


def test_stall_matches_torch_with_nearest():
    torch = pytest.importorskip("torch")
    w = torch.ones(4, dtype=torch.bfloat16, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    for _ in range(100):
        w.grad = torch.full((4,), -1e-3, dtype=torch.bfloat16)
        opt.step()
    p = np.ones(4, BF16)
    ours = optim.SGD([p], lr=1.0)
    for _ in range(100):
        ours.step([np.full(4, -1e-3, BF16)])
    np.testing.assert_array_equal(p.view(np.uint16), w.detach().view(torch.int16).numpy().view(np.uint16))


def stochastic_images(x: np.ndarray, dtype, step: int) -> np.ndarray:
    """x rounded by the kernels: a float32 master holding x, SGD with lr 0."""
    p = x.astype(dtype)
    opt = optim.SGD([p], lr=0.0, rounding="stochastic", master_weights="float32", seed=1)
    opt.state[0] = {"master": x.copy(), "step": step - 1}
    opt.step([np.zeros_like(x)])
    return p


@pytest.mark.parametrize("fmt", FORMATS)
def test_stochastic_rounding_is_unbiased(fmt):
    """1e6 draws of values spread over many binades: the mean rounding error,
    in units of each value's spacing, is within 3 standard errors of 0."""
    dtype = FORMATS[fmt]
    rng = np.random.default_rng(9)
    x = (rng.uniform(-1, 1, 1_000_000) * np.exp2(rng.integers(-20, 10, 1_000_000))).astype(np.float32)
    rounded = stochastic_images(x, dtype, 1).astype(np.float64)
    low = R.round_stochastic(x, dtype, np.zeros(x.size, np.uint32)).astype(np.float64)  # toward zero
    high = R.round_stochastic(x, dtype, np.full(x.size, 0xFFFFFFFF, np.uint32)).astype(np.float64)
    spacing = np.where(high != low, np.abs(high - low), 1.0)
    error = (rounded - x.astype(np.float64)) / spacing
    assert np.all((rounded == low) | (rounded == high))
    assert abs(error.mean()) < 3 * error.std() / np.sqrt(error.size)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stochastic_rounding_matches_the_reference_generator(fmt):
    dtype = FORMATS[fmt]
    rng = np.random.default_rng(4)
    x = rng.standard_normal(70_001).astype(np.float32) * np.float32(3e-3)
    for step in (1, 2, 1000):
        got = stochastic_images(x, dtype, step)
        want = R.round_stochastic(x, dtype, R.random_draws(1, step, 0, x.size))
        assert same_bits(got, want)


# ---------------------------------------------------------- the conversions
def special_floats() -> np.ndarray:
    """float32 values around every float16/bfloat16 boundary: random bit
    patterns, halfway cases, subnormals, overflow, infinities, NaNs."""
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    halves = np.arange(0, 2**16, dtype=np.uint32) << np.uint32(16)
    f16_ties = (np.arange(0, 2**16, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
                + np.uint32(1 << 12))
    values = np.concatenate([bits, halves, halves | np.uint32(0x8000), halves | np.uint32(0x7FFF), f16_ties,
                             f16_ties + np.uint32(1), f16_ties - np.uint32(1)]).view(np.float32)
    extra = np.array([0.0, -0.0, 65504, 65519.99, 65520, 65536, 1e-8, 2**-24, 2**-25, 3 * 2**-26, 1e38,
                      3.4e38, np.inf, -np.inf, np.nan], np.float32)
    return np.concatenate([values, extra])


@pytest.mark.parametrize("target", SUPPORTED)
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_to_nearest_matches_numpy(fmt, target):
    """Hardware (F16C) and bit-exact code agree with NumPy's/ml_dtypes' casts."""
    dtype = FORMATS[fmt]
    x = special_floats()
    previous = _core.kernel_target()
    try:
        _core.select_target(target)
        p = np.zeros(x.size, dtype)
        opt = optim.SGD([p], lr=0.0, master_weights="float32")
        opt.state[0] = {"master": x.copy()}
        opt.step([np.zeros_like(x)])
    finally:
        _core.select_target(previous)
    assert same_bits(p, R.round_nearest(x, dtype))


@pytest.mark.parametrize("target", SUPPORTED)
@pytest.mark.parametrize("fmt", FORMATS)
def test_widening_is_exact(fmt, target):
    """All 65536 values widened: a float32 master at -0 minus lr 1 times the
    16-bit gradient holds exactly minus the gradient's float32 value (signed
    zeros and infinities included)."""
    dtype = FORMATS[fmt]
    g = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(dtype)
    previous = _core.kernel_target()
    try:
        _core.select_target(target)
        p = np.full(g.size, -0.0, np.float32).astype(dtype)
        opt = optim.SGD([p], lr=1.0, master_weights="float32")
        opt.step([g])
        master = opt.state[0]["master"]
    finally:
        _core.select_target(previous)
    assert same_bits(master, -g.astype(np.float32))


# ---------------------------------------------------------------- bad input
def test_bad_input_is_rejected_before_any_write():
    p = np.ones(8, F16)
    g = np.ones(8, F16)
    before = p.copy()
    m, v = np.zeros(8, np.float32), np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="exp_avgs.0. has dtype float16 but the state of float16 parameters is float32"):
        fastopt.functional.adam_(p, g, np.zeros(8, F16), v, step=1)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float64"):
        fastopt.functional.adam_(p, np.ones(8), m, v, step=1)
    with pytest.raises(ValueError, match="master_weights='split' needs bfloat16"):
        fastopt.functional.adam_(p, g, m, v, step=1,
                                 rounding=fastopt.Rounding(master_weights="split", masters=[np.zeros(8, np.uint16)]))
    with pytest.raises(ValueError, match=r"masters\[0\] must be a float32 array"):
        fastopt.functional.adam_(p, g, m, v, step=1, rounding=fastopt.Rounding(master_weights="float32"))
    with pytest.raises(ValueError, match="invalid rounding"):
        fastopt.functional.adam_(p, g, m, v, step=1, rounding="up")
    with pytest.raises(ValueError, match="masters are for float16/bfloat16 parameters only"):
        fastopt.functional.adam_(np.ones(8, np.float32), np.ones(8, np.float32), m, v, step=1,
                                 rounding=fastopt.Rounding(master_weights="float32",
                                                           masters=[np.zeros(8, np.float32)]))
    with pytest.raises(ValueError, match="invalid seed"):
        fastopt.functional.adam_(p, g, m, v, step=1, rounding=fastopt.Rounding("stochastic", seed=-1))
    with pytest.raises(ValueError, match="split"):
        optim.Adam([np.ones(3, F16)], master_weights="split")
    with pytest.raises(ValueError, match="invalid rounding"):
        optim.Adam([np.ones(3, F16)], rounding="down")
    with pytest.raises(TypeError, match="seed must be an integer"):
        optim.Adam([np.ones(3, F16)], seed=1.5)
    assert same_bits(p, before)
    assert not m.any()
    assert not v.any()
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.grad_norm([np.ones(3, F16)], 2.0, 0)


def test_group_options_switch_masters_mid_run():
    """A group switching to master weights gets its master from the current
    parameter; switching rounding takes effect at the next step."""
    p = np.linspace(-1, 1, 101).astype(BF16)
    opt = optim.Adam([p], lr=1e-2)
    grads = [np.linspace(1, 2, 101).astype(np.float32)]
    opt.step(grads)
    opt.param_groups[0]["master_weights"] = "float32"
    before = p.astype(np.float32)
    opt.step(grads)
    assert "master" in opt.state[0]
    assert np.all(opt.state[0]["master"] < before)  # stepped from the parameter's value
    opt.param_groups[0]["rounding"] = "stochastic"
    opt.step(grads)
    master = opt.state[0]["master"]
    assert same_bits(p, R.round_stochastic(master, BF16, R.random_draws(0, 3, 0, p.size)))


def test_state_dict_round_trip_keeps_masters():
    p = np.linspace(-1, 1, 64).astype(BF16)
    opt = optim.AdamW([p], lr=1e-3, master_weights="split", rounding="stochastic", seed=3)
    grads = [np.cos(np.arange(64, dtype=np.float32))]
    for _ in range(3):
        opt.step(grads)
    saved = opt.state_dict()
    q = p.copy()
    other = optim.AdamW([q], lr=1e-3, master_weights="split", rounding="stochastic", seed=3)
    other.load_state_dict(saved)
    for _ in range(5):
        opt.step(grads)
        other.step(grads)
    assert same_bits(p, q)
    assert same_bits(opt.state[0]["master_low_bits"], other.state[0]["master_low_bits"])
    assert opt.state[0]["exp_avg"].dtype == np.float32
