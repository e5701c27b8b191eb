"""ZeroRedundancyOptimizer: optimizer state sharded over MPI ranks (ZeRO stage 1).

Data-parallel training keeps a full copy of the parameters on every rank;
the optimizer state (Adam's two moments: twice the parameters) need not be.
Here each rank owns one contiguous shard of the parameters and keeps state
for that shard only. A step, for every dtype of the model:

1. reduce-scatter: each rank sends every other rank that rank's shard of its
   local gradients (one all-to-all) and adds the p contributions to its own
   shard in rank order, ``G = g_0 + g_1 + ... + g_{p-1}``, then divides by p
   for the mean (docs/algorithms.md, section 5.1). The sum is the same bits
   whatever the number of ranks and whatever algorithm the MPI library would
   have picked for MPI_Reduce_scatter;
2. the fused kernel of the wrapped optimizer updates this rank's shard;
3. allgather (in place): every rank receives every other rank's new shard.

Each rank sends ``2 (p-1)/p * N * b`` bytes per step (N parameters, b bytes
each, plus the padding that makes the shards equal): the lower bound of an
allreduce. The step equals, bit for bit, the single-process optimizer
stepping on the reduced gradient, for any number of ranks: the elementwise
rules do not depend on where an element sits, and the shard boundaries only
decide which rank computes it. LAMB and Adafactor reduce over whole arrays
(trust ratios, factored moments): for them the shards are cut at array
boundaries, so each array stays whole on one rank (shards then differ in
size by up to the largest array).

With buckets (``bucket_size`` elements of a shard), the all-to-all of bucket
k+1, the step of bucket k and the allgather of bucket k-1 are in flight
together (nonblocking collectives); the numbers are the same either way.

Every method that talks to other ranks is collective (all ranks call it, in
the same order): the constructor, :meth:`step`, :meth:`state_dict`,
:meth:`load_state_dict`, :meth:`save_sharded`, :meth:`load_sharded`. Errors
found on one rank (a bad gradient, a missing one) are agreed on before any
data moves, so every rank raises the same error instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core import grad_norm
from ..checkpoint import _write_atomically
from ..optimizers._base import (
    Optimizer,
    StepStats,
    _check_param,
    gradient_policy,
    param_group_list,
    saved_groups,
)
from ._collectives import agree, agree_on, agreed, default_comm, mpi

__all__ = ["ZeroRedundancyOptimizer"]

ALIGN_BYTES = 64  # every shard and bucket starts on a cache line (a whole AVX-512 vector)
DEFAULT_BUCKET_SIZE = 1 << 22  # elements of a shard per bucket (16 MiB of float32)
LAYOUT_FILE = "layout.json"
LAYOUT_FORMAT = "fastopt-zero-1"
_STEP_OPTIONS = ("max_grad_norm", "norm_type", "nonfinite")  # applied across ranks, not per shard


def _shard_file(rank: int, world_size: int) -> str:
    return f"shard-{rank:05d}-of-{world_size:05d}.npz"


@dataclass(frozen=True)
class _Piece:
    """The part of one parameter that one bucket of one rank's shard holds."""

    param: int   # index in params order
    group: int   # its param group
    start: int   # element offset in the dtype's flat buffer
    size: int
    offset: int  # element offset inside the parameter (flattened)


