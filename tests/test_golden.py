"""Every digest of tests/data/golden_digests.json (taken before the
one-optimizer-one-place rebuild) is reproduced bitwise by today's code: the
functional registry cases and the classes. The size-1023 registry cases and
the class cases also run once per SIMD target this CPU supports.

The digests do not depend on the thread count (tests/test_threads.py), so
the runs use one thread: on a loaded machine OpenMP's waiting threads make
the 40000-element runs ten times slower. One 40000-element case per
optimizer also runs with the default threads, for the parallel path."""

import pytest

import fastopt
import golden

GOLDEN = golden.load()
REGISTRY_KEYS = sorted(k for k in GOLDEN if golden.parse_key(k)[0] == "registry")
CLASS_KEYS = sorted(k for k in GOLDEN if golden.parse_key(k)[0] == "class")
TARGET_SIZE = 1023
TARGET_KEYS = [k for k in REGISTRY_KEYS if golden.parse_key(k)[3] == TARGET_SIZE]
# One configuration per optimizer (the first by name), float64, 40000 elements (above the
# parallel grain, so the kernels run on several threads).
THREADED_KEYS = sorted({k.split("-")[0]: k for k in reversed(REGISTRY_KEYS)
                        if k.endswith("/float64/40000")}.values())


def test_golden_file_is_complete():
    """The file holds at least what was committed (42 registry configurations
    x 2 dtypes x 3 sizes, 7 classes x 2 dtypes), each configuration in every
    dtype and size, and every one of its cases still exists."""
    assert len(REGISTRY_KEYS) >= 252
    assert len(CLASS_KEYS) >= 14
    case_ids = {golden.parse_key(k)[1] for k in REGISTRY_KEYS}
    for case_id in case_ids:
        golden.case_by_id(case_id)  # the registry still has the case
        for key, _, _, _ in golden.registry_keys():
            if key.startswith(case_id + "/"):
                assert key in GOLDEN
    assert {golden.parse_key(k)[1] for k in CLASS_KEYS} <= set(golden.CLASS_CASES)


@pytest.fixture
def one_thread():
    fastopt.set_num_threads(1)
    yield
    fastopt.set_num_threads(0)


@pytest.mark.parametrize("key", REGISTRY_KEYS)
def test_registry_digest(key, one_thread):
    assert golden.digest(key) == GOLDEN[key]


@pytest.mark.parametrize("key", THREADED_KEYS)
def test_registry_digest_with_default_threads(key):
    assert fastopt.get_num_threads() >= 1
    assert golden.digest(key) == GOLDEN[key]


@pytest.mark.parametrize("key", TARGET_KEYS)
def test_registry_digest_on_every_target(key, target, one_thread):
    assert golden.digest(key) == GOLDEN[key], f"target {target}"


@pytest.mark.parametrize("key", CLASS_KEYS)
def test_class_digest_on_every_target(key, target, one_thread):
    assert golden.digest(key) == GOLDEN[key], f"target {target}"
