"""Every optimizer is declared once, in C++ (csrc/optimizers/<name>.hpp), and
exposed as ``fastopt._core.optimizers()``. Its Python faces must agree with
that declaration: the class, the functional form and the NumPy reference take
the same hyperparameters with the same defaults, and the functional form
passes them to the kernel in the declared order.

Optimizers are discovered, not listed: every module of the package
``fastopt.optimizers`` and every class in it with a C++ declaration
(``_name``) is checked, so a new optimizer is covered by adding its module.
The only per-optimizer knowledge is :data:`KNOWN_DEFAULTS`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import pkgutil
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt
import fastopt.optimizers
from fastopt import _core, optim
from fastopt import functional as F
from fastopt import reference as R
from fastopt.optimizers._base import Optimizer

SPECS = _core.optimizers()

# The known special cases: classes (and their functional form and reference,
# same lowercased name + "_") whose defaults differ from the declaration's.
KNOWN_DEFAULTS = {"AdamW": {"weight_decay": 1e-2}}

ORIGINS_CLASS_ONLY = {"init", "class_only"}  # set up new state only (Rprop's lr): the class's
ORIGINS = {"hyper", "per_step", "shared"} | ORIGINS_CLASS_ONLY
SHARED_IN_CLASS = {"l1", "decoupled_weight_decay"}  # grad_scale, clip_value: the class's step options
# Keyword arguments of a functional form that are not hyperparameters: the
# call's options, and the per-step values the class computes that the
# functional form takes in a friendlier shape (rprop_: loss, prev_loss for the
# declared loss_increased). The declared per-step names (step, ...) are
# excluded too, from the declaration.
CALL_OPTIONS = {"num_threads", "stats", "rounding"}  # rounding: how 16-bit parameters are written
FRIENDLY_PER_STEP = {"loss", "prev_loss"}


# ---------------------------------------------------------------- discovery
def optimizer_modules():
    return [importlib.import_module(f"{fastopt.optimizers.__name__}.{m.name}")
            for m in pkgutil.iter_modules(fastopt.optimizers.__path__) if not m.name.startswith("_")]


def declared_classes(module):
    """The optimizer classes a module defines that have a C++ declaration."""
    return [obj for _, obj in sorted(vars(module).items())
            if inspect.isclass(obj) and issubclass(obj, Optimizer) and obj.__module__ == module.__name__
            and obj._name]


MODULES = optimizer_modules()
CLASSES = [cls for module in MODULES for cls in declared_classes(module)]
CLASS_IDS = [cls.__name__ for cls in CLASSES]


def functional_of(cls):
    return getattr(sys.modules[cls.__module__], cls.__name__.lower() + "_")


def reference_of(cls):
    return getattr(R, cls.__name__.lower() + "_")


# ------------------------------------------------------------- signatures
def hypers_of(cls):
    return {h[0]: h for h in SPECS[cls._name].hypers}


def canonical(value, check):
    """A default as the declaration stores it: None is +inf for
    positive_or_inf (clip_value) and NaN (shown as None) for
    optional_nonnegative; flags must be bools."""
    if value is inspect.Parameter.empty:
        return "<no default>"
    if check == "positive_or_inf" and value is None:
        return math.inf
    if check == "optional_nonnegative" and (value is None or (isinstance(value, float) and math.isnan(value))):
        return None
    if check == "flag":
        return ("flag", value) if isinstance(value, (bool, np.bool_)) else ("not a bool", value)
    return value


def expand_pairs(cls, params):
    """{name: default} with each pair argument (betas, ...) split into its halves."""
    out = {}
    for name, default in params.items():
        if name in cls._pairs:
            first, second = cls._pairs[name]
            try:
                d1, d2 = default
            except (TypeError, ValueError):
                d1 = d2 = ("not a pair", default)
            out[first], out[second] = d1, d2
        else:
            out[name] = default
    return out


def class_hyperparameters(cls):
    sig = inspect.signature(cls.__init__)
    params = {n: p.default for n, p in sig.parameters.items()
              if n not in ("self", "params") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return expand_pairs(cls, params)


def array_arguments(fn):
    """The arguments before ``*``: params, grads, then the state arrays."""
    return [n for n, p in inspect.signature(fn).parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def functional_hyperparameters(cls, fn):
    per_step = {h[0] for h in SPECS[cls._name].hypers if h[3] == "per_step"}
    excluded = per_step | CALL_OPTIONS | FRIENDLY_PER_STEP
    params = {n: p.default for n, p in inspect.signature(fn).parameters.items()
              if p.kind == p.KEYWORD_ONLY and n not in excluded}
    return expand_pairs(cls, params)


def canonical_all(cls, defaults):
    hypers = hypers_of(cls)
    return {n: canonical(v, hypers[n][2] if n in hypers else None) for n, v in defaults.items()}


def expected_defaults(cls, face):
    """{name: default} from the declaration, for face "class" or "functional"."""
    decoupled_fixed = "decoupled_weight_decay" not in class_hyperparameters(cls)
    out = {}
    for name, default, check, origin, _choices in SPECS[cls._name].hypers:
        if origin == "hyper":
            keep = True
        elif origin in ORIGINS_CLASS_ONLY:
            keep = face == "class"
        elif origin == "shared":
            keep = face == "functional" or name in SHARED_IN_CLASS
            if name == "decoupled_weight_decay" and decoupled_fixed:
                keep = False
        else:
            keep = False
        if keep:
            out[name] = canonical(default, check)
    for name, value in KNOWN_DEFAULTS.get(cls.__name__, {}).items():
        out[name] = canonical(value, hypers_of(cls)[name][2])
    return out


# ------------------------------------------------------------- discovery tests
def test_discovery_finds_the_optimizers():
    """Guards the generic discovery itself: it finds the original optimizers."""
    assert {"Adam", "AdamW", "SGD", "Adagrad", "RMSprop", "Rprop", "Quickprop"} <= set(CLASS_IDS)


def test_every_declaration_has_one_module():
    """Each C++ declaration has its module fastopt/optimizers/<name>.py,
    whose classes all name that declaration."""
    by_module = {m.__name__.rsplit(".", 1)[1]: declared_classes(m) for m in MODULES}
    for name in SPECS:
        assert by_module.get(name), f"no module fastopt/optimizers/{name}.py with a class declaring {name!r}"
    for module_name, classes in by_module.items():
        for cls in classes:
            assert cls._name == module_name, f"{cls.__name__} in {module_name}.py declares {cls._name!r}"
            assert cls._name in SPECS, f"{cls.__name__}._name {cls._name!r} is not a C++ declaration"


def test_declarations_are_well_formed():
    for name, spec in SPECS.items():
        assert spec.name == name
        names = [h[0] for h in spec.hypers]
        assert len(set(names)) == len(names), name
        assert names[-4:] == ["l1", "decoupled_weight_decay", "grad_scale", "clip_value"], name
        for hname, default, check, origin, choices in spec.hypers:
            assert origin in ORIGINS, (name, hname, origin)
            assert (origin == "shared") == (hname in ("l1", "decoupled_weight_decay", "grad_scale",
                                                      "clip_value")), (name, hname)
            if check == "choice":
                assert default in choices, (name, hname)
        assert spec.state, name
        assert len({k for k, _ in spec.state}) == len(spec.state), name


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_exported(cls):
    fn = functional_of(cls)
    assert getattr(optim, cls.__name__) is cls
    assert cls.__name__ in optim.__all__
    assert getattr(F, fn.__name__) is fn
    assert fn.__name__ in F.__all__
    assert fn.__name__ in R.__all__
    module = sys.modules[cls.__module__]
    assert {cls.__name__, fn.__name__} <= set(module.__all__)


# ------------------------------------------------------ (a) and (b): signatures
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_class_functional_and_reference_take_the_same_hyperparameters(cls):
    """(a) Names and defaults agree across the three faces, pairs expanded;
    the class adds its class-only ones (Rprop's lr), the functional forms the
    gradient's scale and value clipping (the class's step options)."""
    spec = SPECS[cls._name]
    class_only = {h[0] for h in spec.hypers if h[3] in ORIGINS_CLASS_ONLY}
    step_options = {"grad_scale", "clip_value"}
    of_class = canonical_all(cls, class_hyperparameters(cls))
    of_functional = canonical_all(cls, functional_hyperparameters(cls, functional_of(cls)))
    of_reference = canonical_all(cls, functional_hyperparameters(cls, reference_of(cls)))
    assert of_functional == of_reference, "functional form and reference differ"
    assert {n: v for n, v in of_class.items() if n not in class_only} == \
        {n: v for n, v in of_functional.items() if n not in step_options}, "class and functional form differ"
    # a class that fixes decoupled_weight_decay (AdamW) has a functional form that fixes it too
    assert ("decoupled_weight_decay" in of_class) == ("decoupled_weight_decay" in of_functional)


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_class_signature_is_the_declaration(cls):
    """(b) The class's hyperparameters are the declared ones (hyper, class-only,
    l1 and decoupled_weight_decay), with the declared defaults."""
    assert canonical_all(cls, class_hyperparameters(cls)) == expected_defaults(cls, "class")


@pytest.mark.parametrize("face", ["functional", "reference"])
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_functional_signature_is_the_declaration(cls, face):
    """(b) The functional form's and the reference's hyperparameters are the
    declared ones (hyper and the four shared), with the declared defaults."""
    fn = functional_of(cls) if face == "functional" else reference_of(cls)
    assert canonical_all(cls, functional_hyperparameters(cls, fn)) == expected_defaults(cls, "functional")


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_state_arguments_follow_the_declaration(cls):
    """The functional form and the reference take params, grads, then one
    array argument per declared state key, in order, named key + "s" (the
    name the kernel's error messages use)."""
    expected = ["params", "grads"] + [key + "s" for key, _ in SPECS[cls._name].state]
    assert array_arguments(functional_of(cls)) == expected
    assert array_arguments(reference_of(cls)) == expected


# ------------------------------------------------------------ (c): packing
def distinct_values(cls):
    """A distinct valid value per declared hyperparameter: 0.101, 0.102, ...
    inside each check's range, flags alternating True/False, a non-default
    choice, step 7; the second half of a pair stays above the first (and
    above 1 unless the check is a unit interval: Rprop's etaplus)."""
    values = {}
    flags = 0
    hypers = SPECS[cls._name].hypers
    for k, (name, default, check, _origin, choices) in enumerate(hypers, start=1):
        x = round(0.1 + k / 1000, 6)
        if check == "flag":
            values[name] = flags % 2 == 0
            flags += 1
        elif check == "choice":
            values[name] = next(c for c in reversed(choices) if c != default)
        elif check == "step":
            values[name] = 7
        elif check == "nonpositive":
            values[name] = -x
        elif check == "at_least_one":
            values[name] = 1 + x
        elif check in ("finite", "nonnegative", "positive", "positive_or_inf", "optional_nonnegative",
                       "unit_open", "unit_closed"):
            values[name] = x
        else:
            raise AssertionError(f"{cls._name}.{name}: no test value for check {check!r}")
    checks = {h[0]: h[2] for h in hypers}
    for first, second in cls._pairs.values():
        if first in values and second in values and checks[second] not in ("unit_open", "unit_closed"):
            values[second] = values[second] + 1.0
    return values


class Recorder:
    """Stands in for the module's OptimizerSpec (``_SPEC``): records step()."""

    def __init__(self, spec):
        self.spec = spec
        self.calls = []

    def step(self, params, grads, state, hypers, hyper_index, num_threads, check_only, stats, writes=None,
             masters=None):
        assert len(hypers) == 1
        assert hyper_index is None
        assert not check_only
        self.calls.append(dict(spec=self.spec, params=params, grads=grads, state=state, values=hypers[0],
                               num_threads=num_threads, stats=stats, writes=writes, masters=masters))


def record_call(monkeypatch, cls, **kwargs):
    """Calls the functional form with distinct arrays and kwargs, the module's
    ``_SPEC`` replaced by a recorder; returns (record, arrays)."""
    fn = functional_of(cls)
    module = sys.modules[fn.__module__]
    recorder = Recorder(module._SPEC)
    monkeypatch.setattr(module, "_SPEC", recorder)
    arrays = [np.zeros(3) for _ in array_arguments(fn)]
    fn(*arrays, **kwargs)
    assert len(recorder.calls) == 1, f"{fn.__name__} called _SPEC.step {len(recorder.calls)} times"
    return recorder.calls[0], arrays


def per_step_arguments(cls, fn, values):
    """The keyword arguments a functional form needs for its per-step values."""
    params = inspect.signature(fn).parameters
    kw = {h[0]: values[h[0]] for h in SPECS[cls._name].hypers if h[3] == "per_step" and h[0] in params}
    if "loss" in params:
        kw["loss"] = 2.0
    if "prev_loss" in params:
        kw["prev_loss"] = 1.0
    return kw


def fixed_value(cls, name):
    """The value a class uses for a declared hyperparameter it does not take:
    the one it fixes (AdamW's decoupling), else the declared default."""
    default = hypers_of(cls)[name][1]
    return cls([np.zeros(1)]).defaults.get(name, default)


def assert_values(cls, fn, recorded, expected):
    """Compares the recorded tuple with `expected` ({name: value, or a type
    for a per-step value derived from other arguments}) in declared order; a
    pair (betas, ...) is one item of the tuple, its two halves in order."""
    spec = SPECS[cls._name]
    pair_of = {first: (first, second) for first, second in spec.pairs.values()}
    seconds = {second for _first, second in spec.pairs.values()}
    names = [h[0] for h in spec.hypers if h[0] not in seconds]
    assert len(recorded) == len(names), f"{fn.__name__} packs {len(recorded)} values, {len(names)} declared"
    unpacked, unpacked_names = [], []
    for name, got in zip(names, recorded):
        if name in pair_of:
            assert isinstance(got, (tuple, list)), f"{name}'s pair packed as {got!r}"
            assert len(got) == 2, f"{name}'s pair packed as {got!r}"
            unpacked += list(got)
            unpacked_names += list(pair_of[name])
        else:
            unpacked.append(got)
            unpacked_names.append(name)
    checks = {h[0]: h[2] for h in spec.hypers}
    unpacked = [math.inf if got is None and checks[name] == "positive_or_inf" else got  # None: no clipping
                for name, got in zip(unpacked_names, unpacked)]
    wrong = []
    for name, got in zip(unpacked_names, unpacked):
        want = expected[name]
        if isinstance(want, type):
            if not isinstance(got, want):
                wrong.append(f"{name}: {got!r} is not a {want.__name__}")
        elif not (got == want or (isinstance(want, float) and math.isnan(want) and got is None)):
            wrong.append(f"{name}: got {got!r}, expected {want!r}")
    assert not wrong, f"{fn.__name__} packs its values tuple wrongly: " + "; ".join(wrong)


PER_STEP_TYPES = {"flag": bool, "step": int}


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_functional_packs_values_in_declared_order(cls, monkeypatch):
    """(c) Every hyperparameter reaches the kernel at its declared position."""
    fn = functional_of(cls)
    spec = SPECS[cls._name]
    values = distinct_values(cls)
    accepted = functional_hyperparameters(cls, fn)
    params = inspect.signature(fn).parameters
    kwargs = {}
    for name in accepted:
        kwargs[name] = values[name]
    for pair_name, (first, second) in cls._pairs.items():  # pass pairs as the functional takes them
        if pair_name in params and params[pair_name].kind == params[pair_name].KEYWORD_ONLY:
            kwargs.pop(first)
            kwargs.pop(second)
            kwargs[pair_name] = (values[first], values[second])
    kwargs.update(per_step_arguments(cls, fn, values))
    record, arrays = record_call(monkeypatch, cls, num_threads=3, stats=True, **kwargs)

    expected = {}
    for name, default, check, origin, _choices in spec.hypers:
        if origin == "per_step":
            expected[name] = values[name] if name in params else PER_STEP_TYPES.get(check, (int, float))
        elif origin in ORIGINS_CLASS_ONLY:
            expected[name] = default  # the kernel ignores it; the functional form passes the default
        elif name in accepted:
            expected[name] = values[name]
        else:
            expected[name] = fixed_value(cls, name)
    assert_values(cls, fn, record["values"], expected)
    assert record["spec"] is spec or record["spec"].name == spec.name
    assert record["params"] is arrays[0]
    assert record["grads"] is arrays[1]
    assert len(record["state"]) == len(spec.state)
    assert all(a is b for a, b in zip(record["state"], arrays[2:])), "state arrays passed out of order"
    assert record["num_threads"] == 3
    assert record["stats"] is True


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_functional_passes_declared_defaults(cls, monkeypatch):
    """(c) Called with only what it requires, the functional form packs the
    declared defaults (the known special cases' own, a fixed value as its class)."""
    fn = functional_of(cls)
    spec = SPECS[cls._name]
    values = distinct_values(cls)
    params = inspect.signature(fn).parameters
    required = {n: values[n] for n, p in params.items()
                if p.kind == p.KEYWORD_ONLY and p.default is p.empty and n in values}
    record, _ = record_call(monkeypatch, cls, **required)
    accepted = functional_hyperparameters(cls, fn)
    special = KNOWN_DEFAULTS.get(cls.__name__, {})
    expected = {}
    for name, default, check, origin, _choices in spec.hypers:
        if name in required:
            expected[name] = required[name]
        elif origin == "per_step":
            expected[name] = PER_STEP_TYPES.get(check, (int, float))
        elif name in special:
            expected[name] = special[name]
        elif origin in ORIGINS_CLASS_ONLY or name in accepted:
            expected[name] = default
        else:
            expected[name] = fixed_value(cls, name)
    assert_values(cls, fn, record["values"], expected)


# ---------------------------------------------------------------- (d): stub
def test_stub_declares_optimizer_spec_and_optimizers():
    tree = ast.parse(Path(fastopt.__file__).with_name("_core.pyi").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    exported = next(ast.literal_eval(n.value) for n in tree.body
                    if isinstance(n, ast.AnnAssign) and n.target.id == "__all__")
    assert "optimizers" in functions
    assert "optimizers" in exported
    assert "OptimizerSpec" in classes
    assert "OptimizerSpec" in exported
    members = {n.name for n in classes["OptimizerSpec"].body if isinstance(n, ast.FunctionDef)}
    assert {"hypers", "state", "name", "step", "plan", "needed_state"} <= members
    returns = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "optimizers").returns
    assert ast.unparse(returns).startswith("dict")
    assert all(type(s).__name__ == "OptimizerSpec" for s in SPECS.values())
