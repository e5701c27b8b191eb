"""Checkpoints under faults (beyond tests/test_checkpoint.py):

* a writer killed with SIGKILL at many moments of fastopt.save (at chosen
  bytes and system calls, and after timed delays) always leaves the previous
  or the new checkpoint, bitwise, and its stray temporary files disturb
  nothing later;
* every truncation and every flipped bit of a checkpoint is refused;
* corrupt, hostile and mismatched files are refused with a ValueError or
  TypeError that says what is wrong, and change nothing.
"""

import gzip
import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
import traceback
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt import checkpoint, optim
from fastopt import schedules as S
from test_checkpoint import LeastSquares, make_run, train


# ------------------------------------------------------------------ helpers
def bitwise(value):
    """``value`` in a form whose == is bitwise: arrays as dtype, shape and
    bytes, floats as their 8 bytes (so -0.0 != 0.0 and nan == nan), types kept."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, dict):
        return {(type(k).__name__, k): bitwise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [bitwise(v) for v in value])
    return (type(value).__name__, value)


def state_of(params, opt, sched):
    """Everything load may change: the parameter arrays, the optimizer's
    state and param_groups, the scheduler's state."""
    return bitwise({"params": list(params), "optimizer": opt.state_dict(),
                    "scheduler": None if sched is None else sched.state_dict()})


def put(path, data):
    """Write ``data`` as a new file (rewriting a file in place is slow on ext4:
    truncating it forces its blocks out)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def refuse(path, run, error=ValueError, match="", params=None):
    """load(path) into ``run`` raises ``error`` matching ``match`` and changes nothing."""
    before = state_of(*run)
    with pytest.raises(error, match=match):
        fastopt.load(path, run[1], run[2], params=params)
    assert state_of(*run) == before, f"a refused load of {path} changed the run"


# -------------------------------------------------------------- kill points
KILL_SIZE = 64 * 1024   # Adam/amsgrad over 80k values: a 2.4 MB file, ~15 ms a save


def big_run():
    """A run whose save takes some milliseconds (fresh, the same in every process)."""
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(KILL_SIZE), rng.standard_normal(KILL_SIZE // 4).astype(np.float32)]
    opt = optim.Adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}], lr=0.02, amsgrad=True)
    sched = S.SequentialLR(opt, [S.LinearLR(opt, 0.5, total_iters=4), S.CosineAnnealingLR(opt, T_max=30)], [4])
    return params, opt, sched


def big_step(run, seed):
    params, opt, sched = run
    rng = np.random.default_rng(seed)
    opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in params])
    sched.step()


class KillAfterBytes:
    """The file np.savez writes to, killing the process (SIGKILL, no cleanup)
    once ``limit`` bytes went through write: those bytes reach the file."""

    def __init__(self, file, limit):
        self._file, self._left = file, limit

    def write(self, data):
        data = memoryview(data).cast("B")
        if len(data) > self._left:
            self._file.write(data[:self._left])
            self._file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self._left -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):   # tell, seek, flush, ... as the file's
        return getattr(self._file, name)


def kill_at_call(call, nth, when):
    """Make the nth call of os.<call> (fsync, replace) die before or after it runs."""
    real, calls = getattr(checkpoint.os, call), []

    def dying(*args):
        calls.append(args)
        if len(calls) == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args)
        if len(calls) == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(checkpoint.os, call, dying)


def die_while_saving(point, runs, target):
    """The forked writer: saves ``point["write"]`` (and, timed, the other run
    and again, alternately) until it is killed. Never returns."""
    try:
        new, old = runs[point["write"]], runs["AB".replace(point["write"], "")]
        if point["kind"] == "bytes":
            real_savez = np.savez
            checkpoint.np.savez = lambda file, **arrays: real_savez(KillAfterBytes(file, point["bytes"]), **arrays)
        elif point["kind"] == "call":
            kill_at_call(point["call"], point["nth"], point["when"])
        fastopt.save(target, new[1], new[2])
        while point["kind"] == "timed":
            fastopt.save(target, old[1], old[2])
            fastopt.save(target, new[1], new[2])
    except BaseException:
        traceback.print_exc()
        os._exit(70)
    os._exit(0)   # not killed: the test sees exit code 0 and fails


def kill_harness(ref_a, ref_b, target, scratch):
    """A subprocess: loads the runs A and B once, then for every kill point
    it reads (a JSON line) forks a writer over ``target`` and reports how the
    writer ended. Forking, not one interpreter per kill point, keeps ~70
    kill points within a few seconds."""
    signal.alarm(120)   # never outlive a test that went wrong
    runs = {}
    for name, ref in (("A", ref_a), ("B", ref_b)):
        run = big_run()
        fastopt.load(ref, run[1], run[2])
        runs[name] = run
    print(json.dumps(measure_save(runs["B"], scratch)), flush=True)
    while line := sys.stdin.readline():
        point = json.loads(line)
        pid = os.fork()
        if pid == 0:
            die_while_saving(point, runs, target)
        if point["kind"] == "timed":
            time.sleep(point["delay"])
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)


def measure_save(run, scratch):
    """The bytes np.savez writes in a save (byte kill points lie below) and a save's duration."""
    written = []
    real_savez = np.savez

    def counting(file, **arrays):
        class Counter:
            def write(self, data):
                written.append(memoryview(data).nbytes)
                return file.write(data)

            def __getattr__(self, name):
                return getattr(file, name)

        real_savez(Counter(), **arrays)

    checkpoint.np.savez = counting
    fastopt.save(os.path.join(scratch, "c.npz"), run[1], run[2])
    checkpoint.np.savez = real_savez
    start = time.perf_counter()
    for _ in range(3):
        fastopt.save(os.path.join(scratch, "c.npz"), run[1], run[2])
    return {"savez_bytes": sum(written), "save_seconds": (time.perf_counter() - start) / 3}


