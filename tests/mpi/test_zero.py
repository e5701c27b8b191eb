"""ZeroRedundancyOptimizer against the single-process optimizer stepping on
the reduced gradient: bitwise, for every optimizer, over 50 steps with two
param groups and uneven parameter sizes (run under mpiexec -n 1, 2, 4)."""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt.distributed import ZeroRedundancyOptimizer

# Every fastopt optimizer, with settings that exercise its state.
CONFIGS = {
    "sgd": (fastopt.SGD, dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adagrad": (fastopt.Adagrad, dict(lr=0.05, lr_decay=1e-3)),
    "rmsprop": (fastopt.RMSprop, dict(lr=1e-3, momentum=0.5, centered=True)),
    "adam": (fastopt.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-2)),
    "adamw": (fastopt.AdamW, dict(lr=1e-2)),
    "adamax": (fastopt.Adamax, dict(lr=1e-2)),
    "nadam": (fastopt.NAdam, dict(lr=1e-2)),
    "radam": (fastopt.RAdam, dict(lr=1e-2)),
    "adadelta": (fastopt.Adadelta, dict(lr=1.0, weight_decay=1e-3)),
    "asgd": (fastopt.ASGD, dict(lr=1e-2, t0=10)),
    "lion": (fastopt.Lion, dict(lr=1e-3, weight_decay=1e-2)),
    "lamb": (fastopt.LAMB, dict(lr=1e-2, weight_decay=1e-2)),
    "adafactor": (fastopt.Adafactor, dict(lr=1e-2)),
    "rprop": (fastopt.Rprop, dict(lr=1e-2)),
    "irprop+": (fastopt.Rprop, dict(lr=1e-2, variant="irprop+")),
    "quickprop": (fastopt.Quickprop, dict(lr=1e-2)),
}

# Uneven sizes: one not a multiple of any vector width, a matrix, a scalar-ish
# vector, a big one that spans shards, and a float64 array (a second flat buffer).
SHAPES = [((33, 17), np.float32), ((5,), np.float32), ((1000,), np.float32), ((7, 3), np.float64),
          ((4099,), np.float32), ((64,), np.float64)]


def initial_params(dtype_shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape, dtype in dtype_shapes]


def local_grads(rank: int, step: int, params, scale=1.0):
    """Rank `rank`'s gradient at `step`: depends on the parameters, so the runs diverge if a step differs."""
    rng = np.random.default_rng([rank, step])
    return [(p * (1.0 + 0.1 * rank) + scale * rng.standard_normal(p.shape)).astype(p.dtype) for p in params]


def reduced(all_grads, reduce="mean"):
    """g_0 + g_1 + ... in rank order, then / p: the spec's reduced gradient."""
    out = []
    for parts in zip(*all_grads):
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        if reduce == "mean" and len(parts) > 1:
            total /= total.dtype.type(len(parts))
        out.append(total)
    return out


def groups_of(params, config):
    second = {"lr": config.get("lr", 1e-2) * 0.5}
    return [{"params": params[:3]}, {"params": params[3:], **second}]


def run_both(comm, name, steps=50, loss=True, **options):
    cls, config = CONFIGS[name]
    config = {**config, **options.pop("extra", {})}
    single_params = initial_params()
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, **options, **config)
    single = cls(groups_of(single_params, config), **{k: v for k, v in options.items()
                                                       if k in ("max_grad_norm", "nonfinite", "norm_type")},
                 **config)
    reduce = options.get("reduce", "mean")
    for step in range(steps):
        grads = [local_grads(r, step, zero.params) for r in range(comm.size)]
        value = float(step) if loss else None
        zero.step(grads[comm.rank], loss=value)
        single.step(reduced(grads, reduce), loss=value)
    return zero, single, single_params


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bitwise_equal_to_single_process(comm, name):
    zero, single, single_params = run_both(comm, name)
    for k, (a, b) in enumerate(zip(zero.params, single_params)):
        assert a.tobytes() == b.tobytes(), f"params[{k}] differs after 50 steps"


@pytest.mark.parametrize(("bucket_size", "overlap"), [(1, True), (100, True), (100, False), (1 << 22, False)])
def test_buckets_and_overlap_change_nothing(comm, bucket_size, overlap):
    zero, _, single_params = run_both(comm, "adam", steps=10, bucket_size=bucket_size, overlap=overlap)
    for a, b in zip(zero.params, single_params):
        assert a.tobytes() == b.tobytes()


