"""Tests that run under MPI: ``mpiexec -n 4 python -m pytest tests/mpi`` (see
.ci/run). Every rank runs every test; collectives inside a test pair up
across ranks. A test that fails on one rank aborts the whole job (the other
ranks would otherwise wait forever in the test's next collective)."""

import shutil
import subprocess
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


@pytest.fixture
def on_two_ranks(comm, request):
    """For tests about ranks that disagree: on one rank (the plain suite), runs
    the test itself under ``mpiexec -n 2`` and returns True (the test is done
    when that job passes); on two or more ranks, returns False."""
    if comm.size > 1:
        return False
    mpiexec = shutil.which("mpiexec")
    assert mpiexec, "mpiexec not found: the test extras install mpich, which brings it"
    job = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py", "-m", "pytest", "-q",
                          "-p", "no:cacheprovider", request.node.nodeid], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert job.returncode == 0, job.stdout + job.stderr
    assert "1 passed" in job.stdout
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and MPI.COMM_WORLD.size > 1:
        rank = MPI.COMM_WORLD.rank
        sys.stderr.write(f"\n[rank {rank}] {item.nodeid} failed:\n{report.longreprtext}\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
