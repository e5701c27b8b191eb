"""Sharded checkpoints: written by p ranks, restarted on fewer (and more)
ranks, continuing bitwise as the single-process run."""

from __future__ import annotations

import os
import tempfile

import pytest

from fastopt.distributed import ZeroRedundancyOptimizer

from .test_zero import CONFIGS, groups_of, initial_params, local_grads, reduced


@pytest.fixture
def shared_dir(comm):
    """A directory every rank sees (rank 0 makes it)."""
    path = tempfile.mkdtemp(prefix="fastopt-zero-") if comm.rank == 0 else None
    return comm.bcast(path, root=0)


def world_grads(step, params, size):
    return [local_grads(r, step, params) for r in range(size)]


@pytest.mark.parametrize("name", ["adam", "nadam", "asgd", "rmsprop", "lamb", "adafactor", "irprop+"])
def test_restart_on_fewer_ranks_continues_bitwise(comm, shared_dir, name):
    cls, config = CONFIGS[name]
    single_params = initial_params()
    single = cls(groups_of(single_params, config), **config)
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, bucket_size=512, **config)
    for step in range(6):
        grads = world_grads(step, zero.params, comm.size)
        zero.step(grads[comm.rank], loss=float(step))
        single.step(reduced(grads), loss=float(step))
    zero.save_sharded(shared_dir)
    assert os.path.exists(os.path.join(shared_dir, "layout.json"))
    # Continue on the first k ranks for k = p, p/2 and 1: the state and the
    # parameters load bitwise, and the steps that follow are the single-process
    # steps on the new world's reduced gradients.
    for size in sorted({comm.size, max(1, comm.size // 2), 1}, reverse=True):
        sub = comm.Split(0 if comm.rank < size else 1, comm.rank)
        if comm.rank < size:
            fresh = ZeroRedundancyOptimizer(groups_of(initial_params(seed=1), config), cls, sub, **config)
            fresh.load_sharded(shared_dir)
            for a, b in zip(fresh.params, zero.params):
                assert a.tobytes() == b.tobytes()
            reference_params = [p.copy() for p in single_params]
            reference = cls(groups_of(reference_params, config), **config)
            reference.load_state_dict(single.state_dict())
            for step in range(6, 12):
                grads = world_grads(step, fresh.params, size)
                fresh.step(grads[sub.rank], loss=float(step))
                reference.step(reduced(grads), loss=float(step))
            for a, b in zip(fresh.params, reference_params):
                assert a.tobytes() == b.tobytes(), f"restarted on {size} ranks"
        sub.Free()
        comm.Barrier()


def test_checkpoint_from_one_rank_loads_on_all(comm, shared_dir):
    cls, config = CONFIGS["adamw"]
    if comm.rank == 0:
        alone = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm.Split(0, 0), **config)
        for step in range(3):
            alone.step(local_grads(0, step, alone.params))
        alone.save_sharded(shared_dir)
    else:
        comm.Split(1, comm.rank)
    comm.Barrier()
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(seed=2), config), cls, comm, **config)
    zero.load_sharded(shared_dir)
    state = zero.state_dict(to=0)
    if comm.rank == 0:
        assert state["state"][0]["step"] == 3
        for a, b in zip(zero.params, alone.params):
            assert a.tobytes() == b.tobytes()


def test_a_damaged_checkpoint_raises_on_every_rank(comm, shared_dir):
    cls, config = CONFIGS["adam"]
    zero = ZeroRedundancyOptimizer(groups_of(initial_params(), config), cls, comm, **config)
    zero.step(local_grads(comm.rank, 0, zero.params))
    zero.save_sharded(shared_dir)
    before = [p.copy() for p in zero.params]
    if comm.rank == 0:
        os.remove(os.path.join(shared_dir, f"shard-{comm.size - 1:05d}-of-{comm.size:05d}.npz"))
    comm.Barrier()
    with pytest.raises(ValueError, match="not a complete, readable sharded checkpoint"):
        zero.load_sharded(shared_dir)
    other = ZeroRedundancyOptimizer(groups_of(initial_params()[:3], config)[:1], cls, comm, **config)
    with pytest.raises(ValueError, match="not this optimizer's"):
        other.load_sharded(shared_dir)
    for a, b in zip(zero.params, before):
        assert a.tobytes() == b.tobytes()
