"""The example MLP (gradients checked by finite differences), its data sets,
and `python -m fastopt.demo` run end to end on its quick budget."""

import io
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt.demo import cli, problems, surfaces, training
from fastopt.demo.progress import ProgressBar
from fastopt.examples import MLP, encoder, two_spirals


# ------------------------------------------------------------------------ MLP
def finite_difference_grads(model, params, X, T, h=1e-6):
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + h
            up = model.loss(params, X, T)
            p[i] = keep - h
            down = model.loss(params, X, T)
            p[i] = keep
            g[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "linear"])
@pytest.mark.parametrize("sizes", [[3, 5, 4, 3], [4, 2]],
                         ids=["two-hidden-layers", "no-hidden-layer"])
def test_gradients_match_finite_differences(hidden, output, sizes):
    rng = np.random.default_rng(3)
    model = MLP(sizes, hidden=hidden, output=output)
    params = model.init_params(rng)
    params = [p + 0.3 * rng.standard_normal(p.shape) for p in params]   # nonzero biases too
    X = rng.standard_normal((7, sizes[0]))
    if output == "softmax":
        T = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 7)]
    else:
        T = rng.random((7, sizes[-1]))
    loss, grads = model.loss_and_grads(params, X, T)
    assert loss == pytest.approx(model.loss(params, X, T), rel=1e-15)
    numeric = finite_difference_grads(model, params, X, T)
    for k, (g, fd) in enumerate(zip(grads, numeric)):
        assert g.shape == fd.shape
        assert g.dtype == np.float64
        relative = np.linalg.norm(g - fd) / (np.linalg.norm(g) + np.linalg.norm(fd))
        assert relative < 1e-6, f"params[{k}]: relative error {relative:.2e}"


def test_float32_model_keeps_its_dtype():
    model = MLP([2, 4, 2], dtype=np.float32)
    params = model.init_params(np.random.default_rng(0))
    loss, grads = model.loss_and_grads(params, np.ones((3, 2)), np.eye(2)[[0, 1, 0]])
    assert all(p.dtype == np.float32 for p in params)
    assert all(g.dtype == np.float32 for g in grads)
    assert np.isfinite(loss)


def test_softmax_is_stable_for_large_logits():
    model = MLP([1, 2], output="softmax")
    params = [np.array([[1000.0, -1000.0]]), np.zeros(2)]
    loss, grads = model.loss_and_grads(params, np.ones((1, 1)), np.array([[0.0, 1.0]]))
    assert loss == pytest.approx(2000.0)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_mlp_rejects_bad_configuration():
    with pytest.raises(ValueError, match="hidden must be one of"):
        MLP([2, 2], hidden="relu")
    with pytest.raises(ValueError, match="output must be one of"):
        MLP([2, 2], output="hinge")
    with pytest.raises(ValueError, match="at least an input and an output"):
        MLP([2])
    model = MLP([2, 3, 2])
    with pytest.raises(ValueError,
                       match=r"expects parameter shapes \[\(2, 3\), \(3,\), \(3, 2\), \(2,\)\]"):
        model.loss([np.zeros((2, 3)), np.zeros(3)], np.zeros((1, 2)), np.zeros((1, 2)))


# ----------------------------------------------------------------------- data
def test_two_spirals_follows_its_definition():
    data = two_spirals()
    assert data.X.shape == (194, 2)
    assert list(data.T.sum(axis=0)) == [97, 97]
    first, second = data.X[:97], data.X[97:]
    np.testing.assert_array_equal(second, -first)               # point reflection
    assert tuple(first[0]) == (0.0, 6.5)                          # angle 0, radius 6.5
    i = 96
    angle, radius = i * np.pi / 16, 6.5 * (104 - i) / 104
    np.testing.assert_allclose(first[i], [radius * np.sin(angle), radius * np.cos(angle)],
                               rtol=1e-15)
    assert np.all(np.diff(np.hypot(*first.T)) < 0)                # radius shrinks inward
    assert two_spirals(density=2).X.shape == (386, 2)
    assert np.abs(two_spirals(scale=True).X).max() == pytest.approx(1.0)