class _FlatLayout:
    """One dtype's parameters laid out in one flat buffer, each array starting
    on a cache line, cut into p shards (``bounds``) and each shard into
    buckets of ``bucket`` elements."""

    def __init__(self, dtype, params: list[tuple[int, int, tuple[int, ...]]], world_size: int,
                 whole_arrays: bool, bucket_size: int):
        self.dtype = np.dtype(dtype)
        align = ALIGN_BYTES // self.dtype.itemsize
        self.params = params  # (index, group, shape)
        self.offsets, end = [], 0
        for _, _, shape in params:
            start = -(-end // align) * align
            self.offsets.append(start)
            end = start + math.prod(shape)
        if whole_arrays:
            self.bounds = _array_bounds(self.offsets, end, world_size)
            self.length = end
        else:
            per_rank = -(-end // world_size)
            shard = max(align, -(-per_rank // align) * align)
            self.bounds = [r * shard for r in range(world_size + 1)]
            self.length = world_size * shard
        largest = max(b - a for a, b in zip(self.bounds, self.bounds[1:]))
        self.bucket = largest if whole_arrays else max(align, -(-bucket_size // align) * align)
        self.n_buckets = max(1, -(-largest // self.bucket)) if largest else 1

    def bucket_range(self, rank: int, bucket: int) -> tuple[int, int]:
        """[lo, hi) of the flat buffer: the bucket of rank's shard (may be empty)."""
        lo = min(self.bounds[rank] + bucket * self.bucket, self.bounds[rank + 1])
        return lo, min(lo + self.bucket, self.bounds[rank + 1])

    def bucket_counts(self, bucket: int, world_size: int) -> tuple[list[int], list[int]]:
        """(counts, offsets) of every rank's part of this bucket: a collective's layout."""
        ranges = [self.bucket_range(q, bucket) for q in range(world_size)]
        return [hi - lo for lo, hi in ranges], [lo for lo, _ in ranges]

    def pieces(self, rank: int, bucket: int) -> list[_Piece]:
        lo, hi = self.bucket_range(rank, bucket)
        out = []
        for (index, group, shape), start in zip(self.params, self.offsets):
            a, b = max(lo, start), min(hi, start + math.prod(shape))
            if a < b:
                out.append(_Piece(index, group, a, b - a, a - start))
        return out


def _array_bounds(offsets: list[int], length: int, world_size: int) -> list[int]:
    """Shard bounds at array starts, each as near as it can be to an equal split."""
    candidates = offsets + [length]
    bounds = [0]
    for r in range(1, world_size):
        target = r * length / world_size
        best = min((c for c in candidates if c >= bounds[-1]), key=lambda c: abs(c - target))
        bounds.append(best)
    return bounds + [length]


def _check_state_bits(bits, group: int) -> None:
    if bits != 32:
        raise ValueError(f"param group {group}: ZeroRedundancyOptimizer keeps 32-bit state (state_bits={bits!r}: "
                         "8-bit state quantizes blocks of an array, which sharding would cut)")


def _aligned_zeros(n: int, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    raw = np.zeros(n + ALIGN_BYTES // dtype.itemsize, dtype=dtype)
    shift = (-raw.ctypes.data % ALIGN_BYTES) // dtype.itemsize
    return raw[shift:shift + n]


class ZeroRedundancyOptimizer:
    """Shards the state of a fastopt optimizer over the ranks of an MPI
    communicator (module docstring). Collective.

    Args:
        params: arrays or param-group dicts, as for any fastopt optimizer,
            identical in shapes, dtypes (float32, float64) and groups on every
            rank. Their values are copied into flat buffers; use
            :attr:`params` (views of those buffers) from then on, as with
            :class:`~fastopt.FlatBuffer`.
        optimizer_class: the fastopt optimizer to shard (default
            :class:`fastopt.AdamW`), with its hyperparameters in ``**defaults``
            (and per group).
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
        reduce: ``"mean"`` (default) or ``"sum"`` of the ranks' gradients.
        bucket_size: elements of a shard per bucket (the unit of overlap and
            of the all-to-all's receive buffer, p * bucket_size elements).
        overlap: run the buckets' collectives nonblocking, overlapping the
            reduction, the step and the gather of consecutive buckets.
        max_grad_norm, norm_type, nonfinite: as for every fastopt optimizer,
            over the reduced gradient of all ranks (the norm's per-rank parts
            are added in rank order).
        **defaults: the optimizer's hyperparameters and step options
            (``lr``, ``betas``, ``grad_clip_value``, ...).

    float16/bfloat16 parameters and ``state_bits=8`` are refused: their
    stochastic rounding and 8-bit blocks depend on an element's place in
    its array, which sharding moves.
    """

    def __init__(self, params, optimizer_class=None, comm=None, *, reduce: str = "mean",
                 bucket_size: int = DEFAULT_BUCKET_SIZE, overlap: bool = True, **defaults):
        from ..optim import AdamW
        self.comm = default_comm(comm)
        self.optimizer_class = AdamW if optimizer_class is None else optimizer_class
        self.reduce, self.bucket_size, self.overlap = reduce, bucket_size, overlap
        self._lock = threading.RLock()
        groups, template = agreed(self.comm, lambda: self._checked(params, defaults))
        self._template = template  # validates hyperparameters; holds the step options
        self.max_grad_norm = template.max_grad_norm
        self.norm_type = template.norm_type
        self.nonfinite = template.nonfinite
        self.defaults = {k: v for k, v in template.defaults.items()}
        self._inner_options = {k: v for k, v in defaults.items() if k not in _STEP_OPTIONS}
        agree_on(self.comm, self._signature(groups, defaults),
                 "the parameters (shapes, dtypes, groups), the optimizer or its settings")
        self._build(groups, template)
        self.last_stats: StepStats | None = None
        self.last_timings = {"communication": 0.0, "compute": 0.0}  # seconds of the last step
        self._comm_time = 0.0

    # ------------------------------------------------------------- checks
    def _checked(self, params, defaults):
        cls = self.optimizer_class
        if not (isinstance(cls, type) and issubclass(cls, Optimizer) and cls._name):
            raise TypeError(f"optimizer_class must be a fastopt optimizer class such as fastopt.AdamW, got {cls!r}")
        if self.reduce not in ("mean", "sum"):
            raise ValueError(f"invalid reduce: {self.reduce!r} (expected 'mean' or 'sum')")
        if isinstance(self.bucket_size, bool) or not isinstance(self.bucket_size, (int, np.integer)):
            raise TypeError(f"bucket_size must be an integer, got {type(self.bucket_size).__name__}")
        if self.bucket_size < 1:
            raise ValueError(f"invalid bucket_size: {self.bucket_size} (must be >= 1)")
        groups, index = [], 0
        for k, group in enumerate(param_group_list(params)):
            if not isinstance(group, dict):
                raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
            arrays = group.get("params")
            arrays = [arrays] if isinstance(arrays, np.ndarray) else list(arrays or [])
            for p in arrays:
                _check_param(p, f"params[{index}]")
                if p.dtype not in (np.float32, np.float64):
                    raise TypeError(f"params[{index}] has dtype {p.dtype}; ZeroRedundancyOptimizer shards float32 "
                                    "and float64 parameters (16-bit rounding depends on an element's place)")
                index += 1
            _check_state_bits(group.get("state_bits", defaults.get("state_bits", 32)), k)
            groups.append({**group, "params": arrays})
        Optimizer._check_distinct([p for g in groups for p in g["params"]])
        # The wrapped class checks every hyperparameter (naming it), on stand-ins.
        stand_ins = [{**{k: v for k, v in g.items() if k != "params"},
                      "params": [np.zeros(1, g["params"][0].dtype if g["params"] else np.float64)]}
                     for g in groups]
        return groups, cls(stand_ins, **defaults)

    def _signature(self, groups, defaults) -> str:
        shapes = [[(p.shape, p.dtype.str) for p in g["params"]] for g in groups]
        hypers = [sorted((k, repr(v)) for k, v in g.items() if k != "params") for g in self._template.param_groups]
        return repr((self.optimizer_class.__name__, shapes, hypers, self.reduce, self.bucket_size, self.overlap,
                     sorted((k, repr(v)) for k, v in defaults.items())))

    # ------------------------------------------------------------- layout
    def _build(self, groups, template) -> None:
        rank, size = self.comm.rank, self.comm.size
        whole = self.optimizer_class._per_array_rule
        self.param_groups: list[dict[str, Any]] = []
        by_dtype: dict[np.dtype, list] = {}
        self._shapes: list[tuple[int, ...]] = []
        for g, (group, full) in enumerate(zip(groups, template.param_groups)):
            for p in group["params"]:
                by_dtype.setdefault(p.dtype, []).append((len(self._shapes), g, p.shape))
                self._shapes.append(p.shape)
            self.param_groups.append({**{k: v for k, v in full.items() if k != "params"}, "params": []})
        self._layouts = [_FlatLayout(d, items, size, whole, self.bucket_size) for d, items in by_dtype.items()]
        self._flat_params, self._flat_grads, self._reduced = [], [], []
        views: list[np.ndarray | None] = [None] * len(self._shapes)
        grad_views: list[np.ndarray | None] = [None] * len(self._shapes)
        originals = [p for g in groups for p in g["params"]]
        for layout in self._layouts:
            flat, flat_grad = _aligned_zeros(layout.length, layout.dtype), _aligned_zeros(layout.length, layout.dtype)
            for (index, _, shape), start in zip(layout.params, layout.offsets):
                end = start + math.prod(shape)
                views[index] = flat[start:end].reshape(shape)
                grad_views[index] = flat_grad[start:end].reshape(shape)
                views[index][...] = originals[index]
            self._flat_params.append(flat)
            self._flat_grads.append(flat_grad)
            # One rank: its gradient is the reduced one, and the step reads it in place.
            self._reduced.append(flat_grad if size == 1 else
                                 _aligned_zeros(layout.bounds[rank + 1] - layout.bounds[rank], layout.dtype))
        self.params: list[np.ndarray] = views
        self.grads: list[np.ndarray] = grad_views
        k = 0
        for g, group in enumerate(groups):
            self.param_groups[g]["params"] = views[k:k + len(group["params"])]
            k += len(group["params"])
        self._n_buckets = max(layout.n_buckets for layout in self._layouts)
        self._inner: list[Optimizer | None] = []
        self._pieces: list[list[_Piece]] = []  # per bucket, in the inner optimizer's params order
        self._piece_grads: list[list[np.ndarray]] = []
        self._group_of: list[list[int]] = []  # per bucket: the user group of each inner group
        for bucket in range(self._n_buckets):
            self._add_bucket(bucket, whole)
        self._synced_hypers = None

    def _add_bucket(self, bucket: int, whole: bool) -> None:
        rank = self.comm.rank
        per_group: dict[int, list[tuple[_Piece, np.ndarray, np.ndarray]]] = {}
        for d, layout in enumerate(self._layouts):
            if bucket >= layout.n_buckets:
                continue
            base = layout.bounds[rank]
            for piece in layout.pieces(rank, bucket):
                shape = self._shapes[piece.param] if whole else (piece.size,)
                p = self._flat_params[d][piece.start:piece.start + piece.size].reshape(shape)
                g = self._reduced[d][piece.start - base:piece.start - base + piece.size].reshape(shape)
                per_group.setdefault(piece.group, []).append((piece, p, g))
        order = sorted(per_group)
        pieces = [item[0] for g in order for item in per_group[g]]
        self._pieces.append(pieces)
        self._piece_grads.append([item[2] for g in order for item in per_group[g]])
        self._group_of.append(order)
        if not pieces:
            self._inner.append(None)
            return
        inner_groups = [{**self._hypers(g), "params": [item[1] for item in per_group[g]]} for g in order]
        self._inner.append(self.optimizer_class(inner_groups, **self._inner_options))

    def _hypers(self, g: int) -> dict[str, Any]:
        return {k: v for k, v in self.param_groups[g].items() if k != "params"}

    def _sync_hyperparameters(self) -> None:
        """Hyperparameters changed in :attr:`param_groups` (a scheduler's lr)
        reach every bucket's optimizer; checked first, on every rank alike."""
        current = [sorted((k, repr(v)) for k, v in self._hypers(g).items()) for g in range(len(self.param_groups))]
        if current == self._synced_hypers:
            return
        for g in range(len(self.param_groups)):
            _check_state_bits(self.param_groups[g].get("state_bits", 32), g)
            self._template._validate_group({**self._hypers(g), "params": []})
        for inner, order in zip(self._inner, self._group_of):
            if inner is None:
                continue
            for inner_group, g in zip(inner.param_groups, order):
                for key, value in self._hypers(g).items():
                    dict.__setitem__(inner_group, key, copy.deepcopy(value))
        self._synced_hypers = current

    # --------------------------------------------------------------- step
    def step(self, grads, loss: float | None = None, stats: bool = False):
        """Collective. Reduce every rank's local ``grads`` (aligned with
        :attr:`params`; write them into :attr:`grads` to save a copy), update
        this rank's shard, gather the new parameters. ``None`` skips a
        parameter (it must be None on every rank). ``loss`` (for the rules that
        take it) must be the global loss. Returns ``loss``, or with ``stats`` a
        :class:`~fastopt.StepStats` of the whole model (also in :attr:`last_stats`)."""
        with self._lock:
            start = time.perf_counter()
            self._comm_time = 0.0
            grads = self._agreed_grads(grads)
            for i, g in enumerate(grads):
                view = self.grads[i]
                if g is None:
                    view[...] = 0  # a skipped parameter adds nothing to the norms
                elif g.__array_interface__["data"][0] != view.__array_interface__["data"][0]:
                    np.copyto(view, g)
            if self.max_grad_norm is not None or self.nonfinite != "ignore" or not self.overlap:
                result = self._step_in_phases(grads, loss, stats)
            else:
                result = self._step_overlapped(grads, loss, stats)
            total = time.perf_counter() - start
            self.last_timings = {"communication": self._comm_time, "compute": total - self._comm_time}
            return result

    def _agreed_grads(self, grads) -> list:
        """grads checked on every rank; the first rank's error raised on all."""
        error, nones = None, ()
        try:
            grads = self._checked_grads(grads)
            self._sync_hyperparameters()
            nones = tuple(i for i, g in enumerate(grads) if g is None)
        except (TypeError, ValueError) as raised:
            error = raised
        reports = self.comm.allgather((None if error is None else (type(error).__name__, str(error)), nones))
        if any(report for report, _ in reports):
            agree(self.comm, error)
        for rank, (_, other) in enumerate(reports):
            if other != reports[0][1]:
                missing = sorted(set(other) ^ set(reports[0][1]))
                raise ValueError(f"missing gradient: params{missing} have None on some ranks (rank 0: "
                                 f"{list(reports[0][1])}, rank {rank}: {list(other)}); a skipped parameter "
                                 "must be None on every rank")
        return grads

    def _checked_grads(self, grads) -> list:
        if isinstance(grads, np.ndarray):
            grads = [grads]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads has {len(grads)} entries but the optimizer has {len(self.params)} parameters")
        for i, (g, p) in enumerate(zip(grads, self.params)):
            if g is None:
                continue
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{i}] must be a numpy.ndarray or None, got {type(g).__name__}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has dtype {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has shape {p.shape}")
        return grads

    def _step_in_phases(self, grads, loss, stats):
        """Reduce everything, agree on the norm, then step and gather each bucket."""
        for bucket in range(self._n_buckets):
            self._wait(self._post_reduce(bucket, 0, blocking=True))
            self._finish_reduce(bucket, 0)
        scale = 1.0
        if self.max_grad_norm is not None or self.nonfinite != "ignore":
            scale, skipped = gradient_policy(*self._global_norm(), self.max_grad_norm, self.nonfinite,
                                             "reduced gradient")
            if skipped:
                self.last_stats = skipped
                return self.last_stats if stats else loss
        sums = np.zeros(4)
        for bucket in range(self._n_buckets):
            sums += self._step_bucket(bucket, grads, loss, scale, stats)
            self._wait(self._post_gather(bucket, blocking=True))
        return self._finish(sums, loss, scale, stats)

    def _step_overlapped(self, grads, loss, stats):
        """Bucket k+1's reduction, bucket k's step and bucket k-1's gather in flight together."""
        pending = {b: self._post_reduce(b, b % 2) for b in range(min(2, self._n_buckets))}
        gathers, sums = [], np.zeros(4)
        for bucket in range(self._n_buckets):
            self._wait(pending.pop(bucket))
            self._finish_reduce(bucket, bucket % 2)
            if bucket + 2 < self._n_buckets:
                pending[bucket + 2] = self._post_reduce(bucket + 2, bucket % 2)
            sums += self._step_bucket(bucket, grads, loss, 1.0, stats)
            gathers += self._post_gather(bucket)
        self._wait(gathers)
        return self._finish(sums, loss, 1.0, stats)

    def _finish(self, sums, loss, scale, stats):
        if not stats:
            return loss
        start = time.perf_counter()
        rows = np.empty((self.comm.size, 4))
        self.comm.Allgather(sums, rows)
        self._comm_time += time.perf_counter() - start
        total = rows[0].copy()
        for row in rows[1:]:
            total += row
        self.last_stats = StepStats.from_sums(*total, grad_scale=scale)
        return self.last_stats

    def _step_bucket(self, bucket: int, grads, loss, scale: float, stats: bool) -> np.ndarray:
        inner = self._inner[bucket]
        if inner is None:
            return np.zeros(4)
        piece_grads = [None if grads[piece.param] is None else g
                       for piece, g in zip(self._pieces[bucket], self._piece_grads[bucket])]
        sums = inner._step_scaled(piece_grads, loss, scale, stats)
        return np.asarray(sums, dtype=np.float64) if stats else np.zeros(4)

    # -------------------------------------------------------- collectives
    def _receive_buffer(self, d: int, slot: int, count: int) -> np.ndarray:
        buffers = self.__dict__.setdefault("_receive_buffers", {})
        key = (d, slot)
        if key not in buffers or buffers[key].size < self.comm.size * count:
            buffers[key] = np.empty(self.comm.size * count, self._layouts[d].dtype)
        return buffers[key][:self.comm.size * count].reshape(self.comm.size, count)

    def _collective_layouts(self, bucket: int):
        """(dtype index, layout, counts, offsets) of this bucket's collectives, one per dtype
        that has the bucket; none on one rank (there the gradient is the reduced one)."""
        if self.comm.size == 1:
            return
        for d, layout in enumerate(self._layouts):
            if bucket < layout.n_buckets:
                yield (d, layout, *layout.bucket_counts(bucket, self.comm.size))

    def _post_reduce(self, bucket: int, slot: int, blocking: bool = False) -> list:
        """Every rank's part of this bucket of every shard, to its owner (all-to-all)."""
        MPI, rank, size = mpi(), self.comm.rank, self.comm.size
        requests = []
        for d, layout, counts, offsets in self._collective_layouts(bucket):
            mine = counts[rank]
            recv = self._receive_buffer(d, slot, mine)
            kind = MPI._typedict[layout.dtype.char]
            send = [self._flat_grads[d], (counts, offsets), kind]
            receive = [recv, ([mine] * size, [q * mine for q in range(size)]), kind]
            start = time.perf_counter()
            if blocking:
                self.comm.Alltoallv(send, receive)
            else:
                requests.append(self.comm.Ialltoallv(send, receive))
            self._comm_time += time.perf_counter() - start
        return requests

    def _finish_reduce(self, bucket: int, slot: int) -> None:
        """This rank's reduced bucket: the ranks' parts added in rank order (then the mean)."""
        rank, size = self.comm.rank, self.comm.size
        if size == 1:
            return
        for d, layout in enumerate(self._layouts):
            if bucket >= layout.n_buckets:
                continue
            lo, hi = layout.bucket_range(rank, bucket)
            if lo == hi:
                continue
            recv = self._receive_buffer(d, slot, hi - lo)
            base = layout.bounds[rank]
            out = self._reduced[d][lo - base:hi - base]
            np.add(recv[0], recv[1], out=out)
            for q in range(2, size):
                np.add(out, recv[q], out=out)
            if self.reduce == "mean":
                np.divide(out, layout.dtype.type(size), out=out)

    def _post_gather(self, bucket: int, blocking: bool = False) -> list:
        """Every rank's updated bucket to every rank (allgather in place)."""
        MPI = mpi()
        requests = []
        for d, layout, counts, offsets in self._collective_layouts(bucket):
            spec = [self._flat_params[d], (counts, offsets), MPI._typedict[layout.dtype.char]]
            start = time.perf_counter()
            if blocking:
                self.comm.Allgatherv(MPI.IN_PLACE, spec)
            else:
                requests.append(self.comm.Iallgatherv(MPI.IN_PLACE, spec))
            self._comm_time += time.perf_counter() - start
        return requests

    def _wait(self, requests: list) -> None:
        if requests:
            start = time.perf_counter()
            mpi().Request.Waitall(requests)
            self._comm_time += time.perf_counter() - start

    def _global_norm(self) -> tuple[float, int]:
        """The reduced gradient's norm over all ranks (parts added in rank order) and its non-finite count."""
        parts = []
        for reduced in self._reduced:
            norm, bad = grad_norm([reduced], self.norm_type) if reduced.size else (0.0, 0)
            parts.append((norm, bad))
        if self.norm_type == 2.0:
            local = [sum(n * n for n, _ in parts), sum(b for _, b in parts)]
        elif self.norm_type == 1.0:
            local = [sum(n for n, _ in parts), sum(b for _, b in parts)]
        else:
            local = [max(n for n, _ in parts), sum(b for _, b in parts)]
        rows = np.empty((self.comm.size, 2))
        self.comm.Allgather(np.array(local, dtype=np.float64), rows)
        if self.norm_type == math.inf:
            total = float(np.max(rows[:, 0]))
        else:
            total = rows[0, 0]
            for value in rows[1:, 0]:
                total += value
            total = math.sqrt(total) if self.norm_type == 2.0 else float(total)
        return total, int(rows[:, 1].sum())

    # ------------------------------------------------------------- memory
    def state_bytes(self) -> int:
        """Bytes of optimizer state on this rank (arrays only)."""
        total = 0
        for inner in self._inner:
            if inner is not None:
                for state in inner.state.values():
                    total += sum(v.nbytes for v in state.values() if isinstance(v, np.ndarray))
        return total

    def communication_bytes(self) -> dict[str, int]:
        """Bytes this rank hands to MPI per step: sent and received, by the
        all-to-all (reduction) and the allgather, padding included."""
        rank, size = self.comm.rank, self.comm.size
        sent = received = 0
        for layout in self._layouts:
            itemsize = layout.dtype.itemsize
            for bucket in range(layout.n_buckets):
                counts, _ = layout.bucket_counts(bucket, size)
                others = sum(counts) - counts[rank]
                sent += (others + counts[rank] * (size - 1)) * itemsize
                received += (counts[rank] * (size - 1) + others) * itemsize
        return {"sent": sent, "received": received}

    # --------------------------------------------------------- state dicts
    def _all_pieces(self) -> list[list[tuple[int, int, _Piece]]]:
        """Per parameter: (rank, bucket, piece) of every rank, in flat-buffer order."""
        out: list[list] = [[] for _ in self._shapes]
        for rank in range(self.comm.size):
            for layout in self._layouts:
                for bucket in range(layout.n_buckets):
                    for piece in layout.pieces(rank, bucket):
                        out[piece.param].append((rank, bucket, piece))
        return out

    def _local_state(self, bucket: int, piece: _Piece) -> dict | None:
        inner = self._inner[bucket]
        k = self._pieces[bucket].index(piece)
        state = dict.get(inner.state, k)
        if state is None:
            return None
        inner.state._sync()
        return {key: (v.copy() if isinstance(v, np.ndarray) else v) for key, v in dict.items(state)}

    def state_dict(self, to: int = 0) -> dict[str, Any] | None:
        """Collective. The consolidated state dict, the same as the
        single-process optimizer's, on rank ``to`` (None on the others).
        Gathered one piece of one parameter at a time: no rank holds more than
        its own state and one piece of another's, except ``to``, which builds
        the result."""
        agreed(self.comm, lambda: self._check_rank(to, "to"))
        with self._lock:
            me, whole = self.comm.rank, self.optimizer_class._per_array_rule
            state: dict[int, dict] = {}
            for i, owners in enumerate(self._all_pieces()):
                parts = []
                for rank, bucket, piece in owners:
                    if rank == me:
                        local = self._local_state(bucket, piece)
                        if me == to:
                            parts.append(local)
                        else:
                            self.comm.send(local, dest=to, tag=i)
                    elif me == to:
                        parts.append(self.comm.recv(source=rank, tag=i))
                if me == to and parts and parts[0] is not None:
                    state[i] = parts[0] if whole else self._joined(parts, self._shapes[i])
            if me != to:
                return None
            return {"state": state, "param_groups": saved_groups(self.param_groups)}

    @staticmethod
    def _joined(parts: list[dict], shape) -> dict:
        out = {}
        for key, value in parts[0].items():
            out[key] = (np.concatenate([p[key] for p in parts]).reshape(shape)
                        if isinstance(value, np.ndarray) else value)
        return out

    def _check_rank(self, rank, name: str) -> None:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < self.comm.size:
            raise ValueError(f"{name} must be a rank in [0, {self.comm.size}), got {rank!r}")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Collective. Load a consolidated state dict (from :meth:`state_dict`
        or a single-process optimizer's), passed on every rank. Everything is
        checked on every rank before anything changes."""
        with self._lock:
            plans = agreed(self.comm, lambda: self._load_plans(state_dict))
            self._apply(plans, state_dict["param_groups"])

    def _load_plans(self, state_dict) -> list:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(groups)} param groups, optimizer has {len(self.param_groups)}")
        for k, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {k} has {len(saved['params'])} parameters in state_dict but "
                                 f"{len(group['params'])} in the optimizer")
        whole = self.optimizer_class._per_array_rule
        saved_state = {int(i): s for i, s in state_dict["state"].items()}
        for i in saved_state:
            if not 0 <= i < len(self.params):
                raise ValueError(f"state_dict has state for parameter {i}, optimizer has {len(self.params)}")
        def slice_of(i, piece):
            state = saved_state.get(i)
            if state is None:
                return None
            out = {}
            for key, value in state.items():
                if isinstance(value, np.ndarray) and not whole:
                    if value.shape != self._shapes[i]:
                        raise ValueError(f"state[{i}][{key!r}] has shape {value.shape} but parameter {i} needs "
                                         f"shape {self._shapes[i]}")
                    value = value.reshape(-1)[piece.offset:piece.offset + piece.size]
                out[key] = value
            return out
        return self._inner_state_dicts(slice_of, groups)

    def _inner_state_dicts(self, state_of, groups) -> list:
        """Per bucket, the inner optimizer's state dict, checked by loading it into a copy."""
        plans = []
        for bucket, inner in enumerate(self._inner):
            if inner is None:
                plans.append(None)
                continue
            state = {}
            for k, piece in enumerate(self._pieces[bucket]):
                piece_state = state_of(piece.param, piece)
                if piece_state is not None:
                    state[k] = piece_state
            inner_groups, start = [], 0
            for inner_group, g in zip(inner.param_groups, self._group_of[bucket]):
                n = len(inner_group["params"])
                inner_groups.append({**{k: v for k, v in groups[g].items() if k != "params"},
                                     "params": list(range(start, start + n))})
                start += n
            plan = {"state": state, "param_groups": inner_groups}
            trial = self.optimizer_class([{"params": [np.array(p) for p in g["params"]],
                                           **{k: v for k, v in g.items() if k != "params"}}
                                          for g in inner.param_groups], **self._inner_options)
            trial.load_state_dict(plan)  # raises on anything the real load would refuse
            plans.append(plan)
        return plans

    def _apply(self, plans, groups) -> None:
        own = ("params", "state_bits", "min_8bit_size")
        for g, saved in enumerate(groups):
            for key, value in saved.items():
                if key not in own:
                    self.param_groups[g][key] = copy.deepcopy(value)
        for inner, plan in zip(self._inner, plans):
            if inner is not None:
                inner.load_state_dict(plan)
        self._synced_hypers = None

    # --------------------------------------------------- sharded checkpoints
    def save_sharded(self, directory: str) -> None:
        """Collective. Each rank writes its shard (parameters and state) to
        ``directory/shard-RRRRR-of-PPPPP.npz``, atomically; then rank 0 writes
        ``layout.json``, which makes the checkpoint complete. Loadable on any
        number of ranks (:meth:`load_sharded`)."""
        directory = os.fspath(directory)
        with self._lock:
            agreed(self.comm, lambda: os.makedirs(directory, exist_ok=True) if self.comm.rank == 0 else None)
            arrays, pieces = {}, []
            for bucket, bucket_pieces in enumerate(self._pieces):
                for piece in bucket_pieces:
                    name = f"{piece.param}_{piece.offset}"
                    state = self._local_state(bucket, piece) or {}
                    p = self._flat_params[self._dtype_index(piece.param)][piece.start:piece.start + piece.size]
                    arrays[f"param/{name}"] = p.copy()
                    scalars = {}
                    for key, value in state.items():
                        if isinstance(value, np.ndarray):
                            arrays[f"state/{name}/{key}"] = value
                        else:
                            scalars[key] = value
                    pieces.append({"param": piece.param, "offset": piece.offset, "size": piece.size,
                                   "state": sorted(k for k, v in state.items() if isinstance(v, np.ndarray)),
                                   "scalars": scalars, "has_state": bool(state)})
            arrays["__meta__"] = np.array(json.dumps({"pieces": pieces}))
            path = os.path.join(directory, _shard_file(self.comm.rank, self.comm.size))
            agreed(self.comm, lambda: _write_atomically(path, arrays))
            layout = {"format": LAYOUT_FORMAT, "world_size": self.comm.size,
                      "optimizer": self.optimizer_class.__name__,
                      "params": [[list(s), self.params[i].dtype.str] for i, s in enumerate(self._shapes)],
                      "groups": [len(g["params"]) for g in self.param_groups],
                      "param_groups": [self._hypers(g) for g in range(len(self.param_groups))]}
            agreed(self.comm, lambda: _write_json(os.path.join(directory, LAYOUT_FILE), layout)
                   if self.comm.rank == 0 else None)

    def _dtype_index(self, param: int) -> int:
        dtype = self.params[param].dtype
        return next(d for d, layout in enumerate(self._layouts) if layout.dtype == dtype)

    def load_sharded(self, directory: str) -> None:
        """Collective. Restore a :meth:`save_sharded` checkpoint written by any
        number of ranks: parameters, state and hyperparameters. Every rank
        reads the pieces that overlap its own shard; checked everywhere
        before anything changes."""
        directory = os.fspath(directory)
        with self._lock:
            plans, groups, values = agreed(self.comm, lambda: self._read_sharded(directory))
            self._apply(plans, groups)
            for d, layout in enumerate(self._layouts):
                for bucket in range(layout.n_buckets):
                    for piece in layout.pieces(self.comm.rank, bucket):
                        self._flat_params[d][piece.start:piece.start + piece.size] = values[(piece.param, piece.offset)]
            for bucket in range(self._n_buckets):
                self._wait(self._post_gather(bucket, blocking=True))

    def _read_sharded(self, directory: str):
        try:
            with contextlib.ExitStack() as files:
                return self._read_shards(directory, files)
        except (OSError, KeyError, json.JSONDecodeError, zipfile.BadZipFile) as error:
            raise ValueError(f"{directory}: not a complete, readable sharded checkpoint "
                             f"({type(error).__name__}: {error})") from error

    def _read_shards(self, directory: str, open_files: contextlib.ExitStack):
        with open(os.path.join(directory, LAYOUT_FILE)) as f:
            layout = json.load(f)
        if layout.get("format") != LAYOUT_FORMAT:
            raise ValueError(f"{directory} is not a fastopt sharded checkpoint (format {layout.get('format')!r})")
        if layout["optimizer"] != self.optimizer_class.__name__:
            raise ValueError(f"the checkpoint is of {layout['optimizer']}, this optimizer shards "
                             f"{self.optimizer_class.__name__}")
        mine = [[list(s), self.params[i].dtype.str] for i, s in enumerate(self._shapes)]
        if layout["params"] != mine or layout["groups"] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the checkpoint's parameters (shapes, dtypes, groups) are not this optimizer's")
        groups = [self._restore_types(g, saved) for g, saved in enumerate(layout["param_groups"])]
        saved_pieces: dict[int, list] = {}
        files = []
        for rank in range(layout["world_size"]):
            archive = open_files.enter_context(
                np.load(os.path.join(directory, _shard_file(rank, layout["world_size"])), allow_pickle=False))
            files.append(archive)
            for piece in json.loads(str(archive["__meta__"]))["pieces"]:
                saved_pieces.setdefault(piece["param"], []).append((rank, piece))
        whole = self.optimizer_class._per_array_rule
        values = {}

        def state_of(i, piece):
            parts = [(rank, saved) for rank, saved in saved_pieces.get(i, [])
                     if saved["offset"] < piece.offset + piece.size and piece.offset < saved["offset"] + saved["size"]]
            if not parts:
                raise ValueError(f"the checkpoint has no values for parameter {i} elements "
                                 f"[{piece.offset}, {piece.offset + piece.size})")
            flat = np.empty(piece.size, self.params[i].dtype)
            state = {} if parts[0][1]["has_state"] else None
            for rank, saved in parts:
                name = f"{i}_{saved['offset']}"
                a = max(piece.offset, saved["offset"])
                b = min(piece.offset + piece.size, saved["offset"] + saved["size"])
                flat[a - piece.offset:b - piece.offset] = files[rank][f"param/{name}"][a - saved["offset"]:
                                                                                     b - saved["offset"]]
                if state is None:
                    continue
                state.update(saved["scalars"])
                for key in saved["state"]:
                    array = files[rank][f"state/{name}/{key}"]
                    if whole:
                        state[key] = array
                        continue
                    part = state.setdefault(key, np.empty(piece.size, array.dtype))
                    part[a - piece.offset:b - piece.offset] = array[a - saved["offset"]:b - saved["offset"]]
            values[(i, piece.offset)] = flat
            return state

        return self._inner_state_dicts(state_of, groups), groups, values

    def _restore_types(self, g: int, saved: dict) -> dict:
        """JSON made tuples lists: give back the types this optimizer's groups use."""
        out = {}
        for key, value in saved.items():
            current = self.param_groups[g].get(key)
            out[key] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
        return out

    def __repr__(self) -> str:
        return (f"ZeroRedundancyOptimizer({self.optimizer_class.__name__}, rank {self.comm.rank} of "
                f"{self.comm.size}, {len(self.params)} parameters, {self._n_buckets} bucket(s))")


def _write_json(path: str, value: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