HARNESS = ("import sys; sys.path.insert(0, sys.argv[1]); import test_checkpoint_faults as t; "
           "t.kill_harness(*sys.argv[2:])")


def kill_points(savez_bytes, save_seconds):
    """Where the writers die: bytes inside np.savez's output (spread over the
    whole file, plus its first and last bytes), every system call of a save
    (before and after it), and timed SIGKILLs spread over two saves."""
    cuts = sorted({0, 1, 30, 31, savez_bytes - 22, savez_bytes - 1,
                   *np.linspace(64, savez_bytes - 64, 36).astype(int).tolist()})
    points = [{"kind": "bytes", "bytes": n} for n in cuts]
    points += [{"kind": "call", "call": call, "nth": nth, "when": when}
               for call, nth in (("fsync", 1), ("replace", 1), ("fsync", 2)) for when in ("before", "after")]
    points += [{"kind": "timed", "delay": 2 * save_seconds * (k + 0.5) / 24} for k in range(24)]
    return points


def expected_after(point):
    """What the target holds after the kill: the previous checkpoint until
    os.replace ran, the new one after; timed kills: either."""
    if point["kind"] == "timed":
        return {"previous", "new"}
    if point["kind"] == "call" and (point["call"], point["nth"], point["when"]) in (
            ("replace", 1, "after"), ("fsync", 2, "before"), ("fsync", 2, "after")):
        return {"new"}
    return {"previous"}


def which(path, states, probe):
    """Load ``path`` into the run ``probe`` (every load overwrites all of it):
    the name of the state it holds, bitwise."""
    fastopt.load(path, probe[1], probe[2])
    got = state_of(*probe)
    return next((name for name, state in states.items() if state == got), "something else")


