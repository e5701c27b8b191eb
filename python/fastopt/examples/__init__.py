"""Small models and data sets to exercise the optimizers, in plain NumPy.

* :class:`MLP` -- a multilayer perceptron with hand-written backpropagation
  (tanh or sigmoid hidden layers; softmax cross-entropy or MSE output);
  parameters and gradients are lists of arrays, as the optimizers take them.
* :func:`two_spirals`, :func:`encoder` -- classic benchmarks generated from
  their definitions (no download); :func:`digits` -- scikit-learn's bundled
  8x8 digits, when scikit-learn is installed.
"""

from .data import Dataset, digits, encoder, two_spirals
from .mlp import MLP

__all__ = ["MLP", "Dataset", "two_spirals", "encoder", "digits"]