def test_sum_reduction(comm):
    zero, _, single_params = run_both(comm, "sgd", steps=10, reduce="sum")
    for a, b in zip(zero.params, single_params):
        assert a.tobytes() == b.tobytes()


def test_every_rank_has_the_same_parameters(comm):
    zero, _, _ = run_both(comm, "adamw", steps=5)
    for p in zero.params:
        copies = comm.allgather(p)
        assert all(c.tobytes() == p.tobytes() for c in copies)


def test_state_per_rank_is_a_shard(comm):
    zero, single, _ = run_both(comm, "adam", steps=2)
    single_bytes = sum(v.nbytes for s in single.state.values() for v in s.values() if isinstance(v, np.ndarray))
    total = sum(comm.allgather(zero.state_bytes()))
    assert total == single_bytes  # the shards partition the state exactly
    assert zero.state_bytes() <= single_bytes / comm.size * 1.01 + 3 * 64 * 3


def test_consolidated_state_dict_equals_single_process(comm):
    for name in ("adam", "nadam", "asgd", "adafactor", "irprop+"):
        zero, single, _ = run_both(comm, name, steps=7)
        consolidated = zero.state_dict(to=0)
        if comm.rank != 0:
            assert consolidated is None
            continue
        expected = single.state_dict()
        assert consolidated["param_groups"] == expected["param_groups"]
        assert sorted(consolidated["state"]) == sorted(expected["state"])
        for i, state in expected["state"].items():
            assert sorted(consolidated["state"][i]) == sorted(state), (name, i)
            for key, value in state.items():
                got = consolidated["state"][i][key]
                if isinstance(value, np.ndarray):
                    assert got.dtype == value.dtype
                    assert got.shape == value.shape
                    assert got.tobytes() == value.tobytes()
                else:
                    assert got == value or (value != value and got != got), (name, i, key)


def test_load_single_process_state_dict_then_continue(comm):
    cls, config = CONFIGS["adam"]
    zero, single, single_params = run_both(comm, "adam", steps=5)
    fresh = ZeroRedundancyOptimizer(groups_of([p.copy() for p in single_params], config), cls, comm, **config)
    fresh.load_state_dict(single.state_dict())
    for step in range(5, 12):
        grads = [local_grads(r, step, fresh.params) for r in range(comm.size)]
        fresh.step(grads[comm.rank])
        single.step(reduced(grads))
    for a, b in zip(fresh.params, single_params):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clipping_and_statistics_match(comm, norm_type):
    cls, config = CONFIGS["adam"]
    zero_params, single_params = initial_params(), initial_params()
    zero = ZeroRedundancyOptimizer(groups_of(zero_params, config), cls, comm, max_grad_norm=1.0,
                                   norm_type=norm_type, **config)
    zero_params = zero.params
    single = cls(groups_of(single_params, config), max_grad_norm=1.0, norm_type=norm_type, **config)
    for step in range(10):
        grads = [local_grads(r, step, zero_params, scale=10.0) for r in range(comm.size)]
        got = zero.step(grads[comm.rank], stats=True)
        want = single.step(reduced(grads), stats=True)
        assert got.grad_scale < 1.0
        for field in ("grad_norm", "param_norm", "update_norm", "update_ratio", "grad_scale"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-12, err_msg=field)
        assert got.nonfinite_grads == want.nonfinite_grads == 0
        for a, b in zip(zero_params, single_params):  # the factor may differ in its last bit
            np.testing.assert_allclose(a, b, rtol={np.float32: 1e-5, np.float64: 1e-11}[a.dtype.type],
                                       atol=1e-6)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nonfinite_gradient_on_one_rank(comm, policy):
    cls, config = CONFIGS["adam"]
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, nonfinite=policy, **config)
    before = [p.copy() for p in zero.params]
    grads = local_grads(comm.rank, 0, zero.params)
    if comm.rank == comm.size - 1:
        grads[4][17] = np.nan
    if policy == "raise":
        with pytest.raises(fastopt.NonFiniteGradientError):
            zero.step(grads)
    else:
        stats = zero.step(grads, stats=True)
        assert stats.skipped
        assert stats.nonfinite_grads == 1
    for a, b in zip(zero.params, before):
        assert a.tobytes() == b.tobytes()
    assert zero.state_bytes() == 0