def stray_temps(directory):
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.name.startswith(".ckpt.npz.")}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers are forked and killed with SIGKILL (POSIX)")
def test_killed_writer_leaves_previous_or_new_checkpoint(tmp_path):
    refs, work = tmp_path / "refs", tmp_path / "work"
    for d in (refs, work, tmp_path / "scratch"):
        d.mkdir()
    run = big_run()
    for seed in range(3):
        big_step(run, seed)
    fastopt.save(refs / "A.npz", run[1], run[2])
    states = {"A": state_of(*run)}
    big_step(run, 3)
    fastopt.save(refs / "B.npz", run[1], run[2])
    states["B"] = state_of(*run)
    target = work / "ckpt.npz"
    # The target starts as the same inode as refs/A.npz: a save that wrote into
    # the existing file instead of renaming a new one over it would change A.
    os.link(refs / "A.npz", target)
    a_bytes = (refs / "A.npz").read_bytes()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(tmp_path / "harness.err", "w") as err, subprocess.Popen(
            [sys.executable, "-c", HARNESS, str(Path(__file__).parent), str(refs / "A.npz"),
             str(refs / "B.npz"), str(target), str(tmp_path / "scratch")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env) as harness:
        try:
            measured = json.loads(harness.stdout.readline() or "null")
            assert measured, (tmp_path / "harness.err").read_text()
            points = kill_points(measured["savez_bytes"], measured["save_seconds"])
            survived, mid_write = survive(harness, points, target, states, tmp_path / "harness.err")
            kinds = {kind: sum(p["kind"] == kind for p in points) for kind in ("bytes", "call", "timed")}
        finally:
            harness.stdin.close()
    assert harness.returncode == 0, (tmp_path / "harness.err").read_text()

    # The strays of all those kills disturb neither a later save nor a load,
    # and a save leaves them alone.
    strays = stray_temps(work)
    assert len(strays) == mid_write
    big_step(run, 4)
    fastopt.save(target, run[1], run[2])
    assert which(target, {"latest": state_of(*run)}, big_run()) == "latest"
    assert stray_temps(work) == strays
    assert (refs / "A.npz").read_bytes() == a_bytes, "a save wrote into the existing checkpoint"
    assert survived == len(points) >= 50, (
        f"{survived} of {len(points)} kill points survived ({kinds['bytes']} inside np.savez, {kinds['call']} "
        f"at fsync/os.replace, {kinds['timed']} timed; {mid_write} left a stray temporary file)")


def survive(harness, points, target, states, err):
    """Run every kill point; after each, the target holds the previous or the
    new run, bitwise, as expected_after says; the stray temporary file a
    kill before the rename leaves is a torn file load refuses, or a whole one.
    Returns (kill points survived, kills that left a stray)."""
    current, survived, mid_write, probe = "A", 0, 0, big_run()
    for point in points:
        new = "AB".replace(current, "")
        before = stray_temps(target.parent)
        harness.stdin.write(json.dumps({**point, "write": new}) + "\n")
        harness.stdin.flush()
        reply = json.loads(harness.stdout.readline() or "null")
        where = f"kill point {point} ({survived} of {len(points)} survived before it)"
        assert reply == {"signal": signal.SIGKILL, "exit": None}, f"{where}: {reply}, {err.read_text()}"
        names = {"previous": current, "new": new}
        holds = which(target, states, probe)
        assert holds in {names[e] for e in expected_after(point)}, f"{where}: the target holds {holds}"
        strays = sorted(set(stray_temps(target.parent)) - set(before))
        killed_mid_write = point["kind"] == "bytes" or expected_after(point) == {"previous"}
        if point["kind"] != "timed":
            assert len(strays) == killed_mid_write, f"{where}: new stray files {strays}"
        for stray in strays:
            check_stray(target.parent / stray, point, states, names, probe, where)
        mid_write += len(strays)
        current = holds
        survived += 1
    return survived, mid_write


def check_stray(stray, point, states, names, probe, where):
    """A stray killed inside np.savez is torn: load refuses it and changes
    nothing. Killed after (at fsync or os.replace), it is whole: the new run."""
    assert re.fullmatch(r"\.ckpt\.npz\.[0-9a-f]{12}\.tmp", stray.name), where
    if point["kind"] == "bytes":
        refuse(stray, probe, match="is not a readable fastopt checkpoint")
    elif point["kind"] == "call":
        assert which(stray, states, probe) == names["new"], f"{where}: the whole stray is not the new run"
    else:   # timed: killed anywhere in a save, torn or whole
        before = state_of(*probe)
        try:
            holds = which(stray, states, probe)
        except ValueError as error:
            holds = str(error)
            assert state_of(*probe) == before, f"{where}: the refused stray changed the run"
        assert holds in states or "is not a readable fastopt checkpoint" in holds, f"{where}: the stray: {holds}"


# --------------------------------------------------------- damaged files
def small_run():
    """A small run after 5 steps (Adam/amsgrad over two groups, a SequentialLR)."""
    problem = LeastSquares()
    run = make_run("Adam", problem)
    train(problem, *run, steps=5)
    return problem, run


@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory):
    """The checkpoint of small_run() with an array in ``extra``, saved once
    (a save fsyncs, which is slow on some disks)."""
    path = tmp_path_factory.mktemp("saved") / "ckpt.npz"
    run = small_run()[1]
    fastopt.save(path, run[1], run[2], extra={"epoch": 5, "ema": np.linspace(0, 1, 4), "k": (1, "a")})
    return path.read_bytes()


