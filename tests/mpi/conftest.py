"""Tests that run under MPI: ``mpiexec -n 4 python -m pytest tests/mpi`` (see
.ci/run). Every rank runs every test; collectives inside a test pair up
across ranks. A test that fails on one rank aborts the whole job (the other
ranks would otherwise wait forever in the test's next collective)."""

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MPI = pytest.importorskip("mpi4py.MPI")


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and MPI.COMM_WORLD.size > 1:
        rank = MPI.COMM_WORLD.rank
        sys.stderr.write(f"\n[rank {rank}] {item.nodeid} failed:\n{report.longreprtext}\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
