"""The demo's 16-bit comparison: the digits MLP trained with its parameters
stored in bfloat16 (nearest, stochastic, split master) and float16, beside
the same run in float32 (python/fastopt/demo/precision.py)."""

import re

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")
pytest.importorskip("sklearn")          # the digits data set

from fastopt.demo import cli, precision  # noqa: E402
from fastopt.demo.problems import problems  # noqa: E402

SEED = 0


def digits(quick=False):
    return next(p for p in problems(quick=quick) if p.name == "digits")


@pytest.fixture(scope="module")
def comparison():
    """Both optimizers, every storage, the full budget (50 epochs), one seed."""
    return precision.compare(digits(), [SEED])


def brief_master(param, low_bits):
    return ((param.view(np.uint16).astype(np.uint32) << 16) | low_bits).view(np.float32)


def test_every_run_trained_the_same_budget(comparison):
    problem = comparison.problem
    assert comparison.epochs == problem.epochs == 50
    assert comparison.optimizers == list(precision.OPTIMIZERS)
    steps = problem.epochs * -(-len(problem.data) // problem.batch_size)
    for r in comparison.runs:
        assert r.steps == steps
        assert len(r.losses) == len(r.test_accuracies) == problem.epochs + 1
        assert np.all(np.isfinite(r.losses))
        assert [p.dtype for p in r.params] == [r.storage.numpy_dtype] * 4
    for optimizer in comparison.optimizers:
        runs = [r for r in comparison.runs if r.optimizer == optimizer]
        assert [r.storage.label for r in runs] == [s.label for s in precision.STORAGES]
        # Same start: the same weights (as stored) give the same initial loss, up to storage rounding.
        assert max(r.losses[0] for r in runs) == pytest.approx(min(r.losses[0] for r in runs), rel=1e-2)


@pytest.mark.parametrize("optimizer", precision.OPTIMIZERS)
def test_split_masters_are_the_float32_optimizer_bitwise(comparison, optimizer):
    """Split's float32 masters (bfloat16 parameter on top, state's low bits
    below) are bitwise what the float32 optimizer makes of the same gradients
    from the same float32 initial weights. (Not the float32 training run's
    parameters: the forward pass sees the truncated bfloat16 weights, so the
    gradients differ.)"""
    problem = comparison.problem
    spec = precision.specs_of(problem, [optimizer])[0]
    split = next(s for s in precision.STORAGES if s.master_weights == "split")
    run = precision.train_stored(problem, spec, split, SEED, problem.epochs, keep_grads=True)
    opt = run.optimizer_object
    masters = [brief_master(p, opt.state[k]["master_low_bits"]) for k, p in enumerate(run.params)]

    # The float32 optimizer, fresh, on the recorded float32 gradients.
    reference = [p.copy() for p in run.initial]
    assert all(p.dtype == np.float32 for p in reference)
    float32_opt = spec.make(reference)
    for grads in run.grads:
        assert all(g.dtype == np.float32 for g in grads)
        float32_opt.step(grads)
    for k, (m, ref) in enumerate(zip(masters, reference)):
        np.testing.assert_array_equal(m.view(np.uint32), ref.view(np.uint32), err_msg=f"params[{k}]")
    # The master carries more than the bfloat16 parameter, and it is what the run reports.
    assert any(np.any(opt.state[k]["master_low_bits"]) for k in range(len(run.params)))
    assert precision.bitwise_equal(run.masters, masters)
    # The comparison's own check agrees; the same run from the comparison is the same.
    assert comparison.split_bitwise[optimizer] is True
    assert precision.bitwise_equal(comparison.run(optimizer, split.label).masters, masters)


@pytest.mark.parametrize("optimizer", precision.OPTIMIZERS)
@pytest.mark.parametrize("storage", ["bfloat16 stochastic", "bfloat16 split"])
def test_stochastic_and_split_keep_float32_test_accuracy(comparison, optimizer, storage):
    float32 = comparison.run(optimizer, "float32").test_accuracy
    assert float32 > 0.95
    got = comparison.run(optimizer, storage).test_accuracy
    assert abs(got - float32) <= precision.CLOSE, (
        f"{optimizer} {storage}: {100 * got:.2f}% vs float32 {100 * float32:.2f}%")


@pytest.mark.parametrize("optimizer", precision.OPTIMIZERS)
def test_nearest_loses_updates(comparison, optimizer):
    """Round-to-nearest bfloat16 drops the updates smaller than half a
    spacing: more elements stay put and the training loss ends higher than
    float32's, which stochastic rounding and split both match closely."""
    run = {r.storage.label: r for r in comparison.runs if r.optimizer == optimizer}
    float32, nearest = run["float32"], run["bfloat16 nearest"]
    assert nearest.unchanged > float32.unchanged + 0.3
    assert run["bfloat16 split"].unchanged == pytest.approx(float32.unchanged, abs=0.02)
    assert nearest.final_loss > 1.5 * float32.final_loss
    for label in ("bfloat16 stochastic", "bfloat16 split"):
        assert run[label].final_loss == pytest.approx(float32.final_loss, rel=0.05)


def test_split_halves_round_trip():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    x[:3] = [0.0, -0.0, np.float32(1e-40)]
    top, low = precision.split_halves(x)
    assert top.dtype == ml_dtypes.bfloat16
    assert low.dtype == np.uint16
    np.testing.assert_array_equal(precision.join_master(top, low).view(np.uint32), x.view(np.uint32))
    np.testing.assert_array_equal(brief_master(top, low).view(np.uint32), x.view(np.uint32))


# ------------------------------------------------------------------------ CLI
def run_demo(args):
    lines = []
    assert cli.main(args, out=lines.append) == 0
    return "\n".join(lines)


def test_demo_prints_and_draws_the_comparison(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(cli, "problems", lambda quick: [digits(quick)])
    text = run_demo(["--quick", "--out", str(tmp_path), "--no-progress"])
    section = text.split("== digits, 16-bit parameters:")[1]
    lines = section.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("optimizer "))
    rows = [re.split(r" {2,}", line.strip()) for line in lines[header + 2:header + 14]]
    expected = [(o, s.label) for o in precision.OPTIMIZERS for s in precision.STORAGES]
    assert [tuple(row[:2]) for row in rows] == expected
    assert all(len(row) == 8 for row in rows)
    for optimizer in precision.OPTIMIZERS:
        assert f"{optimizer} (" in section
    assert section.count("bitwise equal") == len(precision.OPTIMIZERS)
    assert "seeds" not in section.split("Every run")[0]       # --quick: one seed
    assert "precision_digits.png" in text
    assert (tmp_path / "precision_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_seeds_table_in_full_budget(monkeypatch):
    """The full budget adds four seeds; a short stand-in for it here."""
    monkeypatch.setattr(cli, "run_precision", lambda problem, seed, progress, quick: precision.compare(
        problem, [seed, seed + 1], epochs=2))
    monkeypatch.setattr(cli, "problems", lambda quick: [digits(quick=True)])
    text = run_demo(["--quick", "--no-figures", "--no-progress", "--seed", "3"])
    assert "test accuracy over seeds 3-4" in text
    assert "/2 seeds" in text


def test_demo_without_ml_dtypes(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ml_dtypes", None)
    assert not precision.available()
    monkeypatch.setattr(cli, "problems", lambda quick: [digits(quick=True)])
    text = run_demo(["--quick", "--no-figures", "--no-progress"])
    assert "16-bit parameters: skipped (bfloat16 needs ml_dtypes" in text
