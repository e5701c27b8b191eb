"""fastopt.save / fastopt.load: exact resume, atomic writes, clear refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import checkpoint, optim
from fastopt import schedules as S

# Every optimizer class, in configurations that use all of its state.
OPTIMIZERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.05),
    "SGD-nesterov": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                         weight_decay=1e-3),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    "Adam": lambda ps: optim.Adam(ps, lr=0.02, amsgrad=True),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.02),
    **{f"Rprop-{v}": (lambda v: lambda ps: optim.Rprop(ps, lr=0.02, variant=v))(v)  # noqa: B023 (bound by the outer lambda)
       for v in ("irprop-", "rprop-", "rprop+", "irprop+")},
    "Quickprop": lambda ps: optim.Quickprop(ps, lr=0.02, mode_switch=1e-4, momentum=0.1),
}


class LeastSquares:
    """0.5*||X W + b - Y||^2 / n with W float64 and b float32 (a mixed-dtype model)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.X = rng.standard_normal((40, 5))
        self.Y = rng.standard_normal((40, 3))

    def params(self, seed=1):
        rng = np.random.default_rng(seed)
        return [rng.standard_normal((5, 3)), rng.standard_normal(3).astype(np.float32)]

    def loss_and_grads(self, params):
        W, b = params
        r = (self.X @ W + b - self.Y) / len(self.X)
        loss = 0.5 * len(self.X) * float(np.sum(r * r))
        return loss, [self.X.T @ r, r.sum(axis=0).astype(np.float32)]


def make_run(name, problem, seed=1):
    params = problem.params(seed)
    opt = OPTIMIZERS[name]([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}])
    sched = S.SequentialLR(opt, [S.LinearLR(opt, 0.5, total_iters=4),
                                 S.CosineAnnealingLR(opt, T_max=30)], [4])
    return params, opt, sched


def train(problem, params, opt, sched, steps):
    for _ in range(steps):
        loss, grads = problem.loss_and_grads(params)
        opt.step(grads, loss=loss)
        sched.step()


def snapshot(params, opt, sched=None):
    sched_state = None if sched is None else sched.state_dict()
    return [p.copy() for p in params], opt.state_dict(), sched_state


def assert_same_snapshot(a, b):
    params_a, opt_a, sched_a = a
    params_b, opt_b, sched_b = b
    for x, y in zip(params_a, params_b):
        assert x.dtype == y.dtype
        assert np.array_equal(x, y)
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for i in opt_a["state"]:
        sa, sb = opt_a["state"][i], opt_b["state"][i]
        assert sa.keys() == sb.keys()
        for key in sa:
            if isinstance(sa[key], np.ndarray):
                assert sa[key].dtype == sb[key].dtype, (i, key)
                assert np.array_equal(sa[key], sb[key]), (i, key)
            else:
                assert sa[key] == sb[key], (i, key)
    assert sched_a == sched_b


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_is_bitwise_identical(name, tmp_path):
    problem = LeastSquares()
    straight = make_run(name, problem)
    train(problem, *straight, steps=25)

    first = make_run(name, problem)
    train(problem, *first, steps=10)
    fastopt.save(tmp_path / "ckpt.npz", first[1], first[2], extra={"epoch": 10})
    train(problem, *first, steps=3)   # the run goes on after the save; the file must not

    # A new process would build everything afresh, from other initial values.
    resumed = make_run(name, problem, seed=7)
    assert fastopt.load(tmp_path / "ckpt.npz", resumed[1], resumed[2]) == {"epoch": 10}
    train(problem, *resumed, steps=15)
    assert_same_snapshot(snapshot(*straight), snapshot(*resumed))
    assert straight[2].get_last_lr() == resumed[2].get_last_lr()


