"""The demo's problems and, for each, every optimizer with its hyperparameters.

Hyperparameters were picked by a small search per problem (learning rates on
a factor-of-3 grid, seed 0) for the lowest final loss within the budget, then
kept for every seed: the demo compares reasonably tuned optimizers, not
defaults. Momentum is 0.9 throughout; Rprop and Quickprop keep their
literature defaults except the initial step size / epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import optim
from ..examples import MLP, Dataset, digits, encoder, two_spirals

RPROP_VARIANTS = (("iRprop-", "irprop-"), ("Rprop-", "rprop-"), ("Rprop+", "rprop+"),
                  ("iRprop+", "irprop+"))


@dataclass(frozen=True)
class OptimizerSpec:
    label: str
    cls: type
    kwargs: dict[str, Any]
    # Rprop's sign tests and Quickprop's secant compare two gradients of the
    # same function: they need the whole-data gradient at every step.
    full_batch: bool = False

    def make(self, params):
        return self.cls(params, **self.kwargs)


def lineup(sgd: float, momentum: float, adagrad: float, rmsprop: float, adam: float,
           rprop: float, quickprop: float, quickprop_decay: float = 1e-4) -> list[OptimizerSpec]:
    """Every optimizer of the demo, given the learning rates for one problem."""
    return [
        OptimizerSpec("SGD", optim.SGD, dict(lr=sgd)),
        OptimizerSpec("SGD+momentum", optim.SGD, dict(lr=momentum, momentum=0.9)),
        OptimizerSpec("Nesterov", optim.SGD, dict(lr=momentum, momentum=0.9, nesterov=True)),
        OptimizerSpec("Adagrad", optim.Adagrad, dict(lr=adagrad)),
        OptimizerSpec("RMSprop", optim.RMSprop, dict(lr=rmsprop)),
        OptimizerSpec("Adam", optim.Adam, dict(lr=adam)),
        OptimizerSpec("AdamW", optim.AdamW, dict(lr=adam, weight_decay=1e-2)),
        *[OptimizerSpec(label, optim.Rprop, dict(lr=rprop, variant=variant), full_batch=True)
          for label, variant in RPROP_VARIANTS],
        OptimizerSpec("Quickprop", optim.Quickprop, dict(lr=quickprop, decay=quickprop_decay),
                      full_batch=True),
    ]


@dataclass
class Problem:
    name: str
    data: Dataset
    model: MLP
    epochs: int
    target_loss: float
    batch_size: int | None        # None: every optimizer uses the full batch
    optimizers: list[OptimizerSpec]
    about: str = ""
    test: Dataset | None = None   # held out, for the test accuracy

    @property
    def title(self) -> str:
        return f"{self.name}: {self.model}, {self.data.description}"


def split(data: Dataset, test_fraction: float, seed: int = 2024) -> tuple[Dataset, Dataset]:
    """A fixed random split (the same whatever the demo's --seed)."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = int(round(test_fraction * len(data)))

    def part(rows, name):
        return Dataset(f"{data.name} {name}", data.X[rows], data.T[rows],
                       f"{data.description}; {len(rows)} for {name}")

    return part(order[n_test:], "training"), part(order[:n_test], "test")


def problems(quick: bool = False) -> list[Problem]:
    """The demo's problems; ``quick`` cuts the budgets (for tests and a first look).
    Digits only when scikit-learn is installed."""
    found = [
        Problem(
            "encoder 8-3-8", encoder(8), MLP([8, 3, 8], hidden="sigmoid", output="softmax"),
            epochs=200 if quick else 1500, target_loss=0.05, batch_size=None,
            optimizers=lineup(sgd=5.0, momentum=1.0, adagrad=1.0, rmsprop=0.03, adam=0.1, rprop=0.1,
                              quickprop=1.0),
            about="Fahlman's encoder benchmark, with a softmax output; "
                  "full batch (8 patterns) for all",
        ),
        Problem(
            "two-spirals", two_spirals(), MLP([2, 30, 30, 2], hidden="tanh", output="softmax"),
            epochs=100 if quick else 4000, target_loss=0.05, batch_size=None,
            optimizers=lineup(sgd=0.1, momentum=0.01, adagrad=0.3, rmsprop=0.01, adam=0.01,
                              rprop=0.01, quickprop=0.003),
            about="Lang & Witbrock 1988, the benchmark's coordinates; "
                  "full batch (194 points) for all",
        ),
    ]
    try:
        data, held_out = split(digits(), test_fraction=0.2)
    except ImportError:
        return found
    found.append(Problem(
        "digits", data, MLP([64, 32, 10], hidden="tanh", output="softmax"),
        epochs=2 if quick else 50, target_loss=0.05, batch_size=64,
        optimizers=lineup(sgd=1.0, momentum=0.1, adagrad=0.3, rmsprop=0.01, adam=0.01, rprop=0.01,
                          quickprop=0.3),
        about="scikit-learn's digits; loss on the training images, accuracy also on the held-out "
              "ones; mini-batches of 64, full batch for Rprop and Quickprop (one step per epoch)",
        test=held_out,
    ))
    return found
