"""Property tests (hypothesis), generic over every optimizer.

Optimizers are discovered, not listed: every class of :mod:`fastopt.optim`
with a C++ declaration (``fastopt._core.optimizers()``), its functional form
``fastopt.functional.<name>_`` and its NumPy oracle ``fastopt.reference.<name>_``.
Hyperparameters are drawn from the declaration alone: each one's check kind
(nonnegative, positive, unit_open, unit_closed, flag, choice, ...) gives its
strategy, kept in magnitudes where a few steps stay finite (a rate up to 1,
``eps*`` at least 1e-12, betas up to 0.999); a combination a cross-field check
rejects (Rprop's etas, SGD's nesterov, LAMB's decoupled decay) is repaired by
resetting fields to their declared defaults. The shared options (weight_decay,
l1, decoupled_weight_decay, maximize, grad_scale, clip_value, and the classes'
grad_clip_value, max_grad_norm) are declared fields like any other. A new
optimizer is covered by its declaration and its three Python faces; a new
check kind fails loudly here until it has a strategy.

Properties, per optimizer class (one pytest item per class and property,
``max_examples`` fixed per property, see ``EXAMPLES``):

1. ``test_functional_matches_reference``: 3-5 steps of the functional form
   over a list of 1-3 arrays equal exactly 3-5 steps of the reference
   from identical inputs, with per-step values (step, mu_product, eta, mu,
   loss/prev_loss) drawn from their declared ranges, not only the ones a
   class would compute; the gradients are never written.
   ``test_class_matches_reference``: 3-5 steps of the class over one or two
   param groups (their own hyperparameters, mixed dtypes, some None
   gradients) equal the reference applied per parameter with the group's
   hyperparameters, the per-step values the class's hooks give for that
   parameter's own scalar state, and the clipping factor of max_grad_norm;
   the state the class keeps (arrays and scalars) equals the reference's.
   The step count is checked independently (the number of steps that
   parameter had a gradient); the other per-step schedules (NAdam's
   mu_product, ASGD's eta and mu) come from the class's own hooks here: the
   classes against torch (tests/test_vs_torch.py) check those.
2. ``test_state_dict_round_trip``: ``copy.deepcopy(opt.state_dict())``
   loaded into a fresh optimizer (default hyperparameters) over copies of the
   parameters gives back the same state_dict and continues exactly as the
   original; the saved dict is not aliased by the new optimizer.
3. ``test_rejected_functional_call_changes_nothing`` and
   ``test_rejected_step_changes_nothing``: a call with a wrong shape, dtype,
   layout or type of gradient or state, a missing state array, shared memory,
   a read-only array, a wrong number of gradients, an invalid hyperparameter
   (an invalid value for its declared check kind), a non-finite gradient with
   ``nonfinite="raise"`` or a corrupted state_dict raises TypeError or
   ValueError and leaves parameters, gradients, state and param_groups
   exactly as before; the class then continues exactly as a twin that never saw
   the bad call, a parameter made read-only after the first step and an
   invalid hyperparameter before the first step included.

Sizes: 0, 1, the vector-tail sizes of tests/registry.py (7 ... 1023), sizes
above the parallel grain (``PARALLEL_GRAIN + 1``, 65537), 0-d and small
2-D/3-D arrays (Adafactor's factored state); float32 and float64 (mixed in
one class); 1 or 2 threads. Equality is np.array_equal's (0.0 equals -0.0).
``pytest --hypothesis-show-statistics`` shows the examples run per item and
events: arrays above the grain with 1 or 2 threads, ndim >= 2, empty arrays.

SIMD targets are not drawn here: CI runs the whole suite once per target this
CPU supports, with ``FASTOPT_TARGET`` set (.ci/run), so every property runs
against every target's kernels there. Examples are derandomized and no
database is used, so a CI run is reproducible.
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt import _core, optim
from fastopt import functional as F
from fastopt import reference as R
from fastopt.clip import clip_factor, global_grad_norm
from fastopt.optimizers._base import Optimizer
from registry import DTYPES, GRAIN, SIZES

SPECS = _core.optimizers()

# Examples per optimizer class and property (pytest shows one item per pair).
EXAMPLES = {
    "functional": 25,
    "class": 20,
    "round_trip": 12,
    "rejected_functional": 12,
    "rejected_step": 12,
}


def _settings(kind: str):
    # No "explain" phase: tracing every line of a failing example's reruns
    # multiplies the time to shrink it several times over.
    return settings(max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True)


# ---------------------------------------------------------------- discovery
def _classes():
    found = {getattr(optim, name) for name in optim.__all__}
    return sorted((c for c in found if inspect.isclass(c) and issubclass(c, Optimizer) and c._name in SPECS),
                  key=lambda c: c.__name__)


CLASSES = _classes()
CLASS_IDS = [c.__name__ for c in CLASSES]
CALL_OPTIONS = {"num_threads", "stats"}
STEP_COUNTS = {h[0] for spec in SPECS.values() for h in spec.hypers if h[2] == "step"}
FRIENDLY_PER_STEP = ("loss", "prev_loss")  # rprop_'s friendlier form of the declared loss_increased


def functional_of(cls):
    return getattr(F, cls.__name__.lower() + "_")


def reference_of(cls):
    return getattr(R, cls.__name__.lower() + "_")


def spec_of(cls):
    return SPECS[cls._name]


def parameters_of(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def per_step_names(cls) -> list[str]:
    return [h[0] for h in spec_of(cls).hypers if h[3] == "per_step"]


def class_names(cls) -> set[str]:
    """The class's hyperparameter arguments, pairs (betas, ...) included as pairs."""
    return {n for n, p in parameters_of(cls.__init__).items()
            if n not in ("self", "params") and p.kind is not p.VAR_KEYWORD}


