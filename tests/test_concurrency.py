"""Python threads: separate optimizers (and separate fastopt.minimize runs)
in parallel give the results of running them one after another; one
optimizer stepped from two threads is serialized, never torn."""

from __future__ import annotations

import threading

import numpy as np

import fastopt
from fastopt import optim

N = 200_003  # above the size where the kernels release the GIL
STEPS = 20


def run_in_threads(jobs):
    """Runs every job at once, each in its own thread, started together."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def worker(k, job):
        barrier.wait()
        try:
            results[k] = job()
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k, job)) for k, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def training_job(make_optimizer, seed: int):
    def job():
        rng = np.random.default_rng(seed)
        p = rng.standard_normal(N).astype(np.float32)
        opt = make_optimizer([p])
        for _ in range(STEPS):
            opt.step([(0.5 * p + rng.standard_normal(N)).astype(np.float32)])
        return p, opt.state_dict()
    return job


MAKERS = [
    lambda ps: optim.Adam(ps, lr=1e-2),
    lambda ps: optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
    lambda ps: optim.RMSprop(ps, lr=1e-3, centered=True),
    lambda ps: optim.Lion(ps, lr=1e-3, weight_decay=0.1),
    lambda ps: optim.Adafactor(ps),
    lambda ps: optim.LAMB(ps, lr=1e-2),
]


def assert_same_runs(a, b):
    (p_a, state_a), (p_b, state_b) = a, b
    np.testing.assert_array_equal(p_a, p_b)
    for key, value in state_a["state"][0].items():
        np.testing.assert_array_equal(value, state_b["state"][0][key], err_msg=key)


def test_separate_optimizers_in_threads_equal_one_after_another():
    jobs = [training_job(make, seed) for seed, make in enumerate(MAKERS)]
    alone = [job() for job in jobs]
    together = run_in_threads(jobs)
    for a, b in zip(alone, together):
        assert_same_runs(a, b)


def test_one_optimizer_stepped_from_two_threads_is_serialized():
    """Two threads each take 25 steps of one Adam with the same gradient: the
    result is bitwise 50 steps in a row. Interleaved kernels writing the same
    moments, or a lost update of the step count, would show."""
    g = np.linspace(-1.0, 1.0, N).astype(np.float32)

    def fresh():
        p = np.zeros(N, np.float32)
        return p, optim.Adam([p], lr=1e-3)

    p_seq, seq = fresh()
    for _ in range(50):
        seq.step([g])
    p_par, par = fresh()

    def steps():
        for _ in range(25):
            par.step([g])

    run_in_threads([steps, steps])
    assert par.state[0]["step"] == 50
    np.testing.assert_array_equal(p_par, p_seq)
    np.testing.assert_array_equal(par.state[0]["exp_avg_sq"], seq.state[0]["exp_avg_sq"])


def test_state_dict_read_during_steps_is_never_torn():
    """Every state dict read while another thread steps is the state after
    some whole number of steps: its moments are those of that step count."""
    g = np.linspace(-1.0, 1.0, N).astype(np.float32)
    p_ref = np.zeros(N, np.float32)
    ref = optim.Adam([p_ref], lr=1e-3)
    expected = {0: np.zeros(N, np.float32)}
    for k in range(1, 31):
        ref.step([g])
        expected[k] = ref.state[0]["exp_avg_sq"].copy()
    p = np.zeros(N, np.float32)
    opt = optim.Adam([p], lr=1e-3)
    done = threading.Event()
    snapshots = []

    def stepper():
        for _ in range(30):
            opt.step([g])
        done.set()

    def reader():
        while not done.is_set():
            snapshots.append(opt.state_dict())

    run_in_threads([stepper, reader])
    assert snapshots
    for sd in snapshots:
        state = sd["state"].get(0)
        if state is None:
            continue
        np.testing.assert_array_equal(state["exp_avg_sq"], expected[int(state["step"])])


def rosenbrock(shift):
    def fun(x):
        d = x - shift
        f = np.sum(100.0 * (d[1:] - d[:-1] ** 2) ** 2 + (1.0 - d[:-1]) ** 2)
        g = np.zeros_like(x)
        g[:-1] = -400.0 * d[:-1] * (d[1:] - d[:-1] ** 2) - 2.0 * (1.0 - d[:-1])
        g[1:] += 200.0 * (d[1:] - d[:-1] ** 2)
        return f, g
    return fun


def test_minimize_runs_in_threads_as_one_after_another():
    jobs = [lambda s=s: fastopt.minimize(rosenbrock(0.1 * s), np.full(40, -1.0)) for s in range(4)]
    alone = [job() for job in jobs]
    together = run_in_threads(jobs)
    for a, b in zip(alone, together):
        assert a.success
        np.testing.assert_array_equal(a.x, b.x)
        assert (a.fun, a.nit, a.nfev) == (b.fun, b.nit, b.nfev)
