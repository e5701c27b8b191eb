"""Thread control: per call, process-wide, OMP_NUM_THREADS and threadpoolctl.
(Bitwise identity across thread counts is in test_kernels_vs_reference.)"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import _core
from fastopt import functional as F

pytestmark = pytest.mark.skipif(not _core.OPENMP, reason="built without OpenMP")
BIG = 4 * _core.PARALLEL_GRAIN


def sgd_call(n, **kw):
    p, g = np.ones(n, np.float32), np.ones(n, np.float32)
    F.sgd_(p, g, step=1, lr=0.1, **kw)
    return fastopt.last_call_threads()


def test_no_parallel_region_below_the_grain():
    assert sgd_call(_core.PARALLEL_GRAIN - 1, num_threads=2) == 1


def test_num_threads_per_call():
    assert sgd_call(BIG, num_threads=1) == 1
    assert sgd_call(BIG, num_threads=2) == 2


def test_set_num_threads_is_process_wide_and_resettable():
    default = fastopt.get_num_threads()
    try:
        fastopt.set_num_threads(1)
        assert fastopt.get_num_threads() == 1
        assert sgd_call(BIG) == 1
        assert sgd_call(BIG, num_threads=2) == 2  # an explicit argument wins
    finally:
        fastopt.set_num_threads(0)
    assert fastopt.get_num_threads() == default
    with pytest.raises(ValueError, match="n must be >= 0"):
        fastopt.set_num_threads(-1)


def test_omp_num_threads_is_honoured():
    code = ("import numpy as np, fastopt; p = np.ones(1 << 20); "
            "fastopt.functional.sgd_(p, p.copy(), step=1, lr=1.0); "
            "print(fastopt.get_num_threads(), fastopt.last_call_threads())")
    for n in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env=dict(os.environ, OMP_NUM_THREADS=n))
        assert out.stdout.split() == [n, n]


def test_threadpoolctl_sees_and_limits_the_openmp_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pools = [d for d in threadpoolctl.threadpool_info() if d["user_api"] == "openmp"]
    assert pools, "threadpoolctl does not see fastopt's OpenMP runtime"
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert sgd_call(BIG) == 1
    assert sgd_call(BIG) == min(4, fastopt.get_num_threads())  # BIG spans 4 grains