@pytest.fixture
def saved(tmp_path, saved_bytes):
    """(path, the file's bytes, a run trained on after the save, so that its
    live state differs from the file's)."""
    problem, run = small_run()
    train(problem, *run, steps=5)
    path = tmp_path / "ckpt.npz"
    put(path, saved_bytes)
    return path, saved_bytes, run


def without_checksum(data):
    """The file as older fastopt (or np.savez) wrote it: the zip comment emptied."""
    body = data[:-len(b"fastopt-crc32:12345678")]
    assert body[-22:-18] == b"PK\x05\x06"
    return body[:-2] + b"\0\0"


def with_checksum(data):
    """``data`` (a zip without a comment) with a valid checksum, written here
    from the module docstring's description, not by fastopt's own code."""
    assert zip_without_comment(data)
    body = data[:-2] + struct.pack("<H", 22) + b"fastopt-crc32:"
    return body + b"%08x" % zlib.crc32(body)


def refuse_all(path, run, files):
    """Each of ``files`` ((what, bytes)) is refused by load and changes nothing.
    Returns how many were refused."""
    before = state_of(*run)
    for what, data in files:
        put(path, data)
        with pytest.raises(ValueError, match="is not a readable fastopt checkpoint"):
            fastopt.load(path, run[1], run[2])
        assert state_of(*run) == before, f"the refused file ({what}) changed the run"
    return len(files)


def spread(n, count, edges):
    """``count`` positions spread over range(n), and every position within
    ``edges`` of either end (the zip's first header; its end record and the checksum)."""
    return sorted({*range(edges), *range(n - edges, n), *np.linspace(0, n - 1, count).astype(int).tolist()})


def test_truncation_is_always_refused(saved):
    """Cut at 600 lengths, with and without the checksum: the file no longer
    ends with its checksum or a zip end record."""
    path, data, run = saved
    refused = 0
    for whole in (data, without_checksum(data)):
        cuts = spread(len(whole), 100, edges=100)
        refused += refuse_all(path, run, [(f"cut at {cut}", whole[:cut]) for cut in cuts])
    assert refused > 500, f"{refused} truncations refused"


def flipped(data, k, bit):
    damaged = bytearray(data)
    damaged[k] ^= 1 << bit
    return bytes(damaged)


def test_every_flipped_bit_is_refused(saved):
    """One bit at 1700 places (bit k % 8 of byte k), all 8 bits of the last
    66 bytes (end record and checksum) and of the first 30 (the first local
    header): the checksum catches every one, also where zipfile never looks
    (timestamps, attributes, the sizes in a local header)."""
    path, data, run = saved
    flips = {(k, k % 8) for k in spread(len(data), 1500, edges=100)}
    flips |= {(k, bit) for k in [*range(30), *range(len(data) - 66, len(data))] for bit in range(8)}
    refused = refuse_all(path, run, [(f"bit {bit} of byte {k}", flipped(data, k, bit)) for k, bit in sorted(flips)])
    assert refused == len(flips) > 2000, f"{refused} flipped bits refused"


def test_flipped_bit_without_checksum_is_refused_or_harmless(saved):
    """A file without the checksum (older fastopt) has only the zip's CRC-32s
    of its members: a flip elsewhere may go unnoticed, but must then be
    harmless -- the file loads exactly what was saved, never other numbers."""
    path, data, run = saved
    legacy = without_checksum(data)
    put(path, legacy)
    fresh = make_run("Adam", LeastSquares(), seed=3)
    fastopt.load(path, fresh[1], fresh[2])
    saved_state = state_of(*fresh)
    refused = []
    positions = spread(len(legacy), 700, edges=300)   # the central directory is at the end
    for k in positions:
        put(path, flipped(legacy, k, k % 8))
        before = state_of(*run)
        try:
            fastopt.load(path, run[1], run[2])
        except ValueError as error:
            refused.append(str(error))
            assert state_of(*run) == before, f"the refused flip of byte {k} changed the run"
        else:
            assert state_of(*run) == saved_state, f"the flip of byte {k} loaded other numbers"
    assert all("fastopt checkpoint" in message for message in refused)
    assert len(refused) > len(positions) / 2, f"{len(refused)} of {len(positions)} flips refused"


