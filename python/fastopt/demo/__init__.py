"""``python -m fastopt.demo``: every fastopt optimizer on small neural-network
problems, with timings against the pure-NumPy reference.

Problems (built in, no download): the 8-3-8 encoder (Fahlman's benchmark),
the two-spirals problem (Lang & Witbrock 1988), and scikit-learn's bundled
digits when scikit-learn is installed; each trained by SGD, SGD+momentum,
Nesterov, Adagrad, RMSprop, Adam, AdamW, the four Rprop variants and
Quickprop (Rprop and Quickprop full-batch). On digits, with ml_dtypes
installed, the Adam and SGD+momentum runs again in float32 and with 16-bit
parameters: bfloat16 (round to nearest, stochastic rounding, split float32
master) and float16 (nearest, stochastic), then in float32 with 8-bit
optimizer state, held-out accuracy beside float32
(:mod:`fastopt.demo.precision`; five seeds in the full budget). Then
optimizer trajectories on an ill-conditioned quadratic and on Rosenbrock's
function.

It prints one table per problem (final loss, accuracy, epochs to the target
loss, wall time, the optimizer step time of fastopt against the same steps in
NumPy) and, when matplotlib is installed, writes PNG figures to ``--out``.

Options: ``--quick`` (small budgets), ``--out DIR`` (default ``demo_out``),
``--seed N``, ``--no-figures``, ``--no-progress``.
"""

from .cli import main

__all__ = ["main"]
