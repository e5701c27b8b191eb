"""Make the project root importable (tests import the `bench` package), so the
suite also runs against an installed wheel from any working directory. The
root holds no `fastopt` package, so the installed one is always the one tested."""

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(params=__import__("fastopt")._core.supported_targets())
def target(request):
    """Runs a test once per SIMD target this CPU supports, with that target's kernels."""
    from fastopt import _core

    previous = _core.kernel_target()
    _core.select_target(request.param)
    yield request.param
    _core.select_target(previous)
