"""Runtime SIMD dispatch: every target this CPU supports computes the same
bits as the NumPy reference, and no code outside a target's own namespace
uses instructions the baseline CPU may lack."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import _core
from registry import CASE_IDS, CASES, DTYPES, NoisyQuadratic, run

SUPPORTED = _core.supported_targets()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_target_matches_reference_bitwise(target, case, dtype):
    for size in (1, 17, 1023, fastopt._core.PARALLEL_GRAIN + 77):
        problem = NoisyQuadratic(size, 20, seed=size)
        p_fast, state_fast = run(case, case.functional, problem, dtype, 20)
        p_ref, state_ref = run(case, case.reference, problem, dtype, 20)
        np.testing.assert_array_equal(p_fast, p_ref)
        for a, b in zip(state_fast, state_ref):
            np.testing.assert_array_equal(a, b)


def test_best_supported_target_is_default():
    code = "from fastopt import _core; print(_core.kernel_target())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items() if k != "FASTOPT_TARGET"})
    assert out.stdout.strip() == SUPPORTED[-1]


@pytest.mark.parametrize("name", SUPPORTED)
def test_environment_variable_forces_a_target(name):
    code = "import fastopt; print(fastopt.runtime_info()['simd_target'])"
    env = dict(__import__("os").environ, FASTOPT_TARGET=name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == name


def test_unknown_or_unsupported_target_is_refused():
    with pytest.raises(ValueError, match="unknown SIMD target"):
        _core.select_target("avx1024")
    env = dict(__import__("os").environ, FASTOPT_TARGET="avx1024")
    out = subprocess.run([sys.executable, "-c", "import fastopt"], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "unknown SIMD target 'avx1024'" in out.stderr
    for name in set(_core.compiled_targets()) - set(SUPPORTED):
        with pytest.raises(ValueError, match="cannot run"):
            _core.select_target(name)


def test_show_runtime_reports_targets_and_threads(capsys):
    fastopt.show_runtime()
    out = capsys.readouterr().out
    for word in ("simd_target", "compiled_targets", "openmp", "num_threads"):
        assert word in out


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
@pytest.mark.skipif(not re.match(r"x86_64|AMD64", __import__("platform").machine()), reason="x86-64 only")
def test_only_target_code_uses_wide_instructions():
    """Inline code shared between translation units must not be compiled with
    a target's flags: the linker could hand that copy to baseline callers."""
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", _core.__file__],
                             capture_output=True, text=True, check=True).stdout
    allowed = re.compile(r"::(avx2|avx512)::")  # run only after the CPU check
    vex_or_evex = re.compile(r"^\s*[0-9a-f]+:\s+v[a-z0-9]+\s|%[yz]mm\d")
    offenders, function = set(), None
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            function = header.group(1)
        elif function and vex_or_evex.search(line) and not allowed.search(function):
            offenders.add(function)
    assert not offenders, sorted(offenders)[:10]


