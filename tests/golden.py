"""Golden digests: a SHA-256 of the parameters and state after 50 steps, for
every registry configuration (functional form) and for every class case.

The digests in tests/data/golden_digests.json were taken on the code before
the one-optimizer-one-place rebuild (commit 0e90552); tests/test_golden.py
recomputes each one with the functions here and tests/data/make_golden.py
rewrites the file from them.

Keys:
    ``<case id>/<dtype>/<size>``  a registry case (``registry.CASES``), run through its
                                  functional form on ``NoisyQuadratic(size, 50, seed=size)``;
    ``class/<Class>/<dtype>``     a class of :mod:`fastopt.optim` with two param groups
                                  (:data:`CLASS_CASES`), mixed sizes, a loss at every step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np

import fastopt
from registry import CASES, DTYPES, KernelCase, NoisyQuadratic, run

GOLDEN_PATH = Path(__file__).resolve().parent / "data" / "golden_digests.json"
STEPS = 50
REGISTRY_SIZES = (33, 1023, 40000)
CLASS_SIZES = (7, 1023, 40000)

# The class API (no global-norm clipping: its norm was not target-independent
# when the digests were taken): two param groups (the second with other
# hyperparameters), mixed sizes, 50 steps, a loss for irprop+.
CLASS_CASES = {
    "SGD": (dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.02, momentum=0.5, dampening=0.1)),
    "Adagrad": (dict(lr=0.1), dict(lr=0.05, lr_decay=0.01, weight_decay=0.01)),
    "RMSprop": (dict(lr=0.01, centered=True), dict(lr=0.02, momentum=0.9)),
    "Adam": (dict(lr=0.01, amsgrad=True), dict(lr=0.02, weight_decay=0.1)),
    "AdamW": (dict(lr=0.01), dict(lr=0.02, amsgrad=True, l1=0.01)),
    "Rprop": (dict(lr=0.01, variant="irprop+"), dict(lr=0.02, variant="irprop+", etas=(0.4, 1.3))),
    "Quickprop": (dict(lr=0.05), dict(lr=0.02, momentum=0.5, mode_switch=1e-3)),
}


@cache
def problem(size: int, seed: int) -> NoisyQuadratic:
    """The (read-only) problem of a digest; cached, as building one draws 50 noise vectors."""
    return NoisyQuadratic(size, STEPS, seed=seed)


def dtype_name(dtype) -> str:
    return np.dtype(dtype).name


# ------------------------------------------------------------------- keys
def registry_key(case: KernelCase, dtype, size: int) -> str:
    return f"{case.id}/{dtype_name(dtype)}/{size}"


def class_key(name: str, dtype) -> str:
    return f"class/{name}/{dtype_name(dtype)}"


def registry_keys() -> Iterator[tuple[str, KernelCase, type, int]]:
    for case in CASES:
        for dtype in DTYPES:
            for size in REGISTRY_SIZES:
                yield registry_key(case, dtype, size), case, dtype, size


def class_keys() -> Iterator[tuple[str, str, type]]:
    for name in CLASS_CASES:
        for dtype in DTYPES:
            yield class_key(name, dtype), name, dtype


def parse_key(key: str):
    """``("class", name, dtype)`` or ``("registry", case_id, dtype, size)``."""
    parts = key.split("/")
    if parts[0] == "class":
        _, name, dtype = parts
        return "class", name, np.dtype(dtype).type
    case_id, dtype, size = parts
    return "registry", case_id, np.dtype(dtype).type, int(size)


def case_by_id(case_id: str) -> KernelCase:
    matches = [c for c in CASES if c.id == case_id]
    if len(matches) != 1:
        raise KeyError(f"registry.CASES has {len(matches)} cases with id {case_id!r}")
    return matches[0]


# ---------------------------------------------------------------- digests
def registry_digest(case: KernelCase, dtype, size: int) -> str:
    """The parameter and the state arrays (functional argument order; a state
    passed as None adds nothing) after 50 steps of the case's functional form."""
    p, state = run(case, case.functional, problem(size, size), dtype, STEPS)
    h = hashlib.sha256(p.tobytes())
    for s in state:
        if s is not None:
            h.update(s.tobytes())
    return h.hexdigest()[:32]


def class_digest(name: str, dtype) -> str:
    """The parameters, then every parameter's state (keys sorted; arrays as
    bytes, scalars as repr) after 50 steps of the class."""
    g0, g1 = CLASS_CASES[name]
    problems = [problem(n, k) for k, n in enumerate(CLASS_SIZES)]
    ps = [pr.p0.astype(dtype) for pr in problems]
    opt = getattr(fastopt.optim, name)([{"params": ps[:2], **g0}, {"params": ps[2:], **g1}])
    for t in range(1, STEPS + 1):
        opt.step([pr.grad(p, t) for pr, p in zip(problems, ps)], loss=float(problems[0].losses[t - 1]))
    h = hashlib.sha256()
    for p in ps:
        h.update(p.tobytes())
    for i in sorted(dict.keys(opt.state)):
        for k in sorted(opt.state[i]):
            v = opt.state[i][k]
            h.update(v.tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
    return h.hexdigest()[:32]


def digest(key: str) -> str:
    """Recomputes the digest of one key of the golden file."""
    parsed = parse_key(key)
    if parsed[0] == "class":
        return class_digest(parsed[1], parsed[2])
    _, case_id, dtype, size = parsed
    return registry_digest(case_by_id(case_id), dtype, size)


def compute_all() -> dict[str, str]:
    """Every registry case and class case, with today's code."""
    out = {key: registry_digest(case, dtype, size) for key, case, dtype, size in registry_keys()}
    out.update({key: class_digest(name, dtype) for key, name, dtype in class_keys()})
    return out


def load(path: Path = GOLDEN_PATH) -> dict[str, str]:
    with open(path) as f:
        return json.load(f)


def save(digests: dict[str, str], path: Path = GOLDEN_PATH) -> None:
    with open(path, "w") as f:
        json.dump(digests, f, indent=1, sort_keys=True)