def test_round_trip_keeps_types_and_values(tmp_path):
    problem = LeastSquares()
    params, opt, _ = make_run("Rprop-irprop+", problem)
    sched = S.ReduceLROnPlateau(opt, patience=1)   # its state holds inf until the first step
    train_steps = 3
    for _ in range(train_steps):
        loss, grads = problem.loss_and_grads(params)
        opt.step(grads, loss=loss)
    extra = {"note": "x", "history": [1.5, None], "k": (1, 2)}
    fastopt.save(tmp_path / "c.npz", opt, sched, extra=extra)
    before = snapshot(params, opt, sched)
    assert before[2]["best"] == float("inf")

    fresh = problem.params(seed=3)
    opt2 = optim.Rprop([{"params": [fresh[0]]}, {"params": [fresh[1]], "lr": 0.01}], lr=0.02,
                       variant="irprop+")
    sched2 = S.ReduceLROnPlateau(opt2, patience=1)
    assert fastopt.load(tmp_path / "c.npz", opt2, sched2) == extra
    assert_same_snapshot(before, snapshot(fresh, opt2, sched2))
    # State keys stay ints, tuples stay tuples, step counts stay ints.
    state = opt2.state_dict()
    assert sorted(state["state"]) == [0, 1]
    assert isinstance(state["state"][0]["step"], int)
    assert isinstance(state["param_groups"][0]["etas"], tuple)


def test_file_is_plain_npz_without_pickle(tmp_path):
    params, opt, sched = make_run("Adam", LeastSquares())
    train(LeastSquares(), params, opt, sched, steps=2)
    fastopt.save(tmp_path / "c.npz", opt, sched)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        names = set(npz.files)
        assert {"params/0", "params/1", "optimizer/state/0/exp_avg",
                "optimizer/state/1/max_exp_avg_sq", "__meta__"} <= names
        assert np.array_equal(npz["params/1"], params[1])
        assert npz["params/1"].dtype == np.float32
        meta = json.loads(str(npz["__meta__"]))
    assert meta["format"] == "fastopt-checkpoint"
    assert meta["optimizer"]["class"] == "Adam"
    assert meta["scheduler"]["class"] == "SequentialLR"


def test_explicit_params_and_no_params(tmp_path):
    problem = LeastSquares()
    params, opt, sched = make_run("SGD", problem)
    extra_array = np.arange(4.0)   # something outside the optimizer, e.g. a running mean
    fastopt.save(tmp_path / "with.npz", opt, params=params + [extra_array])
    fastopt.save(tmp_path / "without.npz", opt, params=())
    target = [np.zeros_like(p) for p in params] + [np.zeros(4)]
    fastopt.load(tmp_path / "with.npz", opt, params=target)
    assert all(np.array_equal(a, b) for a, b in zip(target, params + [extra_array]))
    before = [p.copy() for p in params]
    fastopt.load(tmp_path / "without.npz", opt)   # stored no weights: the weights stay
    assert all(np.array_equal(a, b) for a, b in zip(params, before))
    with pytest.raises(ValueError, match="holds 0 parameter arrays but 2 were given"):
        fastopt.load(tmp_path / "without.npz", opt, params=params)


def test_unstorable_values_are_refused_before_writing(tmp_path):
    params, opt, _ = make_run("SGD", LeastSquares())
    with pytest.raises(TypeError, match="extra/f is a builtin_function_or_method, "
                                        "which a checkpoint cannot store"):
        fastopt.save(tmp_path / "c.npz", opt, extra={"f": len})
    with pytest.raises(TypeError, match="object array"):
        fastopt.save(tmp_path / "c.npz", opt, params=[np.array([None])])
    with pytest.raises(TypeError, match="extra must be a dict"):
        fastopt.save(tmp_path / "c.npz", opt, extra=[1])
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------- atomic writes
@pytest.fixture
def saved_run(tmp_path):
    """A run with a checkpoint on disk, then trained further (so the live state differs)."""
    problem = LeastSquares()
    params, opt, sched = make_run("Adam", problem)
    train(problem, params, opt, sched, steps=5)
    path = tmp_path / "ckpt.npz"
    fastopt.save(path, opt, sched)
    on_disk = snapshot(params, opt, sched)
    train(problem, params, opt, sched, steps=5)
    return path, problem, (params, opt, sched), on_disk


def assert_previous_checkpoint_intact(path, problem, on_disk):
    assert sorted(os.listdir(path.parent)) == [path.name], "a temporary file was left behind"
    params, opt, sched = make_run("Adam", problem, seed=9)
    fastopt.load(path, opt, sched)
    assert_same_snapshot(on_disk, snapshot(params, opt, sched))