def fold(spec, names, expanded: dict) -> dict:
    """{declared name: value} -> the keyword arguments of a face taking ``names``
    (a pair such as betas as one tuple when the face takes the pair)."""
    out = {}
    halves = set()
    for pair, (first, second) in spec.pairs.items():
        if pair in names and first in expanded:
            out[pair] = (expanded[first], expanded[second])
            halves |= {first, second}
    out.update({n: v for n, v in expanded.items() if n in names and n not in halves})
    return out


def expand(spec, group: dict) -> dict:
    """A param group (or class kwargs) -> {declared name: value}, pairs split."""
    out = {}
    for name, value in group.items():
        if name == "params":
            continue
        if name in spec.pairs:
            out[spec.pairs[name][0]], out[spec.pairs[name][1]] = value
        else:
            out[name] = value
    return out


def functional_hyper_names(fn, cls) -> set[str]:
    excluded = set(per_step_names(cls)) | CALL_OPTIONS | set(FRIENDLY_PER_STEP)
    return {n for n, p in parameters_of(fn).items() if p.kind is p.KEYWORD_ONLY and n not in excluded}


def state_argument(role: str) -> str:
    return role + "s"  # tests/test_declarations.py checks the naming


# ------------------------------------------------------------- strategies
def _log10(lo: float, hi: float):
    return st.floats(lo, hi).map(lambda e: 10.0 ** e)


def value_strategy(name: str, default, check: str, choices):
    """Valid values of one declared hyperparameter, in sane magnitudes; the
    declared default is always among them."""
    if check == "flag":
        return st.booleans()
    if check == "choice":
        return st.sampled_from(list(choices))
    if name.startswith("eps"):  # an epsilon keeps divisions finite: at least 1e-12
        values = _log10(-12, -2)
        if check == "optional_nonnegative":
            values = st.one_of(st.none(), values)
        return st.one_of(st.just(default), values)
    ranges = {
        "nonnegative": st.one_of(st.just(0.0), st.floats(0, 1), _log10(-8, 0)),
        "positive": st.one_of(st.floats(0, 4, exclude_min=True), _log10(-6, 0)),
        "at_least_one": st.floats(1, 8),
        "nonpositive": st.floats(-1, 0),
        # no sign or scale declared: around 0, or around the default (Rprop's etas, step_size_max)
        "finite": st.one_of(st.floats(-2, 2), st.floats(-1, 1).map(lambda e: default * 2.0 ** e)),
        "unit_open": st.floats(0, 0.999),
        "unit_closed": st.floats(0, 1),
        "positive_or_inf": st.one_of(st.none(), st.just(math.inf), st.floats(0, 4, exclude_min=True)),
        "optional_nonnegative": st.one_of(st.none(), st.floats(0, 1)),
    }
    if check not in ranges:
        raise AssertionError(f"{name}: no strategy for check kind {check!r}; add one to tests/test_properties.py")
    return st.one_of(st.just(default), ranges[check])


def per_step_strategy(name: str, check: str, steps: int):
    """A schedule of ``steps`` per-step values (a step count starts anywhere)."""
    if check == "step":
        start = st.one_of(st.just(1), st.integers(1, 50), st.integers(1, 10**6))
        return start.map(lambda s: [s + t for t in range(steps)])
    if check == "nonnegative":
        one = st.one_of(st.just(1.0), st.just(0.0), st.floats(0, 1))
    elif check == "flag":
        one = st.booleans()
    else:
        raise AssertionError(f"per-step {name}: no strategy for check kind {check!r}")
    return st.lists(one, min_size=steps, max_size=steps)


# An invalid value per check kind (the rejection tests).
INVALID = {
    "nonnegative": [-1.0, math.nan, math.inf],
    "positive": [0.0, -1.0, math.inf],
    "at_least_one": [0.5, math.inf],
    "nonpositive": [0.5, -math.inf],
    "finite": [math.inf, -math.inf, math.nan],
    "unit_open": [1.0, -0.1],
    "unit_closed": [1.5, -0.1],
    "flag": ["yes"],
    "choice": ["no such choice"],
    "positive_or_inf": [0.0, -1.0],
    "optional_nonnegative": [-1.0],
    "step": [0, -1],
}


def class_accepts(cls, expanded: dict) -> bool:
    try:
        cls([np.zeros(1)], **fold(spec_of(cls), class_names(cls), expanded))
    except (TypeError, ValueError):
        return False
    return True