def test_encoder_is_identity_on_one_hot_patterns():
    data = encoder(8)
    np.testing.assert_array_equal(data.X, np.eye(8))
    np.testing.assert_array_equal(data.T, np.eye(8))


# ------------------------------------------------------------- demo internals
def small_problem():
    return problems.Problem("encoder 4-2-4", encoder(4), MLP([4, 2, 4], hidden="sigmoid"), epochs=6,
                            target_loss=0.5, batch_size=2,
                            optimizers=problems.lineup(0.5, 0.1, 0.3, 0.01, 0.05, 0.05, 0.3))


@pytest.mark.parametrize("index", range(12))
def test_training_run_and_its_replays(index):
    """Every optimizer of the demo trains (mini-batches for the gradient
    methods, the full batch for Rprop and Quickprop), and the NumPy replay of
    its steps ends where the fastopt replay does."""
    problem = small_problem()
    spec = problem.optimizers[index]
    result = training.train(problem, spec, seed=0, epochs=problem.epochs)
    assert result.steps == problem.epochs * (1 if spec.full_batch else 2)
    assert len(result.losses) == problem.epochs + 1
    assert np.all(np.isfinite(result.losses))
    assert result.final_loss == pytest.approx(problem.model.loss(result.params, problem.data.X,
                                                                 problem.data.T), rel=1e-15)
    assert result.replay_max_diff <= 1e-12 * max(np.abs(p).max() for p in result.params)
    assert min(result.replay_optim_seconds, result.replay_functional_seconds,
               result.replay_numpy_seconds) > 0


def test_kernel_stepper_reproduces_each_optimizer():
    problem = small_problem()
    X, T = problem.data.X, problem.data.T
    for spec in problem.optimizers:
        initial = problem.model.init_params(np.random.default_rng(1))
        by_class = [p.copy() for p in initial]
        opt = spec.make(by_class)
        by_kernels = {m: [p.copy() for p in initial]
                      for m in (fastopt.functional, fastopt.reference)}
        steppers = {m: training.kernel_stepper(spec.make([p.copy() for p in initial]), ps, m)
                    for m, ps in by_kernels.items()}
        for _ in range(8):
            loss, grads = problem.model.loss_and_grads(by_class, X, T)
            opt.step(grads, loss=loss)
            for step in steppers.values():
                step(grads, loss)
        for m, ps in by_kernels.items():
            for a, b in zip(by_class, ps):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15,
                                           err_msg=f"{spec.label} {m.__name__}")


def test_gradient_descent_zigzags_on_the_quadratic():
    gd = surfaces.walk(surfaces.QUADRATIC, surfaces.walkers(surfaces.QUADRATIC)[0])
    stiff = np.array([-0.5, np.sqrt(3) / 2])          # the eigenvalue-25 direction
    across = gd.path[:20] @ stiff
    assert np.all(np.sign(across[1:]) == -np.sign(across[:-1])), "no zig-zag across the valley"
    nesterov = surfaces.walk(surfaces.QUADRATIC, surfaces.walkers(surfaces.QUADRATIC)[2])
    assert nesterov.reached is not None