# ------------------------------------------------------------ hostile files
def members_of(data):
    """The zip members of a checkpoint, raw, by name (``params/0.npy``), in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def npy(array, **header):
    """``array`` as .npy bytes; ``header`` overrides fields of its header
    (shape, descr) to declare what the data is not."""
    buffer = io.BytesIO()
    if not header:
        np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
        return buffer.getvalue()
    fields = {**np.lib.format.header_data_from_array_1_0(np.asarray(array)), **header}
    np.lib.format.write_array_header_1_0(buffer, fields)
    return buffer.getvalue() + np.asarray(array).tobytes()


def meta_of(members):
    return json.loads(str(np.load(io.BytesIO(members["__meta__.npy"]))))


def with_meta(members, change):
    meta = meta_of(members)
    change(meta)
    return {**members, "__meta__.npy": npy(np.array(json.dumps(meta)))}


def zip_of(members, compression=zipfile.ZIP_STORED):
    """``members`` ({name: bytes} or [(name, bytes)], duplicates allowed) as a zip."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(buffer, "w", compression) as z:
            for name, data in (members.items() if isinstance(members, dict) else members):
                z.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return buffer.getvalue()


def renamed(members, old, new):
    """Member ``old`` renamed ``new`` and the metadata pointing at the new name:
    only the name is wrong."""
    changed = {(new if name == old else name): data for name, data in members.items()}
    text = json.dumps({"__array__": old[:-4]})[1:-1]
    meta = json.dumps(meta_of(members)).replace(text, json.dumps({"__array__": new[:-4]})[1:-1])
    assert meta != json.dumps(meta_of(members))
    return {**changed, "__meta__.npy": npy(np.array(meta))}


def nul_in_name(members):
    """A member name with a NUL byte (zipfile cuts names at NUL when writing,
    so the bytes are patched in)."""
    data = zip_of(renamed(members, "params/0.npy", "params/0?.npy"))
    return patched(data, b"params/0?.npy", b"params/0\0.npy")


def patched(data, old, new):
    assert data.count(old) == 2   # the local header and the central directory
    return data.replace(old, new)


def encrypted(members):
    """The encryption flag set on the first member (local and central header)."""
    data = bytearray(zip_of(members))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature) + flags_at
        data[at] |= 1
    return bytes(data)


def sizes_beyond_file(members):
    """The central directory claims 2 GB for a member (both sizes, stored)."""
    data = bytearray(zip_of(members))
    at = data.find(b"PK\x01\x02")
    data[at + 20:at + 28] = struct.pack("<II", 2**31, 2**31)
    return bytes(data)


HUGE = 10**12
P0 = "params/0.npy"


def param0(members):
    return np.load(io.BytesIO(members[P0]))


def meta_case(change):
    return lambda members: zip_of(with_meta(members, change))


def member_case(data):
    """The file with member params/0 replaced by ``data(members)``."""
    return lambda members: zip_of({**members, P0: data(members)})