def test_error_while_writing_keeps_previous_checkpoint(saved_run, monkeypatch):
    path, problem, (params, opt, sched), on_disk = saved_run

    def savez_that_fails_midway(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")   # a torn write, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", savez_that_fails_midway)
    with pytest.raises(OSError, match="No space left"):
        fastopt.save(path, opt, sched)
    monkeypatch.undo()
    assert_previous_checkpoint_intact(path, problem, on_disk)


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_fsync_or_rename_keeps_previous_checkpoint(saved_run, monkeypatch, failing):
    path, problem, (params, opt, sched), on_disk = saved_run

    def fail(*args):
        raise OSError(5, f"Input/output error in {failing}")

    monkeypatch.setattr(checkpoint.os, failing, fail)
    with pytest.raises(OSError, match=f"error in {failing}"):
        fastopt.save(path, opt, sched)
    monkeypatch.undo()
    assert_previous_checkpoint_intact(path, problem, on_disk)


def test_interrupt_keeps_previous_checkpoint(saved_run, monkeypatch):
    """KeyboardInterrupt (Ctrl-C) mid-write is cleaned up too."""
    path, problem, (params, opt, sched), on_disk = saved_run

    def interrupted(file, **arrays):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastopt.save(path, opt, sched)
    monkeypatch.undo()
    assert_previous_checkpoint_intact(path, problem, on_disk)


