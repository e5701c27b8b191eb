"""Timing helpers. Every figure is a median over repeats, and comparisons are
ratios between implementations measured in the same run (the machines are
shared and noisy: absolute times from different runs do not compare)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], None], *, min_sample: float = 2e-3, repeats: int = 15,
                   budget: float = 0.4) -> float:
    """Median time of one call of fn.

    Calls are batched so one sample lasts at least `min_sample` seconds (timer
    resolution and loop overhead become negligible), then up to `repeats`
    samples are taken within about `budget` seconds.
    """
    fn()  # warm up: page in buffers, settle caches and thread pools
    inner = 1
    while True:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample:
            break
        inner *= 2 if elapsed * 4 < min_sample else 1
        inner = max(inner, int(inner * min_sample / max(elapsed, 1e-9)) + 1) if elapsed > 0 else inner * 2
    samples = [elapsed / inner]
    deadline = time.perf_counter() + budget
    while len(samples) < repeats and time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"