# {case: (build the file from a good checkpoint's members, what the error says)}
HOSTILE = {
    # not checkpoints at all
    "empty-file": (lambda m: b"", "it is empty"),
    "npy-file": (lambda m: npy(np.arange(3.0)), "ends neither with a fastopt checksum nor with a zip end record"),
    "pickle-file": (lambda m: pickle.dumps({"state": 1}), "ends neither"),
    "gzipped-checkpoint": (lambda m: gzip.compress(zip_of(m)), "ends neither"),
    "random-bytes": (lambda m: np.random.default_rng(0).bytes(5000), "ends neither"),
    "zip-header-then-junk": (lambda m: b"PK\x03\x04" + bytes(200), "ends neither"),
    "zip-with-other-comment": (lambda m: zip_of(m)[:-2] + b"\x05\x00hello", "ends neither"),
    "empty-zip": (lambda m: zip_of({}), "is not a fastopt checkpoint: it is an .npz file without a __meta__"),
    "arrays-without-meta": (lambda m: zip_of({n: d for n, d in m.items() if n != "__meta__.npy"}),
                            "without a __meta__ array"),
    # the metadata
    "meta-a-number": (lambda m: zip_of({**m, "__meta__.npy": npy(np.float64(1.0))}), "is not a string"),
    "meta-bytes": (lambda m: zip_of({**m, "__meta__.npy": npy(np.array(b"{}"))}), "is not a string"),
    "meta-1d": (lambda m: zip_of({**m, "__meta__.npy": npy(np.array(["{}"]))}), "is not a string"),
    "meta-json-list": (lambda m: zip_of({**m, "__meta__.npy": npy(np.array("[1]"))}), "has no format"),
    "format-other": (meta_case(lambda m: m.update(format="other")), "has no format"),
    "format-missing": (meta_case(lambda m: m.pop("format")), "has no format"),
    "format-number": (meta_case(lambda m: m.update(format=1)), "has no format"),
    **{f"version-{v!r}": (meta_case(lambda m, v=v: m.update(version=v)), "invalid checkpoint format version")
       for v in (0, -1, "1", 1.0, True, None)},
    "version-missing": (meta_case(lambda m: m.pop("version")), "invalid checkpoint format version None"),
    "optimizer-missing": (meta_case(lambda m: m.pop("optimizer")), "malformed"),
    "optimizer-class-number": (meta_case(lambda m: m["optimizer"].update({"class": 7})), "malformed"),
    "scheduler-a-list": (meta_case(lambda m: m.update(scheduler=[1])), "malformed"),
    "params-a-dict": (meta_case(lambda m: m.update(params={})), "malformed"),
    "params-a-number": (meta_case(lambda m: m["params"].__setitem__(0, 5)), r"params\[0\] = 5, not an array"),
    "extra-a-list": (meta_case(lambda m: m.update(extra=[])), "malformed"),
    "ref-to-missing-array": (meta_case(lambda m: m["extra"].update(x={"__array__": "nope"})),
                             "refers to an array 'nope' the file does not hold"),
    "ref-not-a-string": (meta_case(lambda m: m["extra"].update(x={"__array__": [1]})), r"refers to an array \[1\]"),
    "tuple-not-a-list": (meta_case(lambda m: m["extra"].update(x={"__tuple__": 3})), "__tuple__ that is not a list"),
    "items-not-pairs": (meta_case(lambda m: m["extra"].update(x={"__items__": [[1]]})), r"not a \[key, value\] pair"),
    "items-unhashable-key": (meta_case(lambda m: m["extra"].update(x={"__items__": [[[1], 2]]})), "cannot be a key"),
    "nested-100000-deep": (lambda m: zip_of({**m, "__meta__.npy": npy(np.array(json.dumps(meta_of(m)).replace(
        '"epoch": 5', '"deep": ' + "[" * 10**5 + "]" * 10**5 + ', "epoch": 5')))}), "RecursionError|nested too deeply"),
    "array-never-mentioned": (lambda m: zip_of({**m, "params/9.npy": npy(np.zeros(3))}),
                              r"arrays its metadata never mentions: \['params/9'\]"),
    "optimizer-state-a-number": (meta_case(lambda m: m["optimizer"].update(state_dict=5)),
                                 "optimizer state is not a dict"),
    "param-groups-missing": (meta_case(lambda m: m["optimizer"]["state_dict"].pop("param_groups")),
                             "optimizer state is not a dict"),
    # the arrays
    "object-array": (member_case(lambda m: npy(np.array([{"a": 1}] * 15, dtype=object))),
                     "object array, which only unpickling could read.*allow_pickle=False"),
    "pickle-as-member": (member_case(lambda m: pickle.dumps(param0(m))), "magic string is not correct"),
    "text-as-member": (member_case(lambda m: b"hello, I am not an array"), "magic string is not correct"),
    "npy-version-9": (member_case(lambda m: b"\x93NUMPY\x09\x00" + m[P0][8:]), r"format version \(9, 0\)"),
    "npy-header-garbage": (member_case(lambda m: m[P0][:10] + b"x" * (len(m[P0]) - 10)), "ValueError"),
    "npy-header-200k": (member_case(lambda m: b"\x93NUMPY\x02\x00" + struct.pack("<I", 200_000) + b" " * 200_000),
                        "ValueError: Header"),
    "shape-huge": (member_case(lambda m: npy(param0(m), shape=(HUGE,))),
                   rf"declares shape \({HUGE},\) and dtype float64 \({8 * HUGE} bytes\) but holds 120 bytes"),
    "shape-overflowing": (member_case(lambda m: npy(param0(m), shape=(2**62, 2**62))), "declares shape"),
    "shape-negative": (member_case(lambda m: npy(param0(m), shape=(-3, -5))), "negative shape"),
    "shape-too-small": (member_case(lambda m: npy(param0(m), shape=(5, 2))), "declares shape"),
    "dtype-wider": (member_case(lambda m: npy(param0(m), descr="<c16")), "declares shape"),
    "member-sizes-beyond-file": (lambda m: sizes_beyond_file(m), "claim .* bytes, more than the file's"),
    "compressed-members": (lambda m: zip_of(m, zipfile.ZIP_DEFLATED), "is compressed"),
    "encrypted-member": (lambda m: encrypted(m), "is encrypted"),
    # member names
    "name-dotdot": (lambda m: zip_of(renamed(m, P0, "../params/0.npy")), "path out of the archive"),
    "name-dotdot-inside": (lambda m: zip_of(renamed(m, P0, "params/../../0.npy")), "path out of the archive"),
    "name-absolute": (lambda m: zip_of(renamed(m, P0, "/params/0.npy")), "path out of the archive"),
    "name-backslashes": (lambda m: zip_of(renamed(m, P0, "..\\params\\0.npy")), "path out of the archive"),
    "name-drive": (lambda m: zip_of(renamed(m, P0, "C:/params/0.npy")), "path out of the archive"),
    "name-nul": (lambda m: nul_in_name(m), "holds a NUL byte"),
    "name-not-npy": (lambda m: zip_of({**m, "notes.txt": b"hello"}), "member 'notes.txt' is not an .npy array"),
    "name-directory": (lambda m: zip_of({**m, "params/": b""}), "is not an .npy array"),
    "duplicate-param": (lambda m: zip_of([*m.items(), (P0, npy(param0(m) + 1))]),
                        "holds the member 'params/0.npy' twice"),
    "duplicate-meta": (lambda m: zip_of([*m.items(), ("__meta__.npy", m["__meta__.npy"])]),
                       "holds the member '__meta__.npy' twice"),
}


