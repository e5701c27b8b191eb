r"""A multilayer perceptron in NumPy with hand-written backpropagation.

Layer ``l`` computes :math:`z_l = a_{l-1} W_l + b_l` and :math:`a_l = f(z_l)`,
with ``f`` = tanh or the logistic sigmoid in hidden layers. The output layer
and the loss go together:

* ``"softmax"``: :math:`p = \mathrm{softmax}(z_L)`, cross-entropy
  :math:`L = -\frac1n\sum_i\sum_k T_{ik}\log p_{ik}`;
  :math:`\partial L/\partial z_L = (p - T)/n`.
* ``"sigmoid"``: :math:`y = \sigma(z_L)`, squared error
  :math:`L = \frac{1}{2n}\sum_i\sum_k (y_{ik} - T_{ik})^2` (Fahlman's setting:
  the :math:`\sigma'` factor makes saturated outputs learn slowly);
  :math:`\partial L/\partial z_L = (y - T)\,y(1-y)/n`.
* ``"linear"``: :math:`y = z_L`, the same squared error;
  :math:`\partial L/\partial z_L = (y - T)/n`.

Backpropagation: :math:`\delta_L = \partial L/\partial z_L`;
:math:`\partial L/\partial W_l = a_{l-1}^\top\delta_l`,
:math:`\partial L/\partial b_l = \sum_i \delta_{l,i}`,
:math:`\delta_{l-1} = (\delta_l W_l^\top)\odot f'(z_{l-1})` with
:math:`\tanh' = 1 - a^2` and :math:`\sigma' = a(1 - a)`.

Parameters are the list ``[W_1, b_1, W_2, b_2, ...]`` (``W_l`` of shape
``(n_{l-1}, n_l)``), and :meth:`MLP.loss_and_grads` returns the gradients as a
list in the same order: exactly what :meth:`fastopt.optim.Optimizer.step`
takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MLP"]

_HIDDEN = ("tanh", "sigmoid")
_OUTPUTS = ("softmax", "sigmoid", "linear")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # 0.5*(1 + tanh(z/2)) equals 1/(1 + exp(-z)) without overflow for large |z|.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class MLP:
    """A fully connected network: ``sizes = (n_in, hidden..., n_out)``.

    Args: ``hidden`` "tanh" (default) or "sigmoid"; ``output`` "softmax"
    (cross-entropy, default), "sigmoid" or "linear" (both squared error); see
    the module docstring for the formulas. ``dtype`` float64 (default) or
    float32 for the parameters made by :meth:`init_params`.
    """

    def __init__(self, sizes: Sequence[int], hidden: str = "tanh", output: str = "softmax",
                 dtype=np.float64):
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError("sizes must list at least an input and an output width >= 1, "
                             f"got {sizes}")
        if hidden not in _HIDDEN:
            raise ValueError(f"hidden must be one of {_HIDDEN}, got {hidden!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.sizes, self.hidden, self.output = sizes, hidden, output
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        widths = "-".join(map(str, self.sizes))
        return f"MLP({widths}, hidden={self.hidden!r}, output={self.output!r})"

    @property
    def n_params(self) -> int:
        return sum((a + 1) * b for a, b in zip(self.sizes, self.sizes[1:]))

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Glorot/Xavier uniform weights (Glorot & Bengio 2010), zero biases.
        The limit is ``sqrt(6/(fan_in + fan_out))``, times 4 for sigmoid layers
        (whose slope at 0 is 1/4 that of tanh)."""
        params = []
        for layer, (fan_in, fan_out) in enumerate(zip(self.sizes, self.sizes[1:])):
            last = layer == len(self.sizes) - 2
            gain = 4.0 if (self.hidden == "sigmoid" and not last) else 1.0
            limit = gain * np.sqrt(6.0 / (fan_in + fan_out))
            params.append(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(self.dtype))
            params.append(np.zeros(fan_out, dtype=self.dtype))
        return params

    # --------------------------------------------------------------- forward
    def _activations(self, params: Sequence[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
        """``[a_0 = X, a_1, ..., a_{L-1}, z_L]``: hidden activations and output logits."""
        self._check(params)
        acts = [np.asarray(X, dtype=params[0].dtype)]
        n_layers = len(params) // 2
        for layer in range(n_layers):
            z = acts[-1] @ params[2 * layer] + params[2 * layer + 1]
            if layer < n_layers - 1:
                z = np.tanh(z) if self.hidden == "tanh" else _sigmoid(z)
            acts.append(z)
        return acts

    def _output(self, z: np.ndarray) -> np.ndarray:
        if self.output == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return _sigmoid(z) if self.output == "sigmoid" else z

    def forward(self, params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Network outputs: class probabilities (softmax) or values."""
        return self._output(self._activations(params, X)[-1])

    def _loss_from_logits(self, z: np.ndarray, T: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and ``dL/dz`` at the output logits."""
        n = len(z)
        if self.output == "softmax":
            shifted = z - z.max(axis=1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            # + 0.0: a perfect fit gives -0.0, which should print as 0
            return float(-np.sum(T * log_p) / n) + 0.0, (np.exp(log_p) - T) / n
        y = self._output(z)
        err = y - T
        loss = float(0.5 * np.sum(err * err) / n)
        return loss, (err * y * (1 - y) if self.output == "sigmoid" else err) / n

    def loss(self, params: Sequence[np.ndarray], X: np.ndarray, T: np.ndarray) -> float:
        return self._loss_from_logits(self._activations(params, X)[-1], T)[0]

    # -------------------------------------------------------------- backward
    def loss_and_grads(self, params: Sequence[np.ndarray], X: np.ndarray, T: np.ndarray
                       ) -> tuple[float, list[np.ndarray]]:
        """The mean loss over the rows of ``X`` and its gradient with respect
        to every parameter (a list aligned with ``params``, same dtypes)."""
        acts = self._activations(params, X)
        loss, delta = self._loss_from_logits(acts[-1], np.asarray(T, dtype=params[0].dtype))
        grads: list[np.ndarray] = [None] * len(params)  # type: ignore[list-item]
        for layer in range(len(params) // 2 - 1, -1, -1):
            a_prev = acts[layer]
            grads[2 * layer] = a_prev.T @ delta
            grads[2 * layer + 1] = delta.sum(axis=0)
            if layer > 0:
                slope = 1 - a_prev * a_prev if self.hidden == "tanh" else a_prev * (1 - a_prev)
                delta = (delta @ params[2 * layer].T) * slope
        return loss, grads

    # --------------------------------------------------------------- metrics
    def accuracy(self, params: Sequence[np.ndarray], X: np.ndarray, T: np.ndarray) -> float:
        """Fraction of rows whose largest output is at the target's largest
        entry (one output: thresholded at 0.5 for sigmoid, 0 for linear)."""
        y = self.forward(params, X)
        T = np.asarray(T)
        if y.shape[1] == 1:
            cut = 0.5 if self.output == "sigmoid" else 0.0
            return float(np.mean((y[:, 0] > cut) == (T[:, 0] > cut)))
        return float(np.mean(y.argmax(axis=1) == T.argmax(axis=1)))

    def _check(self, params: Sequence[np.ndarray]) -> None:
        expected = [s for a, b in zip(self.sizes, self.sizes[1:]) for s in ((a, b), (b,))]
        shapes = [np.shape(p) for p in params]
        if shapes != expected:
            raise ValueError(f"{self!r} expects parameter shapes {expected}, got {shapes}")
