"""The benchmark runs and compares like with like (no timing is asserted)."""

import json

import numpy as np
import pytest

from bench import __main__ as bench_main
from bench import numpy_inplace, steps
from fastopt import reference as R


@pytest.mark.parametrize("kernel", steps.KERNELS, ids=[k.label for k in steps.KERNELS])
def test_numpy_inplace_versions_compute_the_reference_step(kernel):
    """The in-place NumPy baseline does the same arithmetic as the reference."""
    fast = steps.make_buffers(kernel, 999, np.float64)
    ref = [b.copy() for b in fast]
    step = getattr(numpy_inplace, kernel.name)(*fast, **kernel.kwargs)
    for _ in range(3):
        step()
        getattr(R, kernel.name + "_")(*ref, **kernel.kwargs)
    for a, b in zip(fast, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernel", steps.KERNELS, ids=[k.label for k in steps.KERNELS])
def test_roofline_moves_the_same_arrays(kernel):
    """The roofline reads every array of the step and writes the written ones."""
    buffers = steps.make_buffers(kernel, 100, np.float32)
    before = [b.copy() for b in buffers]
    steps.make_step(kernel, "roofline", buffers)()
    p, g, *state = buffers
    mean = np.mean(before, axis=0, dtype=np.float64)
    for written in (p, *state):
        np.testing.assert_allclose(written, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g, before[1])


def test_bench_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "steps.json"
    assert bench_main.main(["--sizes", "1000", "--dtypes", "float64", "--kernels", "adam", "quickprop",
                            "--json", str(out), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "many-tensors" in printed and "| adam | float64 |" in printed
    data = json.loads(out.read_text())
    assert {r["kernel"] for r in data["rows"]} == {"adam", "quickprop"}
    for row in data["rows"]:
        assert row["seconds"]["fastopt"] > 0 and row["seconds"]["roofline"] > 0
        assert row["fastopt_peak_bytes"] < 4096  # a step allocates nothing proportional to N