def repaired(cls, drawn: dict) -> dict:
    """``drawn`` if the class accepts it; else the first single field whose
    declared default makes it acceptable reset (SGD's dampening under
    nesterov); else fields reset in declared order until it is, then the
    drawn values put back where they still pass (Rprop's etas)."""
    if class_accepts(cls, drawn):
        return drawn
    defaults = {h[0]: h[1] for h in spec_of(cls).hypers}
    for name in drawn:
        trial = {**drawn, name: defaults[name]}
        if class_accepts(cls, trial):
            return trial
    fixed = dict(drawn)
    reset = []
    for name in drawn:
        fixed[name] = defaults[name]
        reset.append(name)
        if class_accepts(cls, fixed):
            break
    else:  # not reached: the declared defaults are valid
        raise AssertionError(f"{cls.__name__} rejects its declared defaults")
    for name in reset:
        trial = {**fixed, name: drawn[name]}
        if class_accepts(cls, trial):
            fixed = trial
    return fixed


@st.composite
def hyperparameters(draw, cls) -> dict:
    """{declared name: value} for every non-per-step field, valid for the class."""
    drawn = {name: draw(value_strategy(name, default, check, choices))
             for name, default, check, origin, choices in spec_of(cls).hypers if origin != "per_step"}
    return repaired(cls, drawn)


SMALL = [n for n in SIZES if n < 64]
LARGE = [n for n in SIZES if n > GRAIN]
assert LARGE, "a size above the parallel grain"


def shapes():
    """Array shapes: mostly 1-D of the registry's sizes (0, 1, vector tails,
    above the parallel grain), some 0-d and small 2-D and 3-D, empty axes
    included (Adafactor once divided by an empty last axis)."""
    last = st.sampled_from(SMALL)
    return st.one_of(
        st.sampled_from(SIZES).map(lambda n: (n,)),
        st.sampled_from(SIZES).map(lambda n: (n,)),
        st.sampled_from(LARGE).map(lambda n: (n,)),
        st.just(()),
        st.tuples(st.sampled_from([0, 1, 2, 3, 5]), last),
        st.tuples(st.sampled_from([1, 2]), st.sampled_from([0, 1, 3]), last),
    )


@dataclass
class Data:
    """How the arrays are made: a seed and magnitudes (NumPy draws the elements)."""

    seed: int
    param_scale: float
    grad_scale: float
    zero_rate: float
    none_rate: float = 0.0

    def rng(self, salt: int = 0):
        return np.random.default_rng([self.seed, salt])


DATA = st.builds(Data, st.integers(0, 2**32 - 1), st.sampled_from([1e-3, 1.0, 50.0]),
                 st.sampled_from([1e-4, 1e-1, 1.0, 30.0]), st.sampled_from([0.0, 0.0, 0.3]))


def random_array(rng, shape, dtype, scale: float, zero_rate: float) -> np.ndarray:
    a = np.asarray(rng.standard_normal(shape) * scale)
    if zero_rate:
        a = np.where(np.asarray(rng.random(shape)) < zero_rate, 0.0, a)
    return np.ascontiguousarray(a, dtype=dtype)


# ------------------------------------------------------------ comparisons
def assert_same(a, b, what: str) -> None:
    """Equal dtype, shape and values, as np.array_equal (0.0 equals -0.0), with
    NaN equal to NaN (not expected: inputs and magnitudes are finite)."""
    assert a is not None, f"{what}: None vs {b!r}"
    assert b is not None, f"{what}: {a!r} vs None"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} vs {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    if np.array_equal(a, b):
        return
    equal = (a == b) | (np.isnan(a) & np.isnan(b))
    if not equal.all():
        k = np.flatnonzero(~equal.ravel())
        raise AssertionError(f"{what}: {k.size} of {a.size} elements differ, first at flat index {k[0]}: "
                             f"{a.ravel()[k[0]]!r} vs {b.ravel()[k[0]]!r}; indices {k[:8].tolist()}")


def same_value(a, b) -> bool:
    """Equal hyperparameter or scalar-state values (NaN equals NaN, tuples itemwise)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_same_state_dict(a: dict, b: dict, what: str) -> None:
    assert len(a["param_groups"]) == len(b["param_groups"]), what
    for k, (ga, gb) in enumerate(zip(a["param_groups"], b["param_groups"])):
        assert set(ga) == set(gb), f"{what}: group {k} keys {sorted(ga)} vs {sorted(gb)}"
        for name in ga:
            assert same_value(ga[name], gb[name]), f"{what}: group {k} {name}: {ga[name]!r} vs {gb[name]!r}"
    assert set(a["state"]) == set(b["state"]), f"{what}: state of {sorted(a['state'])} vs {sorted(b['state'])}"
    for i in a["state"]:
        sa, sb = a["state"][i], b["state"][i]
        assert set(sa) == set(sb), f"{what}: state[{i}] keys {sorted(sa)} vs {sorted(sb)}"
        for key in sa:
            if isinstance(sa[key], np.ndarray):
                assert isinstance(sb[key], np.ndarray), f"{what}: state[{i}][{key!r}]"
                assert_same(sa[key], sb[key], f"{what}: state[{i}][{key!r}]")
            else:
                assert same_value(sa[key], sb[key]), f"{what}: state[{i}][{key!r}]: {sa[key]!r} vs {sb[key]!r}"


def assert_same_optimizer(a: Optimizer, b: Optimizer, what: str) -> None:
    for i, (pa, pb) in enumerate(zip(a.params, b.params)):
        assert_same(pa, pb, f"{what}: params[{i}]")
    assert_same_state_dict(a.state_dict(), b.state_dict(), what)


def run_reference(fn, *args, **kwargs) -> None:
    """The oracle, with NumPy's floating-point warnings off (a non-finite
    result is compared, and counted as a hypothesis event)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        fn(*args, **kwargs)


