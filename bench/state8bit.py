"""python -m bench 8bit: AdamW with 8-bit optimizer state against float32
state, the roofline and bitsandbytes.

8-bit state is bitsandbytes' blockwise dynamic quantization (docs/algorithms.md
2.6): each moment is stored as uint8 codes plus one float32 absmax per block
of 256 elements. For each N (1e5, 1e6, 1e7; float32 parameters and
gradients, and one bfloat16 row at the largest N when ml_dtypes is
installed), sampled in the same interleaved rounds:

* ``fastopt 32-bit``: ``fastopt.functional.adamw_`` with float32 moments;
  the baseline.
* ``fastopt 8-bit``: the same call with each moment a ``(codes, absmax)``
  pair (``fastopt._core.quantize_blockwise``).
* ``roofline 8-bit`` / ``roofline 32-bit``: ``fastopt._core.roofline`` (one
  pass, trivial math) over float32 arrays sized to move the bytes of the
  8-bit / 32-bit step, with the same mix of reads and writes (see
  roofline_layout), its time scaled to the step's exact bytes (absmax
  included).
* ``bitsandbytes AdamW8bit``: ``bitsandbytes.optim.AdamW8bit`` on CPU torch
  tensors, when bitsandbytes imports (skipped with a line otherwise).

Bytes per parameter (read + written, N-element arrays): 32-bit AdamW reads
p, g, m, v and writes p, m, v: 16 + 12 = 28 B in float32 (bfloat16 p and g:
12 + 10 = 22 B). 8-bit AdamW: p 4+4, g 4, the codes of m and v 1+1 each =
16 B (bfloat16 p and g: 2+2+2+4 = 10 B), plus the absmax of m and v read and
written, 16 B per block of 256 (0.0625 B per parameter). Resident state per
parameter: the sum of the state arrays' nbytes / N.

Then the accuracy of 8-bit state: 200 AdamW steps on a noisy quadratic (the
same noise sequence for every run) with 8-bit and with 32-bit state, and the
relative difference of the parameters (max and median over the elements).

Last, the compute floor (compute_floor): one thread on cache-resident
arrays, the 8-bit step's own arithmetic against the 32-bit step's memory
time per element at the largest N: where the lookups of requantization
cost more than the bytes they save, the 8-bit step cannot be faster.

Medians of interleaved samples (each sample a batch of calls lasting at
least 2 ms); ratios come from one run, and are what compares.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import fastopt
from fastopt import _core
from fastopt import functional as F

from .timing import format_seconds

BLOCK = 256                       # elements per absmax (fastopt._core.QUANT_BLOCK)
HYPER = dict(lr=1e-3, weight_decay=1e-2)
STEP = 10                         # the step count passed to every timed call (as bench/steps.py)
SIZES = [10**5, 10**6, 10**7]
ACCURACY_N = 10**5
ACCURACY_STEPS = 200
ACCURACY_LR = 1e-2
NOISE = 0.1                       # standard deviation of the gradient noise

FAST32, FAST8 = "fastopt 32-bit", "fastopt 8-bit"
ROOF8, ROOF32 = "roofline 8-bit", "roofline 32-bit"
BNB = "bitsandbytes AdamW8bit"


def seconds_budget(n: int) -> float:
    """Sampling time per (dtype, N) group (at least MIN_ROUNDS rounds)."""
    return 1.5 if n <= 10**5 else 3.0 if n <= 10**6 else 5.0


MIN_ROUNDS = 5
MAX_ROUNDS = 41


def blocks(n: int) -> int:
    return -(-n // BLOCK)


@dataclass(frozen=True)
class Traffic:
    """What a step must move: bytes per parameter read and written (the
    N-element arrays), and bytes per block of 256 (the absmax of m and v)."""
    read: int
    written: int
    per_block: int = 0

    def bytes(self, n: int) -> int:
        return (self.read + self.written) * n + self.per_block * blocks(n)

    def per_param(self, n: int) -> float:
        return self.bytes(n) / n


# (state bits, parameter dtype) -> Traffic. float32: p, g, m, v read (16 B),
# p, m, v written (12 B); 8-bit: p, g read (8 B) and written (p, 4 B), codes
# of m and v read (2 B) and written (2 B), absmax of m and v 4 B each read
# and written per block. bfloat16: p and g 2 B each.
TRAFFIC = {
    (32, "float32"): Traffic(read=4 + 4 + 4 + 4, written=4 + 4 + 4),
    (8, "float32"): Traffic(read=4 + 4 + 1 + 1, written=4 + 1 + 1, per_block=2 * (4 + 4)),
    (32, "bfloat16"): Traffic(read=2 + 2 + 4 + 4, written=2 + 4 + 4),
    (8, "bfloat16"): Traffic(read=2 + 2 + 1 + 1, written=2 + 1 + 1, per_block=2 * (4 + 4)),
}

# The (written, read) array counts fastopt._core.roofline is instantiated for.
ROOFLINE_COUNTS = {(1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2), (5, 1)}


def roofline_layout(traffic: Traffic, n: int) -> tuple[int, int, int]:
    """(elements, written, read): one roofline call over float32 arrays of
    `elements` that moves the step's bytes with its mix of reads and writes.

    The roofline reads every array and writes `written` of them, and all
    arrays of one call have one shape. So each array stands for `unit` bytes
    per parameter (an array of n * unit / 4 float32 elements): written =
    bytes written / unit, read-only = (bytes read - bytes written) / unit.
    32-bit float32 (16 read, 12 written): unit 4, 3 written + 1 read, N
    elements (bench/steps.py's roofline). 8-bit float32 (10 read, 6
    written): unit 2, 3 written + 2 read of N/2 elements = 6 B read and
    written + 4 B read only = 16 B per parameter. 8-bit bfloat16 (6, 4):
    2 written + 1 read of N/2. 32-bit bfloat16 (12, 10): 5 written + 1 read
    of N/2. The absmax bytes (0.0625 B per parameter) and the rounding of
    n * unit / 4 are left to the time scaling in measure_group."""
    for unit in (4, 2, 1):
        extra = traffic.read - traffic.written
        if traffic.written % unit or extra % unit:
            continue
        counts = (traffic.written // unit, extra // unit)
        if counts in ROOFLINE_COUNTS:
            return -(-n * unit // 4), *counts
    raise ValueError(f"no roofline layout moves {traffic}")


def roofline_step(traffic: Traffic, n: int) -> tuple[Callable[[], None], int]:
    """The roofline call for `traffic` and the bytes it moves."""
    elements, written, read = roofline_layout(traffic, n)
    arrays = [np.ones(elements, np.float32) for _ in range(written + read)]
    return (lambda: _core.roofline(arrays[:written], arrays[written:])), (2 * written + read) * 4 * elements


def interleaved_medians(fns: dict[str, Callable[[], None]], seconds: float, min_rounds: int = MIN_ROUNDS,
                        max_rounds: int = MAX_ROUNDS, min_sample: float = 2e-3) -> tuple[dict[str, float], int]:
    """Median seconds per call of each function, sampled round-robin (a
    noisy neighbour hits all alike), each sample a batch lasting at least
    `min_sample`; at least `min_rounds` rounds, more until `seconds` have
    passed (at most `max_rounds`). Also returns the number of rounds."""
    inner = {}
    for name, fn in fns.items():
        fn()  # warm up: page in buffers, create state, settle the thread pool
        start = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_sample / max(time.perf_counter() - start, 1e-9)) + 1)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() < deadline):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / inner[name])
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}, rounds


def param_dtype(dtype: str):
    if dtype == "float32":
        return np.float32
    import ml_dtypes
    return getattr(ml_dtypes, dtype)


def make_state(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Float32 moments of realistic magnitude: m signed, v >= 0."""
    m = (rng.standard_normal(n, dtype=np.float32) * 1e-3)
    v = np.square(rng.standard_normal(n, dtype=np.float32) * 1e-2)
    return m, v