def test_bad_gradient_on_one_rank_raises_on_all(comm):
    cls, config = CONFIGS["adam"]
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, **config)
    before = [p.copy() for p in zero.params]
    grads = local_grads(comm.rank, 0, zero.params)
    bad_rank = comm.size - 1
    if comm.rank == bad_rank:
        grads[2] = grads[2][:-1]
    with pytest.raises(ValueError, match=r"grads\[2\] has shape") as raised:
        zero.step(grads)
    if comm.rank != bad_rank:
        assert f"rank {bad_rank}" in str(raised.value)
    if comm.rank == bad_rank:
        grads[2] = np.zeros(1000, np.float64)
    with pytest.raises(TypeError, match=r"grads\[2\] has dtype"):
        zero.step(grads)
    for a, b in zip(zero.params, before):
        assert a.tobytes() == b.tobytes()


def test_missing_gradient_on_one_rank_raises_on_all(comm, on_two_ranks):
    if on_two_ranks:
        return
    cls, config = CONFIGS["sgd"]
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, **config)
    grads = local_grads(comm.rank, 0, zero.params)
    if comm.rank == 1:
        grads[0] = None
    with pytest.raises(ValueError, match="missing gradient"):
        zero.step(grads)


def test_none_on_every_rank_skips_the_parameter(comm):
    cls, config = CONFIGS["adam"]
    zero_params, single_params = initial_params(), initial_params()
    zero = ZeroRedundancyOptimizer(groups_of(zero_params, config), cls, comm, **config)
    single = cls(groups_of(single_params, config), **config)
    for step in range(4):
        grads = [local_grads(r, step, zero.params) for r in range(comm.size)]
        for g in grads:
            g[1] = None
        zero.step(grads[comm.rank])
        single.step(reduced_with_none(grads))
    for a, b in zip(zero.params, single_params):
        assert a.tobytes() == b.tobytes()


def reduced_with_none(all_grads):
    present = [[g if g is not None else np.zeros(1) for g in grads] for grads in all_grads]
    return [None if all_grads[0][k] is None else r for k, r in enumerate(reduced(present))]


def test_mismatched_parameters_raise_on_all(comm, on_two_ranks):
    if on_two_ranks:
        return
    shapes = list(SHAPES)
    if comm.rank == 1:
        shapes[1] = ((6,), np.float32)
    with pytest.raises(ValueError, match="differs between ranks"):
        ZeroRedundancyOptimizer(initial_params(shapes), fastopt.Adam, comm)


def test_bad_arguments(comm):
    with pytest.raises(TypeError, match="optimizer_class"):
        ZeroRedundancyOptimizer(initial_params(), fastopt.LBFGS, comm)
    with pytest.raises(ValueError, match="reduce"):
        ZeroRedundancyOptimizer(initial_params(), fastopt.Adam, comm, reduce="max")
    with pytest.raises(ValueError, match="beta"):
        ZeroRedundancyOptimizer(initial_params(), fastopt.Adam, comm, betas=(1.5, 0.9))
    with pytest.raises(TypeError, match="dtype float16"):
        ZeroRedundancyOptimizer([np.zeros(4, np.float16)], fastopt.Adam, comm)
    with pytest.raises(ValueError, match="state_bits"):
        ZeroRedundancyOptimizer(initial_params(), fastopt.Adam, comm, state_bits=8)


def test_bad_hyperparameter_set_later_raises_on_all_and_changes_nothing(comm):
    cls, config = CONFIGS["adam"]
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, **config)
    zero.step(local_grads(comm.rank, 0, zero.params))
    before = [p.copy() for p in zero.params]
    zero.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        zero.step(local_grads(comm.rank, 1, zero.params))
    zero.param_groups[1]["lr"] = 1e-3
    zero.param_groups[0]["state_bits"] = 8
    with pytest.raises(ValueError, match="32-bit state"):
        zero.step(local_grads(comm.rank, 1, zero.params))
    for a, b in zip(zero.params, before):
        assert a.tobytes() == b.tobytes()


def test_scheduler_changes_reach_every_shard(comm):
    cls, config = CONFIGS["adam"]
    zero_params, single_params = initial_params(), initial_params()
    zero = ZeroRedundancyOptimizer(groups_of(zero_params, config), cls, comm, **config)
    single = cls(groups_of(single_params, config), **config)
    schedules = [fastopt.schedules.StepLR(opt, step_size=3, gamma=0.5) for opt in (zero, single)]
    for step in range(10):
        grads = [local_grads(r, step, zero.params) for r in range(comm.size)]
        zero.step(grads[comm.rank])
        single.step(reduced(grads))
        for s in schedules:
            s.step()
    for a, b in zip(zero.params, single_params):
        assert a.tobytes() == b.tobytes()
