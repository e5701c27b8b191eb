"""Many parameter arrays as views of one contiguous buffer.

A model's parameters are usually many arrays of mixed sizes. Laying them out
in one flat array lets one kernel pass cover the whole model with long,
aligned vector loops, and the optimizer's state (created like the
parameter) is then flat too::

    params = fastopt.FlatBuffer.from_arrays([W1, b1, W2, b2])  # copies the values in
    W1, b1, W2, b2 = params.views                              # use these from now on
    grads = params.zeros_like()                                # same layout for gradients
    opt = fastopt.Adam([params.flat], lr=1e-3)
    ...
    np.dot(x.T, delta, out=grads.views[0])                     # write gradients into the views
    opt.step([grads.flat])                                     # one pass over everything

Each view starts on a 64-byte boundary (a cache line, and a whole AVX-512
vector); the gaps between views are padding that stays zero as long as the
gradient's padding is zero (``zeros_like`` makes it so, and writing through
the views never touches it): every fastopt optimizer leaves a zero parameter
with a zero gradient at zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["FlatBuffer"]

ALIGN_BYTES = 64


class FlatBuffer:
    """Arrays of the given shapes as C-contiguous views of one 1-D array.

    Attributes:
        flat: the whole buffer (views and zero padding), 1-D, C-contiguous.
        views: one array per shape, each a view into ``flat``.
        offsets: where each view starts in ``flat`` (elements).
    """

    def __init__(self, shapes: Iterable[Sequence[int]], dtype=np.float32, align_bytes: int = ALIGN_BYTES):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        if align_bytes < self.dtype.itemsize or align_bytes % self.dtype.itemsize:
            raise ValueError(f"align_bytes must be a multiple of the item size, got {align_bytes}")
        self.shapes: list[tuple[int, ...]] = [tuple(int(d) for d in s) for s in shapes]
        self.align_bytes = align_bytes
        step = align_bytes // self.dtype.itemsize
        self.offsets: list[int] = []
        end = 0
        for shape in self.shapes:
            start = -(-end // step) * step  # round up to the alignment
            self.offsets.append(start)
            end = start + int(np.prod(shape, dtype=np.int64))
        self.flat = self._aligned_zeros(end)
        self.views = [self.flat[o:o + int(np.prod(s, dtype=np.int64))].reshape(s)
                      for o, s in zip(self.offsets, self.shapes)]

    def _aligned_zeros(self, n: int) -> np.ndarray:
        """n zeros whose first element sits on an align_bytes boundary."""
        extra = self.align_bytes // self.dtype.itemsize
        raw = np.zeros(n + extra, dtype=self.dtype)
        shift = (-raw.ctypes.data % self.align_bytes) // self.dtype.itemsize
        return raw[shift:shift + n]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], dtype=None, align_bytes: int = ALIGN_BYTES) -> FlatBuffer:
        """A buffer holding copies of `arrays` (dtype: theirs, which must agree, unless given)."""
        arrays = list(arrays)
        if dtype is None:
            dtypes = {np.asarray(a).dtype for a in arrays}
            if len(dtypes) != 1:
                raise TypeError(f"arrays have several dtypes {sorted(map(str, dtypes))}; pass dtype=")
            dtype = dtypes.pop()
        buffer = cls([np.shape(a) for a in arrays], dtype=dtype, align_bytes=align_bytes)
        for view, a in zip(buffer.views, arrays):
            view[...] = a
        return buffer

    def zeros_like(self) -> FlatBuffer:
        """A zero buffer with the same layout (for gradients or state)."""
        return FlatBuffer(self.shapes, dtype=self.dtype, align_bytes=self.align_bytes)

    def __len__(self) -> int:
        return len(self.views)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.views)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.views[index]

    def __repr__(self) -> str:
        return (f"FlatBuffer({len(self.views)} arrays, {self.flat.size} elements incl. padding, "
                f"{self.dtype.name})")