def fastopt_steps(n: int, dtype: str, seed: int = 0) -> dict[str, tuple[Callable[[], None], int]]:
    """{label: (one step, resident state bytes)} for 32-bit and 8-bit state,
    each over its own parameter; the gradient is shared (read only)."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n, dtype=np.float32).astype(param_dtype(dtype))
    g = (rng.standard_normal(n, dtype=np.float32) * 1e-2).astype(param_dtype(dtype))
    m, v = make_state(n, rng)
    p32, p8 = p.copy(), p.copy()
    m8, v8 = _core.quantize_blockwise(m, True), _core.quantize_blockwise(v, False)
    steps = {
        FAST32: (lambda: F.adamw_([p32], [g], [m], [v], step=STEP, **HYPER), m.nbytes + v.nbytes),
        FAST8: (lambda: F.adamw_([p8], [g], [m8], [v8], step=STEP, **HYPER),
                sum(a.nbytes for pair in (m8, v8) for a in pair)),
    }
    return steps


def _bitsandbytes():
    """(torch, bitsandbytes) or the reason they are unavailable."""
    try:
        import bitsandbytes
        import torch
    except Exception as exc:  # not installed, or no usable backend
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    return torch, bitsandbytes


def bitsandbytes_step(n: int, dtype: str, seed: int = 0):
    """(one AdamW8bit step, resident state bytes) on CPU torch tensors, or
    the reason it is unavailable."""
    loaded = _bitsandbytes()
    if isinstance(loaded, str):
        return loaded
    torch, bnb = loaded
    generator = torch.Generator().manual_seed(seed)
    param = torch.randn(n, generator=generator).to(getattr(torch, dtype))
    param.grad = (torch.randn(n, generator=generator) * 1e-2).to(getattr(torch, dtype))
    try:
        opt = bnb.optim.AdamW8bit([param], min_8bit_size=0, **HYPER)
        opt.step()  # creates the state
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    state = sum(t.nbytes for t in opt.state[param].values() if isinstance(t, torch.Tensor))
    return opt.step, state


def measure_group(n: int, dtype: str, with_bitsandbytes: bool = True) -> dict:
    """One interleaved run of every implementation at (N, dtype)."""
    fns, state_bytes, moved, skipped = {}, {}, {}, {}
    for label, (fn, state) in fastopt_steps(n, dtype).items():
        fns[label], state_bytes[label] = fn, state
    moved[FAST32], moved[FAST8] = TRAFFIC[32, dtype], TRAFFIC[8, dtype]
    roof_bytes = {}
    for label, bits in ((ROOF8, 8), (ROOF32, 32)):
        fns[label], roof_bytes[label] = roofline_step(TRAFFIC[bits, dtype], n)
        moved[label] = TRAFFIC[bits, dtype]
    if with_bitsandbytes:
        built = bitsandbytes_step(n, dtype)
        if isinstance(built, str):
            skipped[BNB] = built
        else:
            fns[BNB], state_bytes[BNB] = built
            moved[BNB] = TRAFFIC[8, dtype]  # the least it can move: the same arrays as fastopt 8-bit
    seconds, rounds = interleaved_medians(fns, seconds_budget(n), min_rounds=MIN_ROUNDS)
    measured = {label: seconds[label] for label in (ROOF8, ROOF32)}
    for label in (ROOF8, ROOF32):  # the roofline's time for the step's exact bytes
        seconds[label] *= moved[label].bytes(n) / roof_bytes[label]
    roofline_for = {FAST32: ROOF32, FAST8: ROOF8, BNB: ROOF8, ROOF8: ROOF8, ROOF32: ROOF32}
    rows = []
    for label, s in seconds.items():
        rows.append(dict(dtype=dtype, n=n, implementation=label, seconds=s,
                         bytes_per_param=moved[label].per_param(n), gbps=moved[label].bytes(n) / s / 1e9,
                         roofline=seconds[roofline_for[label]] / s,
                         vs_32bit=seconds[FAST32] / s,
                         state_bytes_per_param=state_bytes[label] / n if label in state_bytes else None))
    summary = dict(dtype=dtype, n=n, rounds=rounds, roofline_measured_seconds=measured,
                   speedup_8bit_vs_32bit=seconds[FAST32] / seconds[FAST8],
                   roofline_8bit=seconds[ROOF8] / seconds[FAST8],
                   roofline_32bit=seconds[ROOF32] / seconds[FAST32],
                   speedup_8bit_vs_bitsandbytes=seconds[BNB] / seconds[FAST8] if BNB in seconds else None,
                   skipped=skipped)
    return dict(rows=rows, summary=summary)


HEADER = (f"{'AdamW step':<24}{'dtype':<10}{'N':>7}{'time':>11}{'B/param':>9}{'GB/s':>7}{'x roofline':>11}"
          f"{'vs 32-bit':>10}{'state B/param':>15}")


def format_group(group: dict) -> str:
    lines = []
    for r in group["rows"]:
        state = f"{r['state_bytes_per_param']:.4g}" if r["state_bytes_per_param"] is not None else "-"
        lines.append(f"{r['implementation']:<24}{r['dtype']:<10}{r['n']:>7.0e}{format_seconds(r['seconds']):>11}"
                     f"{r['bytes_per_param']:>9.4g}{r['gbps']:>7.1f}{r['roofline']:>11.2f}"
                     f"{r['vs_32bit']:>9.2f}x{state:>15}")
    s = group["summary"]
    for label, why in s["skipped"].items():
        lines.append(f"{label:<24}{s['dtype']:<10}{s['n']:>7.0e}  skipped: {why}")
    vs_bnb = (f"{s['speedup_8bit_vs_bitsandbytes']:.1f}x faster than bitsandbytes"
              if s["speedup_8bit_vs_bitsandbytes"] else "bitsandbytes not measured")
    lines.append(f"  -> 8-bit vs 32-bit: {s['speedup_8bit_vs_32bit']:.2f}x; 8-bit at {s['roofline_8bit']:.2f} of its "
                 f"roofline (32-bit at {s['roofline_32bit']:.2f}); 8-bit {vs_bnb} ({s['rounds']} rounds)")
    return "\n".join(lines)


# ------------------------------------------------------------------ accuracy
def accuracy(n: int | None = None, steps: int | None = None, seed: int = 0,
             with_bitsandbytes: bool = True) -> dict:
    """AdamW (lr ACCURACY_LR) for `steps` steps on f(p) = sum h (p - c)^2 / 2
    with gradient h (p - c) + NOISE * z_t, the same z_t for every run, with
    32-bit state, fastopt 8-bit state and (when available) bitsandbytes'
    AdamW8bit. The parameters start in [2, 3] and the minimum c lies in
    [1, 1.5] (curvatures h log-uniform in [0.1, 10]), so they stay far from
    zero and the elementwise relative difference |p - p32| / |p32| means
    something. Also ||p - p32|| / ||p32 - p0||: the difference relative to
    the distance the 32-bit run travelled. n, steps: ACCURACY_N,
    ACCURACY_STEPS by default."""
    n, steps = n or ACCURACY_N, steps or ACCURACY_STEPS
    rng = np.random.default_rng(seed)
    h = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n)).astype(np.float32)
    c = rng.uniform(1.0, 1.5, n).astype(np.float32)
    p0 = rng.uniform(2.0, 3.0, n).astype(np.float32)
    hyper = dict(lr=ACCURACY_LR, weight_decay=HYPER["weight_decay"])
    zeros = np.zeros(n, np.float32)
    p32, m32, v32 = p0.copy(), zeros.copy(), zeros.copy()
    p8, m8, v8 = p0.copy(), _core.quantize_blockwise(zeros, True), _core.quantize_blockwise(zeros, False)
    runs = {FAST8: p8}
    bnb_step = None
    if with_bitsandbytes and not isinstance(loaded := _bitsandbytes(), str):
        torch, bnb = loaded
        tp = torch.from_numpy(p0.copy())
        opt = bnb.optim.AdamW8bit([tp], min_8bit_size=0, **hyper)

        def bnb_step(g):
            tp.grad = torch.from_numpy(g)
            opt.step()
        runs[BNB] = tp.numpy()  # a view: the optimizer updates it in place
    for t in range(1, steps + 1):
        z = NOISE * rng.standard_normal(n, dtype=np.float32)
        F.adamw_([p32], [h * (p32 - c) + z], [m32], [v32], step=t, **hyper)
        F.adamw_([p8], [h * (p8 - c) + z], [m8], [v8], step=t, **hyper)
        if bnb_step is not None:
            bnb_step(h * (runs[BNB] - c) + z)

    def loss(p):
        return float(0.5 * np.sum(h.astype(np.float64) * (p.astype(np.float64) - c) ** 2))

    result = dict(n=n, steps=steps, lr=ACCURACY_LR, noise=NOISE, loss_start=loss(p0), loss_32bit=loss(p32),
                  runs={})
    travelled = float(np.linalg.norm((p32 - p0).astype(np.float64)))
    for label, p in runs.items():
        diff = np.abs(p.astype(np.float64) - p32)
        rel = diff / np.abs(p32.astype(np.float64))
        result["runs"][label] = dict(max_rel_error=float(rel.max()), median_rel_error=float(np.median(rel)),
                                     norm_rel_error=float(np.linalg.norm(diff) / np.linalg.norm(p32)),
                                     rel_to_travelled=float(np.linalg.norm(diff) / travelled),
                                     loss=loss(p))
    return result


def format_accuracy(acc: dict) -> str:
    lines = [f"Parameters after {acc['steps']} AdamW steps (N = {acc['n']:.0e}, noisy quadratic, lr {acc['lr']:g}, "
             f"noise {acc['noise']:g}) against 32-bit state: |p - p32| / |p32| per element; loss from "
             f"{acc['loss_start']:.4g} to {acc['loss_32bit']:.4g} with 32-bit state",
             f"  {'':<24}{'max rel':>10}{'median rel':>12}{'||dp||/||p32||':>16}{'||dp||/||p32-p0||':>19}"
             f"{'loss':>11}"]
    for label, r in acc["runs"].items():
        lines.append(f"  {label:<24}{r['max_rel_error']:>10.2e}{r['median_rel_error']:>12.2e}"
                     f"{r['norm_rel_error']:>16.2e}{r['rel_to_travelled']:>19.2e}{r['loss']:>11.4g}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- run
def header() -> str:
    info = fastopt.runtime_info()
    line = f"fastopt {info['version']} | SIMD: {info['simd_target']} | {info['num_threads']} threads"
    loaded = _bitsandbytes()
    if isinstance(loaded, str):
        return line + f" | bitsandbytes not importable ({loaded}): its rows are skipped"
    torch, bnb = loaded
    return (line + f" | torch {torch.__version__} ({torch.get_num_threads()} threads) | "
            f"bitsandbytes {bnb.__version__}")


def run(sizes, dtypes, with_bitsandbytes: bool = True, with_accuracy: bool = True) -> dict:
    """Every float32 group at `sizes`, a bfloat16 group at the largest (if
    "bfloat16" is in `dtypes` and ml_dtypes imports), then the accuracy run.
    Prints as it goes; returns the results."""
    print(HEADER, flush=True)
    groups = []
    plan = [("float32", n) for n in sizes] if "float32" in dtypes else []
    if "bfloat16" in dtypes:
        try:
            import ml_dtypes  # noqa: F401
            plan.append(("bfloat16", max(sizes)))
        except ImportError:
            print(f"{'bfloat16':<34}skipped: ml_dtypes is not installed", flush=True)
    for dtype, n in plan:
        group = measure_group(int(n), dtype, with_bitsandbytes)
        groups.append(group)
        print(format_group(group), flush=True)
    acc = None
    if with_accuracy:
        acc = accuracy(with_bitsandbytes=with_bitsandbytes)
        print("\n" + format_accuracy(acc), flush=True)
    return dict(rows=[r for g in groups for r in g["rows"]], groups=[g["summary"] for g in groups],
                accuracy=acc)


LEGEND = ("B/param: bytes read + written per parameter (8-bit: the absmax of m and v, 16 B per 256 "
          "parameters, included);\nx roofline: the time the roofline kernel (sampled in the same rounds, over "
          "arrays moving the 8-bit or the 32-bit step's bytes)\nneeds for those bytes / the step's time (1.0 = "
          "at the memory limit); vs 32-bit: fastopt 32-bit's time / this time (> 1: faster);\nstate B/param: "
          "resident optimizer state (sum of the state arrays' nbytes) / N.")


# The compute floor: one thread, arrays small enough to stay in cache.
FLOOR_N = 1 << 16
FLOOR_SECONDS = 0.3


def per_element(fn: Callable[[], None], n: int, seconds: float = FLOOR_SECONDS) -> float:
    """Best ns per element of fn over batches of calls lasting `seconds` / 5 each."""
    fn()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            fn()
            calls += 1
        best = min(best, (time.perf_counter() - start) / calls)
    return best / n * 1e9


def compute_floor(n_memory: int) -> dict:
    """Where the 8-bit step's time goes, on one thread: the 32-bit and 8-bit
    AdamW steps and one state's quantization and dequantization on
    cache-resident arrays (FLOOR_N elements), against the 32-bit step on
    n_memory elements, where its time is the memory's. The 8-bit step cannot
    beat the 32-bit one by more than the ratio of those two."""
    previous = fastopt.get_num_threads()
    fastopt.set_num_threads(1)
    try:
        cached = {label: fn for label, (fn, _) in fastopt_steps(FLOOR_N, "float32").items()}
        rng = np.random.default_rng(1)
        m, _ = make_state(FLOOR_N, rng)
        codes, absmax = _core.quantize_blockwise(m, True)
        out = dict(
            step32=per_element(cached[FAST32], FLOOR_N), step8=per_element(cached[FAST8], FLOOR_N),
            quantize=per_element(lambda: _core.quantize_blockwise(m, True), FLOOR_N),
            dequantize=per_element(lambda: _core.dequantize_blockwise(codes, absmax, True), FLOOR_N))
        big = fastopt_steps(n_memory, "float32")[FAST32][0]
        out["step32_memory"] = per_element(big, n_memory, 5 * FLOOR_SECONDS)
        out["n_memory"] = n_memory
    finally:
        fastopt.set_num_threads(previous)
    out["best_ratio"] = out["step32_memory"] / out["step8"]
    return out


def format_floor(f: dict) -> str:
    return "\n".join([
        f"Compute floor, one thread, {FLOOR_N} elements in cache (ns per element):",
        f"  32-bit AdamW step {f['step32']:.2f} | 8-bit AdamW step {f['step8']:.2f} | quantize one state "
        f"{f['quantize']:.2f} | dequantize one state {f['dequantize']:.2f}",
        f"  32-bit AdamW step at N = {f['n_memory']:.0e} (its memory time per element): {f['step32_memory']:.2f}",
        f"  -> the 8-bit step's arithmetic alone takes {f['step8'] / f['step32_memory']:.2f}x the 32-bit step's "
        f"memory time: at best {f['best_ratio']:.2f}x the 32-bit speed at that N on this machine"])


def main(sizes, dtypes, json_path) -> int:
    print(header())
    print(LEGEND + "\n")
    results = run(sizes, dtypes)
    results["compute_floor"] = floor = compute_floor(max(sizes))
    print("\n" + format_floor(floor), flush=True)
    if json_path:
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump({"runtime": fastopt.runtime_info(), "numpy": np.__version__, **results}, f, indent=1)
        print(f"\nwrote {json_path}")
    return 0