def test_lbfgs_adapter(monkeypatch):
    """L-BFGS is drawn when fastopt has a scipy-like minimize, skipped without
    one, and an unexpected API is reported instead of crashing the demo."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    monkeypatch.delattr(fastopt, "minimize", raising=False)
    monkeypatch.delattr(fastopt.optim, "LBFGS", raising=False)
    assert surfaces.lbfgs(surfaces.ROSENBROCK) is None

    def scipy_like(fun, x0, jac=None, callback=None):
        return scipy_optimize.minimize(fun, x0, jac=jac, method="L-BFGS-B", callback=callback)

    monkeypatch.setattr(fastopt, "minimize", scipy_like, raising=False)
    t = surfaces.lbfgs(surfaces.ROSENBROCK)
    assert t.reached is not None
    assert len(t.path) > 10
    assert t.evaluations >= len(t.path) - 1

    def other_api(fun, x0):
        raise TypeError("minimize() got an unexpected keyword argument 'jac'")

    monkeypatch.setattr(fastopt, "minimize", other_api)
    t = surfaces.lbfgs(surfaces.ROSENBROCK)
    assert "L-BFGS not drawn: TypeError" in t.note


def test_progress_bar_draws_and_erases():
    stream = io.StringIO()
    with ProgressBar(4, "training", stream=stream, enabled=True, min_interval=0) as bar:
        bar.update(2)
        assert stream.getvalue().startswith("\r[")
        assert " 50%  training" in stream.getvalue()
        bar.update(2, label="done")
        assert "100%  done" in stream.getvalue()
    assert stream.getvalue().endswith("\r")   # erased: the next line starts clean
    quiet = io.StringIO()   # not a terminal: nothing by default
    ProgressBar(3, stream=quiet).update(3)
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------- end to end
def run_demo(args):
    lines = []
    assert cli.main(args, out=lines.append) == 0
    return "\n".join(lines)


def test_demo_runs_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")   # in the test extra: the figures are part of the demo
    text = run_demo(["--quick", "--out", str(tmp_path / "figs"), "--seed", "1", "--no-progress"])
    names = [spec.label for spec in problems.lineup(*[0.1] * 7)]
    assert len(names) == 12
    for section in ("== encoder 8-3-8", "== two-spirals",
                    "trajectories on the ill-conditioned quadratic",
                    "trajectories on the Rosenbrock function"):
        assert section in text
    tables = text.split("optimizer-step time, the same steps replayed three ways:")
    for table in tables[1:]:
        rows = table.strip().splitlines()[2:14]
        assert [row.split()[0] for row in rows] == names
        assert all(row.split()[-1] == "bitwise" or float(row.split()[-1]) < 1e-10 for row in rows)
    pngs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    expected = {"loss_encoder_8_3_8.png", "loss_two_spirals.png", "regions_two_spirals.png",
                "trajectories_ill_conditioned_quadratic.png",
                "trajectories_rosenbrock_function.png"}
    assert expected <= set(pngs)
    for name in pngs:
        assert name in text
        assert (tmp_path / "figs" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def hide_modules(monkeypatch, *names):
    """Make ``import name`` (and of its submodules) raise ImportError, as if not installed."""
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in names:
            monkeypatch.setitem(sys.modules, loaded, None)
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_demo_without_optional_dependencies(tmp_path, monkeypatch):
    """No scikit-learn: digits is skipped; no matplotlib: tables, no figures."""
    hide_modules(monkeypatch, "sklearn", "matplotlib")
    monkeypatch.setattr(cli, "problems", lambda quick: [small_problem()])
    text = run_demo(["--quick", "--out", str(tmp_path / "figs"), "--no-progress"])
    assert "no figures: matplotlib is not installed" in text
    assert not (tmp_path / "figs").exists()
    assert "== encoder 4-2-4" in text


def test_digits_skipped_without_sklearn(monkeypatch):
    hide_modules(monkeypatch, "sklearn")
    assert [p.name for p in problems.problems(quick=True)] == ["encoder 8-3-8", "two-spirals"]


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "fastopt.demo", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "--quick" in result.stdout
    assert "--out DIR" in result.stdout


def test_held_out_split_is_fixed_and_disjoint():
    data = two_spirals()
    train_part, test_part = problems.split(data, test_fraction=0.25)
    again, _ = problems.split(data, test_fraction=0.25)
    assert len(train_part) == 146
    assert len(test_part) == 48
    np.testing.assert_array_equal(train_part.X, again.X)
    rows = {tuple(x) for x in np.concatenate([train_part.X, test_part.X])}
    assert rows == {tuple(x) for x in data.X}
