"""The benchmark runs and compares like with like (no timing is asserted)."""

import importlib.util
import json

import numpy as np
import pytest

from bench import __main__ as bench_main
from bench import many_tensors, numpy_inplace, steps
from fastopt import functional as F
from fastopt import reference as R

KERNELS = pytest.mark.parametrize("kernel", steps.KERNELS, ids=[k.label for k in steps.KERNELS])
# 997 (prime): every array flat; 3000: Adafactor's parameter is 50 x 60 (factored).
SIZES = pytest.mark.parametrize("n", [997, 3000])


def _copy(buffers):
    return [None if b is None else b.copy() for b in buffers]


@KERNELS
@SIZES
def test_numpy_inplace_versions_compute_the_reference_step(kernel, n):
    """The in-place NumPy baseline does the same arithmetic as the reference:
    bit for bit, except the norms of LAMB and Adafactor (BLAS dot there, the
    kernels' ordered double sum in the reference)."""
    fast = steps.make_buffers(kernel, n, np.float64)
    ref = _copy(fast)
    step = getattr(numpy_inplace, kernel.name)(*fast, **kernel.kwargs)
    for _ in range(3):
        step()
        getattr(R, kernel.name + "_")(*ref, **kernel.kwargs)
    for a, b in zip(fast, ref):
        if a is None:
            assert b is None
        elif kernel.name in ("lamb", "adafactor"):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        else:
            np.testing.assert_array_equal(a, b)


@KERNELS
@SIZES
def test_roofline_moves_the_same_arrays(kernel, n):
    """The roofline reads every array of N elements and writes the written
    ones (p and the state shaped like p); g and small state stay as they are."""
    buffers = steps.make_buffers(kernel, n, np.float32)
    before = _copy(buffers)
    steps.make_step(kernel, "roofline", buffers)()
    p, _, *state = buffers
    written = [0] + [2 + i for i, s in enumerate(state) if s is not None and s.shape == p.shape]
    assert 2 * len(written) + 1 == kernel.roofline_streams(n)
    mean = np.mean([before[i] for i in written + [1]], axis=0, dtype=np.float64)
    for i, (b, b0) in enumerate(zip(buffers, before)):
        if i in written:
            np.testing.assert_allclose(b, mean, rtol=1e-5, atol=1e-6)
        elif b is not None:
            np.testing.assert_array_equal(b, b0)


@KERNELS
@SIZES
def test_traffic_is_at_least_one_pass_over_the_step_arrays(kernel, n):
    """A step moves at least what one pass over its arrays moves (the
    roofline's traffic); every pass reads something; the bytes follow."""
    shape, _ = kernel.layout(n)
    assert int(np.prod(shape)) == n
    assert all(one_pass.split("->")[0].split() for one_pass in kernel.traffic(n))
    assert kernel.streams(n) >= kernel.roofline_streams(n)
    assert kernel.bytes_per_step(n, 4) == kernel.streams(n) * n * 4


def test_every_functional_optimizer_has_a_row():
    """A new fastopt.functional optimizer gets benchmarked (and has a NumPy twin)."""
    benchmarked = {k.name for k in steps.KERNELS}
    functions = {name[:-1] for name in F.__all__ if name.endswith("_")}
    assert functions <= benchmarked
    for name in benchmarked:
        assert name + "_" in R.__all__
        assert hasattr(numpy_inplace, name)


@KERNELS
def test_every_implementation_runs_once(kernel):
    """Each row's every implementation does one step on a tiny size, and
    fastopt's step is the reference's."""
    assert steps.available(kernel), f"bench row {kernel.label}: fastopt.functional.{kernel.name}_ does not exist"
    n = 2000  # Adafactor: 40 x 50, factored
    results = {}
    for implementation in steps.IMPLEMENTATIONS:
        buffers = steps.make_buffers(kernel, n, np.float64)
        step = steps.make_step(kernel, implementation, buffers)
        if step is None:
            assert implementation.startswith("torch_")
            continue
        step()
        results[implementation] = buffers
    for a, b in zip(results["fastopt"], results["reference"]):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    if kernel.torch_class is not None and importlib.util.find_spec("torch") is not None:
        assert "torch_foreach" in results  # the torch twin takes our arguments


