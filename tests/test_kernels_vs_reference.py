"""Every kernel x dtype x size x configuration agrees with fastopt.reference
over 50 steps, and a list of arrays in one call equals one call per array."""

import numpy as np
import pytest

from registry import ATOL, CASE_IDS, CASES, DTYPES, RTOL, SIZES, NoisyQuadratic, run

STEPS = 50


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference(case, dtype, size):
    problem = NoisyQuadratic(size, STEPS, seed=size)
    p_fast, state_fast = run(case, case.functional, problem, dtype, STEPS)
    p_ref, state_ref = run(case, case.reference, problem, dtype, STEPS)
    assert p_fast.dtype == dtype
    np.testing.assert_allclose(p_fast, p_ref, rtol=RTOL[dtype], atol=ATOL[dtype])
    for name, a, b in zip(case.state, state_fast, state_ref):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=name)
    if size:
        assert not np.array_equal(p_fast, problem.p0.astype(dtype)), "the kernel did not move p"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_list_call_equals_per_array_calls(case, dtype):
    """Many arrays of odd sizes in ONE call give bitwise the per-array results."""
    sizes = [1, 17, 0, 1023, 5000, 40000]
    problems = [NoisyQuadratic(n, 10, seed=k) for k, n in enumerate(sizes)]
    ps = [pr.p0.astype(dtype) for pr in problems]
    states = [case.new_state(p.shape, dtype) for p in ps]
    singles = [p.copy() for p in ps]
    single_states = [[None if s is None else s.copy() for s in st] for st in states]
    for t in range(1, 11):
        grads = [pr.grad(p, t) for pr, p in zip(problems, ps)]
        by_role = [list(role) for role in zip(*states)] if case.state else []
        case.functional(ps, grads, *by_role, **case.kwargs(t, problems[0].losses))
        for pr, p, st in zip(problems, singles, single_states):
            case.functional(p, pr.grad(p, t), *st, **case.kwargs(t, problems[0].losses))
    for a, b in zip(ps, singles):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bitwise_identical_for_any_thread_count(case):
    size = 3 * 65536 + 123  # several partitions per thread
    problem = NoisyQuadratic(size, 5, seed=1)
    results = [run(case, case.functional, problem, np.float32, 5, num_threads=n)[0] for n in (1, 2, 3, 7)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bitwise_equal_to_reference(case, dtype):
    """Stronger than the documented tolerance: the kernels compute each element
    with the reference's operations, in its order, without FMA contraction, so
    on IEEE hardware the results are identical."""
    problem = NoisyQuadratic(1023, STEPS, seed=7)
    p_fast, _ = run(case, case.functional, problem, dtype, STEPS)
    p_ref, _ = run(case, case.reference, problem, dtype, STEPS)
    np.testing.assert_array_equal(p_fast, p_ref)
