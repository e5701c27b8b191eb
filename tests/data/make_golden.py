"""Rewrites golden_digests.json: the digests of every registry configuration
and class case after 50 steps (computed by tests/golden.py). The committed
file was taken on the code before the one-optimizer-one-place rebuild
(commit 0e90552) and is kept for the record: tests/test_golden.py recomputes
each entry through today's API and compares. Run: python tests/data/make_golden.py"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import golden  # noqa: E402 (the tests folder joins the path just above)

if __name__ == "__main__":
    digests = golden.compute_all()
    golden.save(digests, HERE / "golden_digests.json")
    print(len(digests))
