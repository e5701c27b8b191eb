"""Benchmark data sets that need no download.

Each function returns a :class:`Dataset`: inputs ``X`` (one row per
example), targets ``T`` (one-hot rows for classification) and a name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "two_spirals", "encoder", "digits"]


@dataclass(frozen=True)
class Dataset:
    name: str
    X: np.ndarray
    T: np.ndarray
    description: str = ""

    def __len__(self) -> int:
        return len(self.X)

    @property
    def labels(self) -> np.ndarray:
        return self.T.argmax(axis=1)


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[labels]


def two_spirals(density: int = 1, scale: bool = False) -> Dataset:
    """The two-spirals problem (Lang & Witbrock 1988; CMU benchmark collection).

    Point ``i = 0 .. 96*density`` of the first spiral is at angle
    ``i*pi/(16*density)`` and radius ``6.5*(104*density - i)/(104*density)``:
    ``(r*sin(angle), r*cos(angle))``; the second spiral is its point
    reflection ``(-x, -y)``. Three turns each; with ``density=1`` (the
    benchmark) 194 points in two classes that no small network separates
    easily: Lang & Witbrock needed a 2-5-5-5-1 network with shortcut
    connections and about 20,000 epochs of backpropagation, Fahlman &
    Lebiere's Cascade-Correlation about 1,700.

    The coordinates are the benchmark's (radius up to 6.5); ``scale=True``
    divides them by 6.5, into [-1, 1]. (For a tanh network with Glorot
    initial weights the benchmark's larger coordinates train much better:
    the first layer starts with sharper features.)
    """
    density = int(density)
    if density < 1:
        raise ValueError(f"density must be a positive integer, got {density}")
    i = np.arange(96 * density + 1)
    angle = i * np.pi / (16 * density)
    radius = 6.5 * (104 * density - i) / (104 * density)
    first = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
    X = np.concatenate([first, -first])
    if scale:
        X /= 6.5
    labels = np.repeat([0, 1], len(first))
    return Dataset("two-spirals", X, _one_hot(labels, 2),
                   f"Lang & Witbrock 1988, {len(X)} points, 2 classes")


def encoder(n: int = 8) -> Dataset:
    """The N-M-N encoder/decoder (Ackley, Hinton & Sejnowski 1985; Fahlman's
    benchmark for Quickprop, 1988): ``n`` one-hot patterns that the network
    must reproduce at its output through a narrow hidden layer (8-3-8 forces
    a binary code)."""
    eye = np.eye(n)
    return Dataset(f"encoder-{n}", eye.copy(), eye.copy(), f"{n} one-hot patterns, identity map")


def digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes;
    from the UCI optdigits test set), pixels scaled to [0, 1]. Needs
    scikit-learn (imported here, lazily); raises ImportError without it."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return Dataset("digits", data.data / 16.0, _one_hot(data.target, 10),
                   "scikit-learn digits, 1797 images 8x8, 10 classes")