NOT_ZIPS = {"empty-file", "npy-file", "pickle-file", "gzipped-checkpoint", "random-bytes",
            "zip-header-then-junk", "zip-with-other-comment"}


def zip_without_comment(data):
    return data[-22:-18] == b"PK\x05\x06" and data[-2:] == b"\0\0"


@pytest.mark.parametrize(("case", "checksummed"),
                         [(case, False) for case in HOSTILE] + [(case, True) for case in HOSTILE
                                                                if case not in NOT_ZIPS])
def test_hostile_file_is_refused_and_changes_nothing(saved, case, checksummed):
    """Each case is refused with a message that says what is wrong; with a
    valid checksum too (a checksum proves the file is intact, not that it is
    a good checkpoint). Memory stays bounded by the file's size."""
    path, data, run = saved
    build, message = HOSTILE[case]
    hostile = build(members_of(data))
    assert zip_without_comment(hostile) == (case not in NOT_ZIPS), case
    if checksummed:
        hostile = with_checksum(hostile)
    put(path, hostile)
    tracemalloc.start()
    try:
        refuse(path, run, match=message)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * len(hostile) + (8 << 20), f"{case}: load allocated {peak} bytes"


def test_gigabyte_declared_shape_allocates_nothing_large(saved):
    """A header declaring 1 GiB (an allocation that would succeed) is refused
    before anything of that size is allocated."""
    path, data, run = saved
    members = members_of(data)
    put(path, zip_of({**members, P0: npy(param0(members), shape=(2**27,))}))
    tracemalloc.start()
    try:
        refuse(path, run, match=r"declares shape \(134217728,\)")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_device_is_not_read(saved):
    path, _, run = saved
    refuse(os.devnull, run, match="is not a regular file")


