"""FlatBuffer: many arrays as aligned views of one buffer, one kernel pass."""

import numpy as np
import pytest

import fastopt
from fastopt import FlatBuffer, optim

SHAPES = [(3, 5), (7,), (1,), (16, 16), (), (33,)]


def test_views_share_one_aligned_buffer():
    buf = FlatBuffer(SHAPES, dtype=np.float32)
    assert [v.shape for v in buf.views] == SHAPES
    for v in buf.views:
        assert np.shares_memory(v, buf.flat)
        assert v.flags.c_contiguous
        assert v.ctypes.data % 64 == 0
    assert buf.flat.flags.c_contiguous
    assert buf.flat.ndim == 1
    assert buf.flat.size >= sum(int(np.prod(s)) for s in SHAPES)


def test_from_arrays_copies_values_and_dtype():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in SHAPES]
    buf = FlatBuffer.from_arrays(arrays)
    assert buf.dtype == np.float64
    for a, v in zip(arrays, buf):
        np.testing.assert_array_equal(a, v)
        assert not np.shares_memory(a, v)
    with pytest.raises(TypeError, match="several dtypes"):
        FlatBuffer.from_arrays([np.zeros(2), np.zeros(2, np.float32)])
    with pytest.raises(TypeError, match="float32 or float64"):
        FlatBuffer(SHAPES, dtype=np.int32)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("Adam", dict(lr=1e-2, weight_decay=0.1)), ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Rprop", dict(variant="irprop-")), ("Quickprop", dict(lr=0.01)), ("RMSprop", dict(lr=0.01, centered=True)),
])
def test_one_flat_step_equals_per_array_steps(name, kwargs):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    separate = [a.copy() for a in arrays]
    params = FlatBuffer.from_arrays(arrays)
    grads = params.zeros_like()
    flat_opt = getattr(optim, name)([params.flat], **kwargs)
    split_opt = getattr(optim, name)(separate, **kwargs)
    padding = np.ones(params.flat.size, bool)
    for v in params.views:
        padding[v.ctypes.data // 4 - params.flat.ctypes.data // 4:][:v.size] = False
    for t in range(10):
        gs = [np.asarray(np.sin(v * (t + 1)), dtype=np.float32) for v in separate]
        for view, g in zip(grads.views, gs):
            view[...] = g
        flat_opt.step([grads.flat])
        split_opt.step(gs)
    for v, a in zip(params.views, separate):
        np.testing.assert_array_equal(v, a)
    assert not params.flat[padding].any(), "padding must stay zero"
    assert flat_opt.state[0]["step"] == 10
    assert len(flat_opt.state) == 1


def test_repr_and_len():
    buf = FlatBuffer(SHAPES)
    assert len(buf) == len(SHAPES)
    assert "6 arrays" in repr(buf)
    assert fastopt.FlatBuffer is FlatBuffer