def test_lbfgs_runs_on_every_target(target):
    """The L-BFGS passes' inner loops come from the same per-target table."""
    def rosenbrock(x):  # extended (pairwise) Rosenbrock
        a, b = x[0::2], x[1::2]
        f = np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)
        g = np.empty_like(x)
        g[0::2] = -400 * a * (b - a * a) - 2 * (1 - a)
        g[1::2] = 200 * (b - a * a)
        return f, g

    x0 = np.tile([-1.2, 1.0], 20_000)  # above the parallel grain
    result = fastopt.minimize(rosenbrock, x0, options=dict(gtol=1e-6))
    assert result.success
    assert np.max(np.abs(result.x - 1)) < 1e-5


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _cmake_kernel_flags():
    """Per-target compile flags of the kernel objects, read from CMakeLists.txt
    (so this test follows the build): {target: [flags]} plus the common ones."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    common = re.search(r"PRIVATE (-fno-math-errno[^)]*)\)", cmake).group(1).split()
    targets = {"baseline": []}
    for name, flags in re.findall(r"set\(FASTOPT_FLAGS_(\w+) (-m[^)]*)\)", cmake):
        targets[name] = flags.split()
    return common, targets


@pytest.mark.skipif(shutil.which("g++") is None or not (ROOT / "csrc").is_dir(),
                    reason="needs g++ and the source tree")
@pytest.mark.skipif(not re.match(r"x86_64|AMD64", __import__("platform").machine()), reason="x86-64 flags")
def test_every_optimizer_loop_vectorizes_on_every_target(tmp_path):
    """GCC's own report (-fopt-info-vec-missed) on the per-target translation
    units (csrc/core/instantiate.cpp: every optimizer; csrc/lbfgs/instantiate.cpp)
    with the build's flags: no element loop stays scalar on any target, in any
    instantiation (statistics on/off, regularization on/off, every variant).
    Element loops are the one loop of simd/elementwise.hpp that runs every
    elementwise rule, and each loop under `#pragma omp simd` in
    csrc/optimizers/ (per-array passes); loops that walk tensors, chunks or
    rows are not meant to vectorize. A loop-invariant test in a kernel loop
    (coupled L2 on/off, Nesterov) once let GCC's loop unswitching leave
    SGD/Adagrad/RMSprop with stats=True scalar, 4-9x slower. The L-BFGS chunk
    loops are checked on the AVX2/AVX-512 targets (on SSE2, GCC leaves the two
    float32 single-sum loops scalar: d'g and the slope, a small part of a pass)."""
    common, targets = _cmake_kernel_flags()
    # The optimizer list CMake generates from csrc/optimizers/.
    generated = tmp_path / "generated"
    generated.mkdir()
    headers = sorted(p.name for p in (ROOT / "csrc" / "optimizers").glob("*.hpp"))
    (generated / "fastopt_optimizers.inc").write_text("".join(f'#include "optimizers/{h}"\n' for h in headers))
    # Loops meant to vectorize: the optimizers' element loop (for_each_element
    # in simd/elementwise.hpp runs every rule), the loops of csrc/optimizers/
    # (per-array passes), and the L-BFGS chunks; not the loops that walk the
    # tensors of a batch.
    header = (ROOT / "csrc" / "simd" / "elementwise.hpp").read_text().splitlines()
    element_loop = next(number for number, line in enumerate(header, 1) if "step(T{}, k," in line)
    simd_loops = [f"csrc/simd/elementwise.hpp:{element_loop}:"]
    for path in sorted((ROOT / "csrc" / "optimizers").glob("*.hpp")):
        lines = path.read_text().splitlines()
        simd_loops += [f"csrc/optimizers/{path.name}:{number + 1}:" for number, line in enumerate(lines, 1)
                       if line.strip().startswith("#pragma omp simd") and lines[number].lstrip().startswith("for")]
    jobs = {}
    for name, flags in targets.items():
        for unit in ("core", "lbfgs"):
            command = ["g++", "-std=c++17", "-O3", "-fopenmp", "-DFASTOPT_HAVE_OPENMP=1", *common,
                       f"-DFASTOPT_TARGET_NAME={name}", *flags, f"-I{ROOT / 'csrc'}", f"-I{generated}", "-c",
                       str(ROOT / "csrc" / unit / "instantiate.cpp"), "-o", str(tmp_path / f"{name}-{unit}.o"),
                       "-fopt-info-vec-missed"]
            jobs[name, unit] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scalar = {}
    for (name, unit), job in jobs.items():
        _, report = job.communicate(timeout=600)
        assert job.returncode == 0, report[-2000:]
        checked = "|".join(map(re.escape, simd_loops)) + ("" if name == "baseline" else r"|csrc/lbfgs/")
        missed = {line.split(": missed")[0] for line in report.splitlines()
                  if "couldn't vectorize loop" in line and re.search(checked, line)}
        if missed:
            scalar[name, unit] = sorted(missed)
    assert not scalar, scalar
    assert set(targets) >= {"baseline", "avx2", "avx512"}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_global_norms_and_clipped_steps_are_bitwise_equal_across_targets(dtype):
    """The global gradient norm (which sets the clipping factor, so every
    parameter of a clipped step) adds in an order fixed by the data: the same
    bits on every target, not a sum grouped by the vector width."""
    rng = np.random.default_rng(5)
    sizes = (1, 17, 1023, fastopt._core.PARALLEL_GRAIN + 77)
    grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
    start = [rng.standard_normal(n).astype(dtype) for n in sizes]
    previous = _core.kernel_target()
    results = {}
    try:
        for name in SUPPORTED:
            _core.select_target(name)
            norms = [fastopt.global_grad_norm(grads, norm_type) for norm_type in (1.0, 2.0, float("inf"))]
            params = [p.copy() for p in start]
            opt = fastopt.optim.Adam(params, lr=1e-2, max_grad_norm=0.5)
            for _ in range(5):
                opt.step(grads)
            results[name] = (norms, params)
    finally:
        _core.select_target(previous)
    first_norms, first_params = results[SUPPORTED[0]]
    for name, (norms, params) in results.items():
        assert norms == first_norms, name
        for a, b in zip(params, first_params):
            np.testing.assert_array_equal(a, b, err_msg=name)