def note_nonfinite(arrays) -> None:
    if any(a is not None and not np.isfinite(a).all() for a in arrays):
        event("non-finite values in the result")


def note_coverage(shapes, threads: int) -> None:
    """Events for --hypothesis-show-statistics: what the examples reached."""
    sizes = [math.prod(s) for s in shapes]
    if max(sizes) > GRAIN:
        event(f"an array above the parallel grain, {threads} thread(s)")
    if any(len(s) >= 2 for s in shapes):
        event("an array of ndim >= 2")
    if 0 in sizes:
        event("an empty array")


# ------------------------------------------------------ the functional form
@dataclass
class FunctionalCase:
    cls: type
    hypers: dict          # declared name -> value
    dtype: type
    shapes: list
    steps: int
    per_step: dict        # per-step name -> list of values (one per step)
    losses: list
    threads: int
    data: Data

    def setup(self):
        """The arrays: params, state per role (None where not needed), and
        the needed roles from the class's declaration (with the class-only
        fields, such as Rprop's lr and Adagrad's initial_accumulator_value,
        giving the initial values)."""
        rng = self.data.rng()
        params = [random_array(rng, s, self.dtype, self.data.param_scale, self.data.zero_rate) for s in self.shapes]
        opt = self.cls([p.copy() for p in params], **fold(spec_of(self.cls), class_names(self.cls), self.hypers))
        group = opt.param_groups[0]
        roles = [r for r, _ in spec_of(self.cls).state]
        state = {r: [] for r in roles}
        for p in params:
            needed = opt._roles_needed(group, p)
            for r in roles:
                state[r].append(np.full(opt._state_shape(r, p), opt._initial_value(r, group), dtype=p.dtype)
                                if r in needed else None)
        state = {r: (arrays if any(a is not None for a in arrays) else None) for r, arrays in state.items()}
        return params, state

    def grads(self, t: int):
        rng = self.data.rng(1 + t)
        return [random_array(rng, s, self.dtype, self.data.grad_scale, self.data.zero_rate) for s in self.shapes]

    def kwargs(self, fn, t: int) -> dict:
        """Hyperparameters and the per-step values of step t (0-based) for fn."""
        params = parameters_of(fn)
        kw = fold(spec_of(self.cls), functional_hyper_names(fn, self.cls), self.hypers)
        kw.update({n: values[t] for n, values in self.per_step.items() if n in params})
        if "loss" in params:
            kw["loss"] = self.losses[t]
            kw["prev_loss"] = self.losses[t - 1] if t else None
        return kw


@st.composite
def functional_cases(draw, cls):
    steps = draw(st.integers(3, 5))
    fn = functional_of(cls)
    params = parameters_of(fn)
    per_step = {name: draw(per_step_strategy(name, check, steps))
                for name, _d, check, origin, _c in spec_of(cls).hypers if origin == "per_step" and name in params}
    losses = draw(st.lists(st.floats(0, 1), min_size=steps, max_size=steps))
    return FunctionalCase(cls, draw(hyperparameters(cls)), draw(st.sampled_from(DTYPES)),
                          draw(st.lists(shapes(), min_size=1, max_size=3)), steps, per_step, losses,
                          draw(st.sampled_from([1, 2])), draw(DATA))


def call_with_state(fn, params, grads, state: dict, **kwargs):
    return fn(params, grads, **{state_argument(r): arrays for r, arrays in state.items()}, **kwargs)


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@_settings("functional")
@given(data=st.data())
def test_functional_matches_reference(cls, data):
    case = data.draw(functional_cases(cls), label="case")
    note_coverage(case.shapes, case.threads)
    fast_params, fast_state = case.setup()
    ref_params, ref_state = copy.deepcopy((fast_params, fast_state))
    for t in range(case.steps):
        grads = case.grads(t)
        saved = [g.copy() for g in grads]
        call_with_state(functional_of(cls), fast_params, grads, fast_state, num_threads=case.threads,
                        **case.kwargs(functional_of(cls), t))
        for k, (g, g0) in enumerate(zip(grads, saved)):
            assert_same(g, g0, f"step {t + 1}: grads[{k}] written")
        run_reference(call_with_state, reference_of(cls), ref_params, grads, ref_state,
                      **case.kwargs(reference_of(cls), t))
    note_nonfinite(ref_params)
    for k, (a, b) in enumerate(zip(fast_params, ref_params)):
        assert_same(a, b, f"params[{k}] after {case.steps} steps")
    for role, arrays in fast_state.items():
        for k, (a, b) in enumerate(zip(arrays or [], ref_state[role] or [])):
            if a is not None:
                assert_same(a, b, f"{state_argument(role)}[{k}] after {case.steps} steps")


