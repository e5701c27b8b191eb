"""Kernels release the GIL (above a small size): another Python thread keeps
running while a long step runs."""

import sys
import threading
import time

import numpy as np

from fastopt import functional as F


def test_another_thread_runs_during_a_long_step():
    n = 20_000_000
    p, g = np.ones(n, np.float32), np.full(n, 1e-3, np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    F.adam_(p, g, m, v, step=1, num_threads=1)  # page the buffers in
    calls = []  # (start, end) of each step, timed in the worker

    def steps():
        for t in range(2, 6):
            begin = time.perf_counter()
            F.adam_(p, g, m, v, step=t, num_threads=1)
            calls.append((begin, time.perf_counter()))

    worker = threading.Thread(target=steps)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    ticks = np.array(ticks)
    # Ticks of this loop well inside a step: the margins leave out the Python
    # around the kernel, where the interpreter may hand this thread the GIL for
    # up to a switch interval. Holding the GIL in the kernel, the worker would
    # allow no tick in between; released, this thread runs on through every
    # step (thousands of ticks; a pause of the shared machine's scheduler does
    # not drop them to 100).
    margin = 2 * sys.getswitchinterval() + 1e-3
    inside = sum(int(((ticks > begin + margin) & (ticks < end - margin)).sum()) for begin, end in calls)
    assert inside >= 100, (inside, [end - begin for begin, end in calls])
