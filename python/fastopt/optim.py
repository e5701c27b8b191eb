"""torch.optim-style optimizer classes over NumPy arrays.

    >>> import numpy as np, fastopt
    >>> w = np.zeros(3)
    >>> opt = fastopt.optim.Adam([w], lr=1e-2)
    >>> opt.step([np.array([1.0, -2.0, 0.5])])   # arrays carry no .grad: pass the gradients
    >>> w
    array([-0.01,  0.01, -0.01])

Conventions (from torch.optim): ``params`` is a list of arrays or of param-group
dicts (``{"params": [...], "lr": ...}``); hyperparameters live in
``param_groups`` and are read at every step, so schedulers may change them;
``state`` holds torch's key names; ``state_dict()``/``load_state_dict()``
round-trip exactly, so a resumed run is bitwise identical to an uninterrupted
one. ``step(grads)`` takes the gradients aligned with the parameters (a
``None`` gradient skips that parameter, like a torch parameter whose
``.grad`` is None) and updates the arrays in place.

A step over any number of arrays and groups is one call into C++ (one per
dtype when a model mixes float32 and float64), through a step plan checked
once: a step costs no Python work per array. Every check runs before any
array or counter changes: a rejected step leaves the optimizer and the
parameters exactly as they were. Each class lives with its functional form
in :mod:`fastopt.optimizers`.
"""

from .optimizers._base import Optimizer
from .optimizers.adadelta import Adadelta
from .optimizers.adafactor import Adafactor
from .optimizers.adagrad import Adagrad
from .optimizers.adam import Adam, AdamW
from .optimizers.adamax import Adamax
from .optimizers.asgd import ASGD
from .optimizers.lamb import LAMB
from .optimizers.lbfgs import LBFGS
from .optimizers.lion import Lion
from .optimizers.nadam import NAdam
from .optimizers.quickprop import Quickprop
from .optimizers.radam import RAdam
from .optimizers.rmsprop import RMSprop
from .optimizers.rprop import Rprop
from .optimizers.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Rprop", "Quickprop", "Adadelta",
           "Adamax", "NAdam", "RAdam", "ASGD", "Adafactor", "Lion", "LAMB", "LBFGS"]
