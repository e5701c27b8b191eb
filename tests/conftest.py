"""Make the project root importable (tests import the `bench` package), so the
suite also runs against an installed wheel from any working directory. The
root holds no `fastopt` package, so the installed one is always the one tested."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