# --------------------------------------------------------- the class form
@dataclass
class ClassCase:
    cls: type
    groups: list          # [(declared hypers, [(shape, dtype), ...])]
    options: dict         # max_grad_norm, grad_clip_value, norm_type
    steps: int
    threads: int
    data: Data
    losses: list = field(default_factory=list)

    def params(self) -> list[list[np.ndarray]]:
        rng = self.data.rng()
        return [[random_array(rng, s, d, self.data.param_scale, self.data.zero_rate) for s, d in arrays]
                for _, arrays in self.groups]

    def make(self, params, defaults_only: bool = False, **options) -> Optimizer:
        spec, names = spec_of(self.cls), class_names(self.cls)
        groups = [{"params": ps, **({} if defaults_only else fold(spec, names, hypers))}
                  for ps, (hypers, _) in zip(params, self.groups)]
        return self.cls(groups, **{**self.options, **options})

    def grads(self, t: int) -> list:
        """Gradients of step t (0-based), aligned with opt.params; some None."""
        rng = self.data.rng(1 + t)
        out = []
        for _, arrays in self.groups:
            for shape, dtype in arrays:
                g = random_array(rng, shape, dtype, self.data.grad_scale, self.data.zero_rate)
                out.append(None if rng.random() < self.data.none_rate else g)
        return out


@st.composite
def class_cases(draw, cls, min_steps=3, max_steps=5):
    groups = []
    for _ in range(draw(st.integers(1, 2))):
        arrays = draw(st.lists(st.tuples(shapes(), st.sampled_from(DTYPES)), min_size=1, max_size=2))
        groups.append((draw(hyperparameters(cls)), arrays))
    options = {
        "max_grad_norm": draw(st.one_of(st.none(), st.floats(1e-3, 10))),
        "grad_clip_value": draw(st.one_of(st.none(), st.floats(0, 4, exclude_min=True))),
        "norm_type": draw(st.sampled_from([2.0, 1.0, math.inf])),
    }
    steps = draw(st.integers(min_steps, max_steps))
    data = replace(draw(DATA), none_rate=draw(st.sampled_from([0.0, 0.0, 0.25])))
    losses = draw(st.lists(st.floats(0, 1), min_size=12, max_size=12))
    return ClassCase(cls, groups, options, steps, draw(st.sampled_from([1, 2])), data, losses)


class ReferenceRun:
    """The reference applied per parameter as the class should: its group's
    hyperparameters, the per-step values of the class's hooks for that
    parameter's own scalar state (advanced only when it has a gradient), state
    arrays created when first needed with the class's initial values."""

    def __init__(self, opt: Optimizer, params: list[np.ndarray]):
        self.opt = opt
        self.params = [p.copy() for p in params]
        self.state = [{} for _ in params]
        self.scalars = [{"step": 0} for _ in params]
        self.prev_loss: list[float | None] = [None for _ in params]

    def step(self, grads, loss: float) -> None:
        opt, cls = self.opt, type(self.opt)
        spec, fn = spec_of(cls), reference_of(cls)
        fn_params = parameters_of(fn)
        present = [g for g in grads if g is not None]
        grad_scale = 1.0
        if opt.max_grad_norm is not None:
            norm, _ = global_grad_norm(present, opt.norm_type)
            if math.isfinite(norm):
                grad_scale = clip_factor(norm, opt.max_grad_norm)
        groups = [group for group in opt.param_groups for _ in group["params"]]
        roles = [r for r, _ in spec.state]
        for i, (p, g, group) in enumerate(zip(self.params, grads, groups)):
            if g is None:
                continue
            needed = opt._roles_needed(group, p)
            fresh = {r for r in needed if r not in self.state[i]}
            for r in fresh:
                self.state[i][r] = np.full(opt._state_shape(r, p), opt._initial_value(r, group), dtype=p.dtype)
            scalars = {**self.scalars[i], "step": self.scalars[i]["step"] + 1}
            kw = fold(spec, functional_hyper_names(fn, cls), expand(spec, group))
            kw.update({n: v for n, v in opt._per_step(group, dict(scalars), set(fresh), loss).items()
                       if n in fn_params})
            if "grad_scale" in fn_params:
                kw["grad_scale"] = grad_scale
            if "clip_value" in fn_params:
                kw["clip_value"] = opt.grad_clip_value
            if "loss" in fn_params:
                kw["loss"], kw["prev_loss"] = loss, self.prev_loss[i]
            for name in STEP_COUNTS & set(kw):  # the step count is the parameter's own
                assert kw[name] == scalars["step"], f"params[{i}]: {name} {kw[name]} != {scalars['step']}"
            run_reference(fn, p, g, **{state_argument(r): self.state[i].get(r) for r in roles}, **kw)
            self.scalars[i] = opt._after_step(group, dict(scalars), loss)
            self.prev_loss[i] = loss

    def assert_matches(self, opt: Optimizer, what: str) -> None:
        note_nonfinite(self.params)
        for i, (a, b) in enumerate(zip(opt.params, self.params)):
            assert_same(a, b, f"{what}: params[{i}]")
            if self.scalars[i]["step"] == 0:
                assert i not in opt.state, f"{what}: state for params[{i}], which never had a gradient"
                continue
            kept = opt.state[i]
            arrays = {k: v for k, v in kept.items() if isinstance(v, np.ndarray)}
            assert set(arrays) == set(self.state[i]), f"{what}: state[{i}] arrays {sorted(arrays)}"
            for role, value in arrays.items():
                assert_same(value, self.state[i][role], f"{what}: state[{i}][{role!r}]")
            others = {k: v for k, v in kept.items() if not isinstance(v, np.ndarray)}
            assert set(others) == set(self.scalars[i]), f"{what}: state[{i}] scalars {sorted(others)}"
            for key, value in others.items():
                assert same_value(value, self.scalars[i][key]), \
                    f"{what}: state[{i}][{key!r}] = {value!r}, expected {self.scalars[i][key]!r}"


