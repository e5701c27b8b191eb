"""A one-line text progress bar on stderr (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``[#####.....]  50%  label  12s, ~12s left``, redrawn in place with ``\\r``.

    Enabled by default only when the stream is a terminal, so logs and test
    output stay clean. Redraws at most every ``min_interval`` seconds: a bar
    updated once per training epoch must not cost more than the epoch.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 28, min_interval: float = 0.1):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._drawn_length = 0

    def update(self, n: int = 1, label: str | None = None) -> None:
        self.done = min(self.done + n, self.total)
        if label is not None:
            self.label = label
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw >= self.min_interval or self.done == self.total):
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        fraction = self.done / self.total
        filled = int(round(fraction * self.width))
        elapsed = now - self._start
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {100 * fraction:3.0f}%  {self.label}  {elapsed:.0f}s"
        if 0 < fraction < 1:
            text += f", ~{elapsed / fraction - elapsed:.0f}s left"
        return text

    def _draw(self, now: float) -> None:
        text = self.render(now)
        # Pad with spaces to wipe what a longer previous line left behind.
        self.stream.write("\r" + text.ljust(self._drawn_length))
        self.stream.flush()
        self._drawn_length = len(text)
        self._last_draw = now

    def close(self) -> None:
        """Erase the bar, leaving the line free for the next output."""
        if self.enabled and self._drawn_length:
            self.stream.write("\r" + " " * self._drawn_length + "\r")
            self.stream.flush()
            self._drawn_length = 0

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