def test_bench_runs_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(many_tensors, "ROUNDS", 3)  # a smoke run: few samples
    out = tmp_path / "steps.json"
    assert bench_main.main(["--sizes", "1000", "--dtypes", "float64", "--kernels", "adam", "quickprop",
                            "--json", str(out), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "many-tensors (small CNN)" in printed
    assert "| adam | float64 |" in printed
    assert "class step / flat call" in printed
    data = json.loads(out.read_text())
    assert {r["kernel"] for r in data["rows"]} == {"adam", "quickprop"}
    for row in data["rows"]:
        assert row["seconds"]["fastopt"] > 0
        assert row["seconds"]["roofline"] > 0
        assert row["fastopt_peak_bytes"] < 4096  # a step allocates nothing proportional to N
    uniform = next(case for case in data["many_tensors"] if case["arrays"] == 200)
    assert uniform["total"] == 819_200
    assert uniform["rounds"] == 3
    assert uniform["class_over_flat"] > 0


def test_bench_skips_a_kernel_whose_function_is_missing(monkeypatch, capsys):
    """A row whose fastopt.functional function is absent is skipped with a line."""
    monkeypatch.delattr(F, "quickprop_")
    monkeypatch.setattr(many_tensors, "run_all", lambda dtype: [])
    assert bench_main.main(["--sizes", "1000", "--dtypes", "float32", "--kernels", "adam", "quickprop",
                            "--json", ""]) == 0
    printed = capsys.readouterr().out
    assert "skipped: fastopt.functional.quickprop_ does not exist" in printed
    assert "\nadam " in printed


def test_bench_torch_runs_end_to_end(tmp_path, capsys, monkeypatch):
    """python -m bench torch: every implementation has a row (or a skip
    line), bytes per parameter follow the dtypes, the JSON is written."""
    pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    from bench import vs_torch

    medians = vs_torch.interleaved_medians
    monkeypatch.setattr(vs_torch, "interleaved_medians",
                        lambda steps, seconds=1.0, min_rounds=5: medians(steps, seconds=0.01, min_rounds=2))
    monkeypatch.setattr(vs_torch, "many_tensor_model",
                        lambda torch: torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)]))
    out = tmp_path / "torch.json"
    assert bench_main.main(["torch", "--sizes", "1000", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    labels = {(r["dtype"], r["implementation"]): r for r in data["rows"]}
    for dtype in ("float32", "bfloat16"):
        for label, _, _, per_param in vs_torch.implementations(dtype):
            assert (dtype, label) in labels or f"{label} ({dtype})" in printed and "skipped" in printed
            if (dtype, label) in labels:
                assert labels[dtype, label]["bytes_per_param"] == per_param
                assert labels[dtype, label]["seconds"] > 0
    assert labels["bfloat16", "fastopt.torch nearest"]["bytes_per_param"] == 22  # 2+2 p, 2 g, 16 moments
    assert labels["bfloat16", "torch fused"]["bytes_per_param"] == 14
    assert {r["implementation"] for r in data["many_tensors"]} == {"torch fused", "torch foreach", "fastopt.torch"}


def _quick_8bit(monkeypatch):
    """python -m bench 8bit as a smoke run: few samples, a short accuracy run."""
    from bench import state8bit

    monkeypatch.setattr(state8bit, "seconds_budget", lambda n: 0.0)
    monkeypatch.setattr(state8bit, "MIN_ROUNDS", 2)
    monkeypatch.setattr(state8bit, "ACCURACY_N", 3000)
    monkeypatch.setattr(state8bit, "ACCURACY_STEPS", 5)
    return state8bit


def test_bench_8bit_roofline_moves_the_steps_bytes():
    """Each roofline layout reads and writes what its step does (bytes per
    parameter, the absmax aside), and the roofline kernel takes its counts."""
    from bench import state8bit

    n = 3000
    for traffic in state8bit.TRAFFIC.values():
        elements, written, read = state8bit.roofline_layout(traffic, n)
        assert written * 4 * elements == traffic.written * n
        assert (written + read) * 4 * elements == traffic.read * n
        step, moved = state8bit.roofline_step(traffic, n)
        step()
        assert moved == traffic.bytes(n) - traffic.per_block * state8bit.blocks(n)
    assert state8bit.TRAFFIC[32, "float32"].per_param(n) == 28
    assert state8bit.TRAFFIC[8, "float32"].bytes(n) == 16 * n + 16 * 12  # 12 blocks of 256


def test_bench_8bit_runs_end_to_end(tmp_path, capsys, monkeypatch):
    """python -m bench 8bit: every implementation has a row (or a skip line)
    per group, with the bytes and resident state its dtypes imply, the
    ratios and the accuracy run are reported, the JSON is written."""
    state8bit = _quick_8bit(monkeypatch)
    out = tmp_path / "8bit.json"
    assert bench_main.main(["8bit", "--sizes", "3000", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert state8bit.HEADER in printed
    assert "8-bit vs 32-bit:" in printed
    data = json.loads(out.read_text())
    has_bnb = not isinstance(state8bit._bitsandbytes(), str)
    dtypes = ["float32"] + (["bfloat16"] if importlib.util.find_spec("ml_dtypes") else [])
    assert [(g["dtype"], g["n"]) for g in data["groups"]] == [(d, 3000) for d in dtypes]
    blocks = 12  # ceil(3000 / 256)
    for group in data["groups"]:
        rows = {r["implementation"]: r for r in data["rows"] if r["dtype"] == group["dtype"]}
        expected = {state8bit.FAST32, state8bit.FAST8, state8bit.ROOF8, state8bit.ROOF32}
        assert set(rows) == expected | ({state8bit.BNB} if has_bnb else set())
        assert all(r["seconds"] > 0 and r["gbps"] > 0 and r["roofline"] > 0 for r in rows.values())
        assert rows[state8bit.ROOF8]["roofline"] == pytest.approx(1.0)
        p = 4 if group["dtype"] == "float32" else 2
        absmax = 16 * blocks / 3000
        assert rows[state8bit.FAST32]["bytes_per_param"] == 3 * p + 16
        assert rows[state8bit.FAST8]["bytes_per_param"] == pytest.approx(3 * p + 4 + absmax)
        assert rows[state8bit.ROOF8]["bytes_per_param"] == rows[state8bit.FAST8]["bytes_per_param"]
        assert rows[state8bit.FAST32]["state_bytes_per_param"] == 8
        assert rows[state8bit.FAST8]["state_bytes_per_param"] == pytest.approx((2 * 3000 + 2 * 4 * blocks) / 3000)
        assert rows[state8bit.ROOF8]["state_bytes_per_param"] is None
        assert group["speedup_8bit_vs_32bit"] > 0
        assert group["roofline_8bit"] > 0
        assert (group["speedup_8bit_vs_bitsandbytes"] is not None) == has_bnb
        if has_bnb:  # uint8 codes and absmax as ours, plus its two 256-entry maps
            assert rows[state8bit.BNB]["state_bytes_per_param"] == pytest.approx(
                (2 * 3000 + 2 * 4 * blocks + 2 * 256 * 4) / 3000)
    acc = data["accuracy"]
    assert acc["n"] == 3000
    assert acc["steps"] == 5
    assert set(acc["runs"]) == {state8bit.FAST8} | ({state8bit.BNB} if has_bnb else set())
    for r in acc["runs"].values():
        assert 0 <= r["median_rel_error"] <= r["max_rel_error"] < 1
        assert np.isfinite(r["loss"])


def test_bench_8bit_skips_bitsandbytes_with_a_line(capsys, monkeypatch):
    """Without bitsandbytes the fastopt rows and the accuracy run remain and
    its rows are skipped with a line."""
    state8bit = _quick_8bit(monkeypatch)
    monkeypatch.setattr(state8bit, "_bitsandbytes", lambda: "ModuleNotFoundError: No module named 'bitsandbytes'")
    results = state8bit.run([3000], ["float32"])
    printed = capsys.readouterr().out
    assert f"{state8bit.BNB:<24}float32" in printed
    assert "skipped: ModuleNotFoundError" in printed
    assert {r["implementation"] for r in results["rows"]} == {state8bit.FAST32, state8bit.FAST8, state8bit.ROOF8,
                                                              state8bit.ROOF32}
    assert results["groups"][0]["speedup_8bit_vs_bitsandbytes"] is None
    assert set(results["accuracy"]["runs"]) == {state8bit.FAST8}


def test_bench_distributed_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("mpi4py")
    path = tmp_path / "distributed.json"
    assert bench_main.main(["distributed", "--quick", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "ZeroRedundancyOptimizer" in printed
    assert "Distributed L-BFGS" in printed
    results = json.loads(path.read_text())
    assert [r["p"] for r in results] == [1, 2]
    two = results[1]
    for row in two["zero"]:  # the bytes bound and the state share hold at any size
        n = row["n"]
        assert row["sent"] <= 1.02 * (2 - 1) / 2 * 2 * n * 4 + 2 * 3 * 64
        assert row["state_bytes"] <= (0.5 + 0.01) * row["single_state_bytes"] + 3 * 64
    assert two["lbfgs"][0]["pair_bytes"] * 2 == two["lbfgs"][0]["single_pair_bytes"]