class Threads:
    """fastopt.set_num_threads for the class form; the OpenMP default after."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        fastopt.set_num_threads(self.n)

    def __exit__(self, *exc):
        fastopt.set_num_threads(0)


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@_settings("class")
@given(data=st.data())
def test_class_matches_reference(cls, data):
    case = data.draw(class_cases(cls), label="case")
    note_coverage([shape for _, arrays in case.groups for shape, _ in arrays], case.threads)
    opt = case.make(case.params())
    ref = ReferenceRun(opt, opt.params)
    with Threads(case.threads):
        for t in range(case.steps):
            grads = case.grads(t)
            saved = [None if g is None else g.copy() for g in grads]
            ref.step(grads, case.losses[t])  # before the class's step: the hooks see the state before it
            opt.step(grads, loss=case.losses[t])
            for k, (g, g0) in enumerate(zip(grads, saved)):
                if g is not None:
                    assert_same(g, g0, f"step {t + 1}: grads[{k}] written")
    ref.assert_matches(opt, f"after {case.steps} steps")


# -------------------------------------------------- (2) state_dict round trip
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@_settings("round_trip")
@given(data=st.data())
def test_state_dict_round_trip(cls, data):
    case = data.draw(class_cases(cls, 0, 3), label="case")
    resume = data.draw(st.integers(1, 3), label="steps after loading")
    original = case.make(case.params())
    with Threads(case.threads):
        for t in range(case.steps):
            original.step(case.grads(t), loss=case.losses[t])
        saved = copy.deepcopy(original.state_dict())
        untouched = copy.deepcopy(saved)
        params = [[p.copy() for p in group["params"]] for group in original.param_groups]
        restored = case.make(params, defaults_only=True)
        restored.load_state_dict(saved)
        assert_same_state_dict(restored.state_dict(), untouched, "state_dict() after load_state_dict")
        for t in range(case.steps, case.steps + resume):
            grads = case.grads(t)
            original.step(grads, loss=case.losses[t])
            restored.step(grads, loss=case.losses[t])
            assert_same_optimizer(restored, original, f"step {t + 1}, {t + 1 - case.steps} after loading")
    assert_same_state_dict(saved, untouched, "the loaded state_dict, after the loading optimizer's steps")


# ------------------------------------------------ (3) rejected calls change nothing
REJECTIONS = (TypeError, ValueError)


def other_dtype(dtype):
    return np.float32 if np.dtype(dtype) == np.float64 else np.float64


def bad_array(kind: str, like: np.ndarray):
    """An argument the kernels must reject in place of ``like``."""
    if kind == "shape":
        return np.zeros(like.shape[:-1] + (like.shape[-1] + 1,) if like.ndim else (2,), like.dtype)
    if kind == "dtype":
        return np.zeros(like.shape, other_dtype(like.dtype))
    if kind == "int":
        return np.zeros(like.shape, np.int64)
    if kind == "layout":  # not C-contiguous: every other element of a larger array
        return np.zeros(like.shape[:-1] + (2 * like.shape[-1],), like.dtype)[..., ::2]
    if kind == "list":
        return like.tolist()
    raise AssertionError(kind)


def bad_kinds(like: np.ndarray) -> list[str]:
    kinds = ["shape", "dtype", "int", "list"]
    if like.ndim and like.shape[-1] >= 2 and like.size >= 2:
        kinds.append("layout")
    return kinds


def invalid_hyper(draw, cls, names: set, spec_checks: dict):
    """(name, invalid value) for one hyperparameter a face takes, or None."""
    candidates = sorted(n for n in names if spec_checks.get(n) in INVALID)
    if not candidates:
        return None
    name = draw(st.sampled_from(candidates), label="invalid hyperparameter")
    return name, draw(st.sampled_from(INVALID[spec_checks[name]]), label="invalid value")


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@_settings("rejected_functional")
@given(data=st.data())
def test_rejected_functional_call_changes_nothing(cls, data):
    case = data.draw(functional_cases(cls), label="case")
    fn, spec = functional_of(cls), spec_of(cls)
    params, state = case.setup()
    grads = case.grads(0)
    good_kwargs = case.kwargs(fn, 0)
    kwargs = dict(good_kwargs)
    checks = {h[0]: h[2] for h in spec.hypers}
    fn_params = parameters_of(fn)
    k = data.draw(st.integers(0, len(params) - 1), label="index")  # a later array: earlier ones untouched too
    present = [r for r, arrays in state.items() if arrays is not None and arrays[k] is not None]
    kinds = ["grad", "hyper", "grad count"] + (["state", "missing state", "alias", "read-only state"]
                                                if present else [])
    kinds.append("read-only param")
    kind = data.draw(st.sampled_from(kinds), label="rejection")
    grads_arg = list(grads)
    state_arg = {r: (None if arrays is None else list(arrays)) for r, arrays in state.items()}
    if kind == "grad":
        grads_arg[k] = bad_array(data.draw(st.sampled_from(bad_kinds(params[k])), label="bad grad"), params[k])
    elif kind == "hyper":
        taken = functional_hyper_names(fn, cls) | {n for n in per_step_names(cls) if n in fn_params}
        expanded = {n for n in checks
                    if n in taken or any(n in halves for p, halves in spec.pairs.items() if p in taken)}
        pick = invalid_hyper(data.draw, cls, expanded, checks)
        assert pick is not None
        name, value = pick
        pair = next((p for p, halves in spec.pairs.items() if name in halves and p in fn_params), None)
        if pair is not None:
            halves = list(kwargs[pair])
            halves[spec.pairs[pair].index(name)] = value
            kwargs[pair] = tuple(halves)
        else:
            kwargs[name] = value
    elif kind == "grad count":
        grads_arg = grads_arg[:-1] if len(grads_arg) > 1 else grads_arg + [grads_arg[0].copy()]
    elif kind == "state":
        role = data.draw(st.sampled_from(present), label="role")
        like = state[role][k]
        state_arg[role][k] = bad_array(data.draw(st.sampled_from(bad_kinds(like)), label="bad state"), like)
    elif kind == "missing state":
        role = data.draw(st.sampled_from(present), label="role")
        state_arg[role][k] = None
    elif kind == "alias":  # a state array that is the parameter itself
        role = data.draw(st.sampled_from([r for r in present if state[r][k].shape == params[k].shape]
                                         or present), label="role")
        if state[role][k].shape == params[k].shape and params[k].size:
            state_arg[role][k] = params[k]
        else:
            state_arg[role][k] = None  # nothing to alias (empty or factored): a missing array instead
    elif kind == "read-only state":
        role = data.draw(st.sampled_from(present), label="role")
        state[role][k].flags.writeable = False
    elif kind == "read-only param":
        params[k].flags.writeable = False
    before = copy.deepcopy((params, grads, state))
    with pytest.raises(REJECTIONS):
        call_with_state(fn, params, grads_arg, state_arg, num_threads=case.threads, **kwargs)
    for j, (a, b) in enumerate(zip(params, before[0])):
        assert_same(a, b, f"{kind}: params[{j}]")
    for j, (a, b) in enumerate(zip(grads, before[1])):
        assert_same(a, b, f"{kind}: grads[{j}]")
    for role, arrays in state.items():
        for j, (a, b) in enumerate(zip(arrays or [], before[2][role] or [])):
            if a is not None:
                assert_same(a, b, f"{kind}: {state_argument(role)}[{j}]")
    # The control: the same call without the bad argument is accepted, so the
    # rejection above was for that argument (not, say, a misspelt keyword).
    for a in params + [a for arrays in state.values() for a in arrays or [] if a is not None]:
        a.flags.writeable = True
    call_with_state(fn, params, grads, state, num_threads=case.threads, **good_kwargs)


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@_settings("rejected_step")
@given(data=st.data())
def test_rejected_step_changes_nothing(cls, data):
    case = data.draw(class_cases(cls, 0, 2), label="case")
    nonfinite = data.draw(st.sampled_from(["ignore", "raise"]), label="nonfinite")
    spec = spec_of(cls)
    opt = case.make(case.params(), nonfinite=nonfinite)
    twin = case.make(case.params(), nonfinite=nonfinite)
    with Threads(case.threads):
        for t in range(case.steps):
            opt.step(case.grads(t), loss=case.losses[t])
            twin.step(case.grads(t), loss=case.losses[t])
        grads = [g if g is not None else np.zeros(p.shape, p.dtype) for g, p in
                 zip(case.grads(case.steps), opt.params)]
        kinds = ["grad", "grad count", "state_dict", "hyper", "read-only param"]
        if nonfinite == "raise" and any(g.size for g in grads):
            kinds.append("nan grad")
        kind = data.draw(st.sampled_from(kinds), label="rejection")
        k = data.draw(st.integers(0, len(grads) - 1), label="index")
        groups_of = [n for n, group in enumerate(opt.param_groups) for _ in group["params"]]
        restore = None
        read_only = None
        bad = list(grads)
        if kind == "grad":
            bad[k] = bad_array(data.draw(st.sampled_from(bad_kinds(grads[k])), label="bad grad"), grads[k])
        elif kind == "grad count":
            bad = bad + [grads[0].copy()] if data.draw(st.booleans(), label="extra") else bad[:-1]
        elif kind == "nan grad":
            k = next(j for j, g in enumerate(grads) if g.size)
            bad[k] = grads[k].copy()
            bad[k].flat[data.draw(st.integers(0, grads[k].size - 1), label="element")] = math.nan
        elif kind == "read-only param":
            read_only = opt.params[k]
            read_only.flags.writeable = False
        elif kind == "hyper":
            group = opt.param_groups[groups_of[k]]
            checks = {h[0]: h[2] for h in spec.hypers}
            pick = invalid_hyper(data.draw, cls, set(expand(spec, group)), checks)
            assert pick is not None
            name, value = pick
            pair = next((p for p, halves in spec.pairs.items() if name in halves), None)
            key = pair or name
            restore = (groups_of[k], key, group[key])
            if pair is not None:
                halves = list(group[pair])
                halves[spec.pairs[pair].index(name)] = value
                value = tuple(halves)
            group[key] = value
        before_params = [p.copy() for p in opt.params]
        before = copy.deepcopy(opt.state_dict())
        if kind == "state_dict":
            corrupt = corrupted_state_dict(data.draw, opt.state_dict(), opt)
            with pytest.raises(REJECTIONS):
                opt.load_state_dict(corrupt)
        else:
            with pytest.raises(REJECTIONS):
                opt.step(bad, loss=case.losses[case.steps])
        for i, (a, b) in enumerate(zip(opt.params, before_params)):
            assert_same(a, b, f"{kind}: params[{i}]")
        assert_same_state_dict(opt.state_dict(), before, f"{kind}: state_dict")
        if restore:
            opt.param_groups[restore[0]][restore[1]] = restore[2]
        if read_only is not None:
            read_only.flags.writeable = True
        assert_same_optimizer(opt, twin, f"{kind}: against the twin")
        for t in range(case.steps, case.steps + 2):
            grads = case.grads(t)
            opt.step(grads, loss=case.losses[t])
            twin.step(grads, loss=case.losses[t])
        assert_same_optimizer(opt, twin, f"{kind}: two steps after the rejected call")


def corrupted_state_dict(draw, saved: dict, opt: Optimizer) -> dict:
    """A copy of a state_dict that load_state_dict must reject as a whole."""
    arrays = [(i, key) for i, s in saved["state"].items() for key, v in s.items() if isinstance(v, np.ndarray)]
    kinds = ["group count", "param count", "unknown key", "state index"]
    if arrays:
        kinds += ["array shape", "array dtype"]
    if any("step" in s for s in saved["state"].values()):
        kinds.append("negative step")
    spec = spec_of(type(opt))
    checks = {h[0]: h[2] for h in spec.hypers}
    if any(checks.get(n) in INVALID for n in expand(spec, saved["param_groups"][-1])):
        kinds.append("group hyper")
    kind = draw(st.sampled_from(kinds), label="corruption")
    bad = copy.deepcopy(saved)
    if kind == "group count":
        bad["param_groups"].append(copy.deepcopy(bad["param_groups"][-1]))
    elif kind == "param count":
        bad["param_groups"][-1]["params"].append(len(opt.params))
    elif kind == "unknown key":
        bad["state"].setdefault(0, {})["no_such_state"] = 1.0
    elif kind == "state index":
        bad["state"][len(opt.params)] = {"step": 1}
    elif kind == "array shape":
        i, key = draw(st.sampled_from(arrays), label="array")
        bad["state"][i][key] = np.zeros(bad["state"][i][key].shape + (2,))
    elif kind == "array dtype":
        i, key = draw(st.sampled_from(arrays), label="array")
        bad["state"][i][key] = np.zeros(bad["state"][i][key].shape, np.int64)
    elif kind == "negative step":
        i = next(i for i, s in bad["state"].items() if "step" in s)
        bad["state"][i]["step"] = -1
    elif kind == "group hyper":
        group = bad["param_groups"][-1]
        name, value = invalid_hyper(draw, type(opt), set(expand(spec, group)), checks)
        pair = next((p for p, halves in spec.pairs.items() if name in halves), None)
        if pair is not None:
            halves = list(group[pair])
            halves[spec.pairs[pair].index(name)] = value
            group[pair] = tuple(halves)
        else:
            group[name] = value
    return bad


def test_every_declaration_has_a_class_here():
    """The properties above are parametrized by class: every C++ declaration
    must be reached through at least one."""
    assert {c._name for c in CLASSES} == set(SPECS)
