"""Stateless, in-place optimizer kernels on NumPy arrays.

Every function here updates its parameter and state arrays **in place** in one
fused pass over memory, in C++, and returns ``None``. Each buffer argument is
either one ``numpy.ndarray`` or a list of them; a list is updated in ONE call
into C++ (one GIL release, one parallel region), whatever its length.

Rules shared by every function:

* Arrays are float32 or float64, one dtype per call, C-contiguous, and
  writeable where they are updated. Parameters may also be float16 or
  bfloat16 (``ml_dtypes.bfloat16``), with gradients of their dtype or float32
  and float32 state: the float32 rule runs on the widened values and
  ``rounding`` (``"nearest"``, ``"stochastic"`` or a :class:`Rounding` with
  master weights) says how the result is written back (docs/algorithms.md,
  "16-bit parameters"). Nothing is converted or copied: an
  in-place update of a silent copy would be lost. Bad input raises
  ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, layout,
  read-only, shared memory, invalid hyperparameter, missing state) naming the
  argument, before any array is written.
* ``step`` is the 1-based step count *after* incrementing, as in torch.optim.
* Per-step scalars (bias corrections, ``1 - beta``) are computed in double
  precision; element arithmetic runs in the arrays' dtype, without fused
  multiply-add, in the operation order of :mod:`fastopt.reference`.
* ``num_threads=0`` uses the OpenMP default; results are bitwise identical for
  any thread count.
* Every optimizer also takes, in the same pass over memory:

  - ``weight_decay`` (coupled L2: ``g + weight_decay*p``; the lectures'
    ``lambda*||W||^2`` is ``weight_decay = 2*lambda``) or, with
    ``decoupled_weight_decay=True``, ``p <- p*(1 - lr*weight_decay)`` before
    the update (AdamW's rule, for any optimizer);
  - ``l1``: a proximal soft-threshold after the update,
    ``p <- sign(p)*max(|p| - lr*l1, 0)``, which makes weights exactly zero
    (a subgradient term would not); with ``weight_decay`` it is the elastic net;
  - ``grad_scale`` (a factor on the gradient: global-norm clipping, see
    :func:`fastopt.clip_grad_norm_`) and ``clip_value`` (clip each gradient
    element to ``[-clip_value, clip_value]``), applied after ``maximize`` and
    before the coupled decay. The caller's gradient arrays are never written.

  ``lr`` above is the optimizer's step size: Adagrad's decayed rate, and for
  Rprop each weight's own step size. The L1 threshold follows the rule
  ``lr*l1`` with that (base) rate: with a plain gradient step (SGD,
  Quickprop) it recovers a lasso's exact sparsity pattern; with adaptive
  methods (Adam, RMSprop, Adagrad) the per-weight step differs from ``lr``, so
  fewer weights settle at exactly 0, and for Adagrad, whose effective step
  shrinks over time, the shrinkage grows relative to the data term.
* ``stats=True`` returns a :class:`StepStats` (gradient, parameter and update
  norms, non-finite gradient count), gathered during the same pass.

The update rules are those of docs/algorithms.md and follow ``torch.optim``
(argument names, defaults, order of operations). Each function lives with its
class in :mod:`fastopt.optimizers`.
"""

from .optimizers._base import Rounding, StepStats
from .optimizers.adadelta import adadelta_
from .optimizers.adafactor import adafactor_
from .optimizers.adagrad import adagrad_
from .optimizers.adam import adam_, adamw_
from .optimizers.adamax import adamax_
from .optimizers.asgd import asgd_, asgd_schedule
from .optimizers.lamb import lamb_
from .optimizers.lion import lion_
from .optimizers.nadam import nadam_, nadam_mu
from .optimizers.quickprop import quickprop_
from .optimizers.radam import radam_
from .optimizers.rmsprop import rmsprop_
from .optimizers.rprop import RPROP_VARIANTS, rprop_
from .optimizers.sgd import sgd_

__all__ = ["sgd_", "adagrad_", "rmsprop_", "adam_", "adamw_", "rprop_", "quickprop_", "adadelta_", "adamax_",
           "nadam_", "radam_", "asgd_", "adafactor_", "lion_", "lamb_", "nadam_mu", "asgd_schedule",
           "RPROP_VARIANTS", "StepStats", "Rounding"]