def test_killed_process_keeps_previous_checkpoint(saved_run):
    """A process that dies mid-write (no cleanup at all) leaves the old file whole."""
    path, problem, _, on_disk = saved_run
    script = f"""
import os, numpy as np, fastopt
from fastopt import checkpoint
real_savez = np.savez
def savez_then_die(file, **arrays):
    real_savez(file, **arrays)
    file.flush()
    file.truncate(file.tell() // 2)
    os._exit(3)   # killed: no exception, no cleanup
checkpoint.np.savez = savez_then_die
w = np.ones(3)
fastopt.save({str(path)!r}, fastopt.SGD([w], lr=0.1))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 3, result.stderr.decode()
    leftovers = [n for n in os.listdir(path.parent) if n != path.name]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".ckpt.npz.")
    assert leftovers[0].endswith(".tmp")
    os.unlink(path.parent / leftovers[0])   # documented: a killed process cannot clean up
    assert_previous_checkpoint_intact(path, problem, on_disk)


# ------------------------------------------------------- refusals change nothing
def corrupt_truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_flipped_bytes(path):
    data = bytearray(path.read_bytes())
    with np.load(path) as npz:
        stored = npz["optimizer/state/0/exp_avg"].tobytes()
    start = data.find(stored)   # the array's bytes, stored as they are (no compression)
    assert start > 0
    data[start + 8:start + 16] = b"\xff" * 8
    path.write_bytes(bytes(data))


def corrupt_not_npz(path):
    path.write_bytes(b"this is not a checkpoint")


def corrupt_foreign_npz(path):
    np.savez(path, x=np.zeros(3))


def corrupt_pickled(path):
    np.savez(path, __meta__=np.array("{}"), evil=np.array([{"a": 1}], dtype=object))


def corrupt_bad_json(path):
    np.savez(path, __meta__=np.array("{not json"))


def corrupt_newer_version(path):
    rewrite_meta(path, lambda meta: meta.update(version=99))


def rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays["__meta__"]))
    change(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


CORRUPTIONS = {
    "truncated": (corrupt_truncated, "not a readable fastopt checkpoint"),
    "flipped-bytes": (corrupt_flipped_bytes, "not a readable fastopt checkpoint.*CRC"),
    "not-npz": (corrupt_not_npz, "not a readable fastopt checkpoint"),
    "foreign-npz": (corrupt_foreign_npz, "not a fastopt checkpoint"),
    "pickled-object-array": (corrupt_pickled, "allow_pickle=False"),
    "bad-json": (corrupt_bad_json, "not a readable fastopt checkpoint.*JSONDecodeError"),
    "newer-version": (corrupt_newer_version, "format version 99"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_file_raises_and_changes_nothing(saved_run, name):
    path, _, (params, opt, sched), _ = saved_run
    corrupt, message = CORRUPTIONS[name]
    corrupt(path)
    before = snapshot(params, opt, sched)
    with pytest.raises(ValueError, match=message):
        fastopt.load(path, opt, sched)
    assert_same_snapshot(before, snapshot(params, opt, sched))


def test_missing_file(tmp_path):
    params, opt, _ = make_run("SGD", LeastSquares())
    with pytest.raises(FileNotFoundError):
        fastopt.load(tmp_path / "nope.npz", opt)


def mismatches(problem):
    """(description, build the target run, error type, message)."""
    def other_shape(seed):
        params = [np.zeros((5, 4)), np.zeros(4, np.float32)]
        opt = optim.Adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}])
        return params, opt, S.SequentialLR(opt, [S.LinearLR(opt, 0.5, total_iters=4),
                                                 S.CosineAnnealingLR(opt, T_max=30)], [4])

    def other_dtype(seed):
        params, opt, sched = make_run("Adam", problem)
        params = [params[0], np.zeros(3, np.float64)]
        return params, opt, sched

    def other_optimizer(seed):
        return make_run("AdamW", problem)

    def other_scheduler(seed):
        params, opt, _ = make_run("Adam", problem)
        return params, opt, S.StepLR(opt, 3)

    def other_param_count(seed):
        params, opt, sched = make_run("Adam", problem)
        return params[:1], opt, sched

    def read_only(seed):
        params, opt, sched = make_run("Adam", problem)
        frozen = params[0].copy()
        frozen.flags.writeable = False
        return [frozen, params[1]], opt, sched

    return {
        "shape": (other_shape, ValueError,
                  r"params\[0\] has shape \(5, 4\) but the checkpoint's has shape \(5, 3\)"),
        "dtype": (other_dtype, TypeError,
                  r"params\[1\] has dtype float64 but the checkpoint's has dtype float32"),
        "optimizer-class": (other_optimizer, ValueError,
                            "state of optimizer class Adam, not AdamW"),
        "scheduler-class": (other_scheduler, ValueError,
                            "state of scheduler class SequentialLR, not StepLR"),
        "param-count": (other_param_count, ValueError, "holds 2 parameter arrays but 1 were given"),
        "read-only": (read_only, ValueError, "read-only"),
    }


@pytest.mark.parametrize("name", list(mismatches(None)))
def test_mismatched_checkpoint_raises_and_changes_nothing(saved_run, name):
    path, problem, _, _ = saved_run
    build, error, message = mismatches(problem)[name]
    params, opt, sched = build(seed=4)
    before = snapshot(params, opt, sched)
    with pytest.raises(error, match=message):
        fastopt.load(path, opt, sched, params=params)
    assert_same_snapshot(before, snapshot(params, opt, sched))


def test_scheduler_missing_from_file(tmp_path):
    params, opt, sched = make_run("SGD", LeastSquares())
    fastopt.save(tmp_path / "c.npz", opt)
    before = snapshot(params, opt, sched)
    with pytest.raises(ValueError, match="holds no scheduler state, but a SequentialLR was given"):
        fastopt.load(tmp_path / "c.npz", opt, sched)
    assert_same_snapshot(before, snapshot(params, opt, sched))


def test_late_failure_rolls_the_optimizer_back(saved_run):
    """The optimizer state loads, then the scheduler's is refused: both stay as they were."""
    path, problem, (params, opt, sched), _ = saved_run
    rewrite_meta(path, lambda meta: meta["scheduler"]["state_dict"].pop("_milestones"))
    before = snapshot(params, opt, sched)
    with pytest.raises(ValueError, match=r"missing keys \['_milestones'\]"):
        fastopt.load(path, opt, sched)
    assert_same_snapshot(before, snapshot(params, opt, sched))


def test_bad_optimizer_state_in_file_changes_nothing(saved_run):
    path, problem, (params, opt, sched), _ = saved_run
    rewrite_meta(path, lambda meta: meta["optimizer"]["state_dict"]["param_groups"][0]
                 .update(lr=-1.0))
    before = snapshot(params, opt, sched)
    with pytest.raises(ValueError, match="lr"):
        fastopt.load(path, opt, sched)
    assert_same_snapshot(before, snapshot(params, opt, sched))