def test_odd_keys_get_safe_member_names_and_round_trip(tmp_path):
    """Keys that would make a member name a path trick (load refuses those)
    are percent-encoded in the name; the keys themselves come back as they were."""
    problem = LeastSquares()
    params, opt, sched = make_run("SGD", problem)
    extra = {key: np.full(2, float(k)) for k, key in enumerate(["..", "../x", "/abs", "a\0b", "", ".", "c:\\d", "é"])}
    fastopt.save(tmp_path / "c.npz", opt, sched, extra=extra)
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        names = [info.orig_filename for info in z.infolist()]
    assert all("\0" not in n and ".." not in re.split(r"[/\\]", n) and not n.startswith("/") for n in names), names
    loaded = fastopt.load(tmp_path / "c.npz", opt, sched)
    assert bitwise(loaded) == bitwise(extra)


# ------------------------------------------------------------- mismatches
def mismatched_runs(problem):
    """{case: (build the run to load into, error, message)} beyond test_checkpoint's."""
    def adam(params, groups=True):
        return optim.Adam([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}] if groups else params)

    def sequential(opt, parts=2):
        schedulers = [S.LinearLR(opt, 0.5, total_iters=4), S.CosineAnnealingLR(opt, T_max=30),
                      S.StepLR(opt, 3)][:parts]
        return S.SequentialLR(opt, schedulers, [4, 8][:parts - 1])

    def with_params(params, groups=True, parts=2, given=None):
        opt = adam(params, groups)
        return params, opt, sequential(opt, parts), given

    good = problem.params
    return {
        "more-params": (lambda: with_params(good(), given=[*good(), np.zeros(3)]), ValueError,
                        "holds 2 parameter arrays but 3 were given"),
        "no-params-given": (lambda: with_params(good(), given=[]), ValueError,
                            "holds 2 parameter arrays but 0 were given"),
        "one-param-group": (lambda: with_params(good(), groups=False), ValueError,
                            "state_dict has 2 param groups, optimizer has 1"),
        "shape-of-second": (lambda: with_params([good()[0], np.zeros(4, np.float32)]), ValueError,
                            r"params\[1\] has shape \(4,\) but the checkpoint's has shape \(3,\)"),
        "byte-order": (lambda: with_params(good(), given=[good()[0].astype(">f8"), good()[1]]), TypeError,
                       r"params\[0\] has dtype >f8 but the checkpoint's has dtype float64"),
        "float16": (lambda: with_params(good(), given=[good()[0], good()[1].astype(np.float16)]), TypeError,
                    r"params\[1\] has dtype float16 but the checkpoint's has dtype float32"),
        "not-an-array": (lambda: with_params(good(), given=[good()[0].tolist(), good()[1]]), TypeError,
                         r"params\[0\] must be a numpy.ndarray"),
        "three-part-sequential": (lambda: with_params(good(), parts=3), ValueError,
                                  "state_dict does not fit SequentialLR|state_dict has 2 schedulers"),
    }


@pytest.mark.parametrize("case", list(mismatched_runs(LeastSquares())))
def test_mismatched_checkpoint_is_refused_and_changes_nothing(saved, case):
    path, _, _ = saved
    build, error, message = mismatched_runs(LeastSquares())[case]
    params, opt, sched, given = build()
    refuse(path, (params, opt, sched), error=error, match=message, params=given)


def test_unfitting_optimizer_state_in_an_intact_file_changes_nothing(saved):
    """The file is intact (checksummed) and well formed, but its optimizer
    state does not fit the parameters: refused, and the run is as it was."""
    path, data, run = saved
    members = members_of(data)

    def state_items(change):
        return with_meta(members, lambda m: change(m["optimizer"]["state_dict"]["state"]["__items__"]))

    cases = {
        "state-for-param-7": (state_items(lambda items: items[0].__setitem__(0, 7)), ValueError,
                              "state for parameter 7, optimizer has 2"),
        "unknown-state-key": (state_items(lambda items: items[0][1].update(velocity=1.0)), ValueError,
                              "unknown key 'velocity'"),
        "state-shape": ({**members, "optimizer/state/0/exp_avg.npy": npy(np.zeros((2, 2)))}, ValueError,
                        r"has shape \(2, 2\) but parameter 0 needs shape \(5, 3\)"),
        "state-int-dtype": ({**members, "optimizer/state/0/exp_avg.npy": npy(np.zeros((5, 3), np.int64))},
                            TypeError, "expected floating point"),
    }
    for hostile, error, message in cases.values():
        put(path, with_checksum(zip_of(hostile)))
        refuse(path, run, error=error, match=message)
