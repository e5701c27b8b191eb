"""Checkpoints: an optimizer, its scheduler and the parameters in one ``.npz``.

    fastopt.save("run.npz", opt, sched)          # weights = the optimizer's parameters
    fastopt.load("run.npz", opt, sched)          # in place; the run resumes bitwise

The file is an ordinary NumPy ``.npz`` (a zip of uncompressed ``.npy`` arrays):

* every array of the state (parameters, optimizer buffers) is stored as
  itself, bit for bit, under a readable name such as
  ``optimizer/state/0/exp_avg`` or ``params/0`` (a dict key that is not a
  plain name is percent-encoded there, e.g. ``extra/a%2Fb`` for ``"a/b"``, so
  that no member name is a path such as ``../x``);
* everything else (step counts, hyperparameters, scheduler state, ``extra``)
  is one JSON string, the array ``__meta__``, in which each stored array
  appears as ``{"__array__": name}``;
* the zip comment is a checksum of the whole file: ``fastopt-crc32:`` and 8
  hex digits, the CRC-32 of every byte before those digits. The zip's own
  CRC-32s cover each member's data but not the zip's headers, so without it
  some flipped bits (in a timestamp, a size, an extra field) would go
  unnoticed; CRC-32 detects every single-bit error and every burst of up to
  32 bits, and since the checksum ends the file, a truncation is detected too.

Nothing is pickled, and :func:`load` reads no object arrays, so a checkpoint
from elsewhere cannot run code.

Versions: ``FORMAT_VERSION`` is still 1. The checksum is an ordinary zip
comment, which numpy and older fastopt releases ignore, so they read these
files; files without it (from fastopt before the checksum, or an ``.npz``
rewritten by ``np.savez``) still load, with only the zip's per-member CRC-32s
to guard them. A file that ends in anything else than a valid checksum or a
zip end record without a comment is refused.

:func:`save` writes a temporary file in the target's directory, flushes and
fsyncs it, then renames it over the target with ``os.replace`` (atomic on
POSIX and Windows) and fsyncs the directory. A crash or an error at any point
leaves either the old checkpoint or the new one, never a torn file; on an
error the temporary file is removed. (A killed process cannot clean up: a
hidden ``.NAME.*.tmp`` file may remain beside the checkpoint; it never
disturbs later saves or loads, and may be deleted.)

:func:`load` trusts nothing in the file. Before it reads any array data it
checks the checksum; the member names (no absolute path, ``..`` component,
NUL byte or duplicate); that members are stored uncompressed and unencrypted
(a compressed member's size is known only by inflating it) and together no
larger than the file; and every ``.npy`` header: no object dtype, and a
declared shape that fits the member's size exactly, so a hostile header cannot
make it allocate more memory than the file's size. Then it checks everything
else (format, version, metadata, optimizer and scheduler classes, parameter
count, shapes and dtypes, state) before it changes anything: on an error the
parameters, the optimizer and the scheduler are as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import stat
import struct
import urllib.parse
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastopt-checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"
_ARRAY, _TUPLE, _ITEMS = "__array__", "__tuple__", "__items__"

# The zip's last record: the end of central directory, 22 bytes and then the
# comment, whose length is the record's last 2 bytes.
_END_RECORD = b"PK\x05\x06"
_END_RECORD_SIZE = 22
_CHECKSUM_PREFIX = b"fastopt-crc32:"
_COMMENT_SIZE = len(_CHECKSUM_PREFIX) + 8    # the prefix and 8 hex digits
_CHUNK = 1 << 20


class _Unreadable(ValueError):
    """The file is damaged or was not written by :func:`save`; the message says
    what is wrong, and :func:`load` adds the path."""


class _NotACheckpoint(_Unreadable):
    """A readable file, but not one :func:`save` writes (e.g. another .npz)."""


# ------------------------------------------------------------------ encoding
def _encode(value: Any, name: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON-friendly data; its arrays go into ``arrays``."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"{name} is an object array, which cannot be stored without pickle")
        key = name
        while key in arrays or key == _META:   # e.g. state keys 0 and "0" in one dict
            key += "'"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{name}/{k}", arrays) for k, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}/{k}", arrays) for k, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{name}/{_name_part(k)}", arrays) for k, v in value.items()}
        # Keys JSON cannot keep (ints: the optimizer's per-parameter state).
        return {_ITEMS: [[_encode(k, name, {}), _encode(v, f"{name}/{_name_part(k)}", arrays)]
                         for k, v in value.items()]}
    raise TypeError(f"{name} is a {type(value).__name__}, which a checkpoint cannot store "
                    "(arrays, numbers, strings, None, lists, tuples and dicts only)")


def _name_part(key: Any) -> str:
    """A dict key as one part of a member name. The metadata keeps the key
    itself; the name only has to be readable and safe, so anything else than
    a plain name is percent-encoded: no '/', '\\' or NUL of its own, never
    '..' (load refuses such names, and zipfile cuts a name at a NUL)."""
    part = urllib.parse.quote(str(key), safe=" '")
    return part if part.strip(".") else part.replace(".", "%2E") or "%"


def _decode(value: Any, arrays: dict[str, np.ndarray], used: set[str]) -> Any:
    """Undo :func:`_encode`; the names of the arrays it refers to go into ``used``."""
    if isinstance(value, list):
        return [_decode(v, arrays, used) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_ARRAY}:
        name = value[_ARRAY]
        if not isinstance(name, str) or name not in arrays:
            raise _Unreadable(f"the metadata refers to an array {name!r} the file does not hold")
        used.add(name)
        return arrays[name]
    if set(value) == {_TUPLE}:
        return tuple(_decode(v, arrays, used) for v in _json_list(value[_TUPLE], _TUPLE))
    if set(value) == {_ITEMS}:
        return dict(_decode_item(item, arrays, used) for item in _json_list(value[_ITEMS], _ITEMS))
    return {k: _decode(v, arrays, used) for k, v in value.items()}


def _json_list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise _Unreadable(f"the metadata has a {what} that is not a list: {value!r:.80}")
    return value


def _decode_item(item: Any, arrays: dict[str, np.ndarray], used: set[str]) -> tuple[Any, Any]:
    if not (isinstance(item, list) and len(item) == 2):
        raise _Unreadable(f"the metadata has a dict item that is not a [key, value] pair: {item!r:.80}")
    key = _decode(item[0], arrays, used)
    try:
        hash(key)
    except TypeError:
        raise _Unreadable(f"the metadata has a dict key that cannot be a key: {key!r:.80}") from None
    return key, _decode(item[1], arrays, used)


# -------------------------------------------------------------------- saving
def save(path, optimizer, scheduler=None, params: Sequence[np.ndarray] | None = None, *,
         extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint to ``path`` atomically (see the module docstring).

    ``params``: the arrays whose values to store; default: the optimizer's
    parameters (``optimizer.params``), pass ``()`` to store none. ``scheduler``:
    a :mod:`fastopt.schedules` scheduler or None. ``extra``: a dict of your own
    JSON-friendly values (epoch, metrics, config), returned by :func:`load`.
    """
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
    params = _default_params(optimizer, params)
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "optimizer": {"class": type(optimizer).__name__,
                      "state_dict": _encode(optimizer.state_dict(), "optimizer", arrays)},
        "scheduler": None if scheduler is None else {
            "class": type(scheduler).__name__,
            "state_dict": _encode(scheduler.state_dict(), "scheduler", arrays)},
        "params": [_encode(np.asarray(p), f"params/{k}", arrays) for k, p in enumerate(params)],
        "extra": _encode(extra or {}, "extra", arrays),
    }
    # allow_nan: JSON has no inf/nan, but the state can (ReduceLROnPlateau's
    # best starts at inf); Python's json writes and reads them as Infinity/NaN.
    arrays[_META] = np.array(json.dumps(meta, allow_nan=True))
    _write_atomically(os.fspath(path), arrays)


def _default_params(optimizer, params) -> list[np.ndarray]:
    if params is None:
        return list(getattr(optimizer, "params", ()))
    return [params] if isinstance(params, np.ndarray) else list(params)


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    # Same directory as the target: os.replace is atomic only within one file system.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # 0o666 and O_EXCL: the umask decides the permissions, as for any new file,
    # and an existing file is never reused. O_RDWR: the checksum reads the zip back.
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w+b") as f:
            np.savez(f, **arrays)
            _append_checksum(f)
            f.flush()
            os.fsync(f.fileno())   # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _append_checksum(file) -> None:
    """Turn the empty zip comment np.savez wrote into the checksum (module docstring)."""
    file.seek(-_END_RECORD_SIZE, os.SEEK_END)
    end = file.read(_END_RECORD_SIZE)
    if end[:4] != _END_RECORD or end[-2:] != b"\0\0":
        raise RuntimeError("numpy.savez did not end the zip with an end record without a comment")
    file.seek(-2, os.SEEK_END)
    file.write(struct.pack("<H", _COMMENT_SIZE) + _CHECKSUM_PREFIX)
    file.write(b"%08x" % _crc32(file, file.tell()))


def _crc32(file, stop: int) -> int:
    """The CRC-32 of the file's first ``stop`` bytes, read in chunks."""
    file.seek(0)
    crc = 0
    while file.tell() < stop:
        chunk = file.read(min(_CHUNK, stop - file.tell()))
        if not chunk:
            raise EOFError("the file became shorter while being read")
        crc = zlib.crc32(chunk, crc)
    return crc


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------- loading
def load(path, optimizer, scheduler=None, params: Sequence[np.ndarray] | None = None
         ) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save`; returns its ``extra`` dict.

    The stored parameter values are copied **into** ``params`` (default: the
    optimizer's parameters) in place; the optimizer's and the scheduler's
    state are restored with their ``load_state_dict``. ``scheduler=None``
    ignores a stored scheduler state; ``params=()`` ignores stored weights.

    Raises ``ValueError`` for an unreadable, corrupt or hostile file (the
    message says what is wrong) and for a checkpoint that does not fit (other
    optimizer or scheduler class, other parameter count or shapes),
    ``TypeError`` for a parameter of another dtype or type, and the errors of
    opening the file (``FileNotFoundError``, ``PermissionError``,
    ``IsADirectoryError``) as they are -- always before anything is changed.
    """
    path = os.fspath(path)
    saved = _read(path)
    _check_class(saved.optimizer_class, optimizer, "optimizer")
    if scheduler is not None:
        if saved.scheduler_class is None:
            raise ValueError(f"{path} holds no scheduler state, but a "
                             f"{type(scheduler).__name__} was given")
        _check_class(saved.scheduler_class, scheduler, "scheduler")

    explicit_params = params is not None
    params = _default_params(optimizer, params)
    if explicit_params or saved.params:
        _check_params(path, params, saved.params)

    _restore_states(optimizer, saved.optimizer_state,
                    scheduler, None if scheduler is None else saved.scheduler_state)
    for p, stored in zip(params, saved.params):
        np.copyto(p, stored)
    return saved.extra


@dataclasses.dataclass
class _Checkpoint:
    """A file's content, checked for form and decoded (nothing applied yet)."""
    optimizer_class: str
    optimizer_state: dict[str, Any]
    scheduler_class: str | None
    scheduler_state: Any
    params: list[np.ndarray]
    extra: dict[str, Any]


# What reading a damaged or hostile file can raise, besides _Unreadable:
# numpy (reading array data) and json raise ValueError; zipfile raises
# BadZipFile, EOFError, OSError, and NotImplementedError or RuntimeError (an
# unsupported zip feature, encryption); RecursionError (a RuntimeError too):
# absurdly nested JSON; struct.error: a short zip record.
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, struct.error)


def _read(path: str) -> _Checkpoint:
    """The checkpoint at ``path``, read into memory and checked for form."""
    # Outside the try: a missing file, a directory or no permission are not
    # damaged checkpoints, and keep their own exception.
    with open(path, "rb") as file:
        try:
            return _read_file(file)
        except _NotACheckpoint as error:
            raise ValueError(f"{path} is not a fastopt checkpoint: {error}") from None
        except _Unreadable as error:
            raise ValueError(f"{path} is not a readable fastopt checkpoint: {error}") from None
        except _READ_ERRORS as error:
            raise ValueError(f"{path} is not a readable fastopt checkpoint (corrupt or truncated?): "
                             f"{type(error).__name__}: {error}") from error


def _read_file(file) -> _Checkpoint:
    status = os.fstat(file.fileno())
    if not stat.S_ISREG(status.st_mode):   # a device (/dev/zero) could be read forever
        raise _Unreadable("it is not a regular file")
    size = status.st_size
    if size == 0:
        raise _Unreadable("it is empty")
    _verify_checksum(file, size)
    with zipfile.ZipFile(file) as archive:
        members = _members(archive, size)
        for name, info in members.items():   # headers only: nothing allocated yet
            _check_npy_header(archive, name, info)
        if _META not in members:
            raise _NotACheckpoint(f"it is an .npz file without a {_META} array")
        meta = _check_meta(_read_meta(archive, members.pop(_META)))
        arrays = {name: _read_array(archive, info) for name, info in members.items()}
    return _decode_checkpoint(meta, arrays)


def _verify_checksum(file, size: int) -> None:
    """Check the checksum that ends the file; a file without one (older
    fastopt, np.savez) must end with a zip end record without a comment."""
    tail_size = _END_RECORD_SIZE + _COMMENT_SIZE
    file.seek(max(size - tail_size, 0))
    tail = file.read()
    end_record, comment = tail[:_END_RECORD_SIZE], tail[_END_RECORD_SIZE:]
    if (len(tail) == tail_size and end_record[:4] == _END_RECORD
            and end_record[-2:] == struct.pack("<H", _COMMENT_SIZE)
            and comment.startswith(_CHECKSUM_PREFIX)):
        digits = comment[len(_CHECKSUM_PREFIX):]
        actual = _crc32(file, size - len(digits))
        if not re.fullmatch(rb"[0-9a-f]{8}", digits) or int(digits, 16) != actual:
            raise _Unreadable(f"its CRC-32 is {actual:08x} but its checksum says {digits!r} "
                              "(the file is damaged)")
        return
    if not (tail[-_END_RECORD_SIZE:][:4] == _END_RECORD and tail.endswith(b"\0\0")):
        raise _Unreadable("it ends neither with a fastopt checksum nor with a zip end record "
                          "(truncated, or not an .npz file)")


def _members(archive: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """The members by array name, checked for form before any is read."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = _array_name(info.orig_filename)   # zipfile's filename is cut at a NUL
        if name in members:
            raise _Unreadable(f"it holds the member {info.orig_filename!r} twice")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _Unreadable(f"its member {info.orig_filename!r} is compressed (method "
                              f"{info.compress_type}); checkpoints store arrays uncompressed")
        if info.compress_size != info.file_size:
            raise _Unreadable(f"its member {info.orig_filename!r} is stored, but its two sizes differ")
        if info.flag_bits & 0x41:   # bits 0 and 6: encrypted
            raise _Unreadable(f"its member {info.orig_filename!r} is encrypted")
        members[name] = info
    # Stored members cannot overlap: together they fit in the file. This bounds
    # what reading them can allocate by the file's size.
    declared = sum(info.file_size for info in members.values())
    if declared > size:
        raise _Unreadable(f"its members claim {declared} bytes, more than the file's {size}")
    return members


def _array_name(member: str) -> str:
    """The array name of a zip member (``params/0.npy``: ``params/0``), if it is safe."""
    if "\0" in member:
        raise _Unreadable(f"its member name {member!r} holds a NUL byte")
    if (member.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", member)
            or ".." in re.split(r"[/\\]", member)):
        raise _Unreadable(f"its member name {member!r} is a path out of the archive "
                          "(absolute, or with a '..' part)")
    if not member.endswith(".npy"):
        raise _NotACheckpoint(f"its member {member!r} is not an .npy array")
    return member[:-len(".npy")]


# .npy format 3.0 differs from 2.0 only in the header's text encoding (utf-8
# field names of a structured dtype), which changes no size checked here.
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0,
                       (3, 0): np.lib.format.read_array_header_2_0}


def _check_npy_header(archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> None:
    """The member's dtype and declared size, from its .npy header alone."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in _NPY_HEADER_READERS:
            raise _Unreadable(f"its array {name!r} has .npy format version {version}")
        try:
            shape, _, dtype = _NPY_HEADER_READERS[version](member)
        except Exception as error:
            # numpy parses the header (a Python literal) with ast.literal_eval and,
            # for old headers, tokenize: a damaged or hostile one can raise about
            # anything (SyntaxError, TypeError, tokenize.TokenError, MemoryError).
            raise _Unreadable(f"its array {name!r} has an unreadable .npy header: "
                              f"{type(error).__name__}: {error}") from error
        data_size = info.file_size - member.tell()
    if dtype.hasobject:
        raise _Unreadable(f"its array {name!r} is an object array, which only unpickling could "
                          "read (fastopt reads arrays with allow_pickle=False)")
    if any(n < 0 for n in shape):
        raise _Unreadable(f"its array {name!r} declares a negative shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    if declared != data_size:
        raise _Unreadable(f"its array {name!r} declares shape {shape} and dtype {dtype} "
                          f"({declared} bytes) but holds {data_size} bytes")


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """A member whose header :func:`_check_npy_header` accepted."""
    with archive.open(info) as member:
        array = np.lib.format.read_array(member, allow_pickle=False)
        if member.read(1):   # reading to the end is what makes zipfile check the CRC-32
            raise _Unreadable(f"its member {info.orig_filename!r} holds more than its array")
    return array


def _read_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    text = _read_array(archive, info)
    if text.shape != () or text.dtype.kind != "U":
        raise _NotACheckpoint(f"its {_META} array is not a string")
    return json.loads(str(text))


def _check_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _NotACheckpoint(f"its metadata has no format {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Unreadable(f"it has an invalid checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise _Unreadable(f"it has checkpoint format version {version}; "
                          f"this fastopt reads versions up to {FORMAT_VERSION}")

    def entry(value: Any) -> bool:
        return (isinstance(value, dict) and {"class", "state_dict"} <= set(value)
                and isinstance(value["class"], str))

    if not (entry(meta.get("optimizer")) and (meta.get("scheduler") is None or entry(meta["scheduler"]))
            and isinstance(meta.get("params"), list) and isinstance(meta.get("extra"), dict)):
        raise _Unreadable("it has malformed checkpoint metadata")
    return meta


def _decode_checkpoint(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> _Checkpoint:
    used: set[str] = set()
    try:
        optimizer_state = _decode(meta["optimizer"]["state_dict"], arrays, used)
        scheduler_state = (None if meta["scheduler"] is None
                           else _decode(meta["scheduler"]["state_dict"], arrays, used))
        params = [_decode(p, arrays, used) for p in meta["params"]]
        extra = _decode(meta["extra"], arrays, used)
    except RecursionError:
        raise _Unreadable("its metadata is nested too deeply") from None
    for k, p in enumerate(params):
        if not isinstance(p, np.ndarray):
            raise _Unreadable(f"its metadata has params[{k}] = {p!r:.80}, not an array")
    if not _is_optimizer_state(optimizer_state):
        raise _Unreadable("its optimizer state is not a dict of 'state' (a dict of dicts) "
                          "and 'param_groups' (a list of dicts with a list 'params')")
    # save writes no array the metadata does not point at: such a file was made elsewhere.
    if used != set(arrays):
        raise _Unreadable(f"it holds arrays its metadata never mentions: {sorted(set(arrays) - used)}")
    return _Checkpoint(meta["optimizer"]["class"], optimizer_state,
                       None if meta["scheduler"] is None else meta["scheduler"]["class"],
                       scheduler_state, params, extra)


def _is_optimizer_state(state: Any) -> bool:
    """The torch-style form every optimizer's state_dict has (its
    load_state_dict checks the content, but assumes this form)."""
    return (isinstance(state, dict) and {"state", "param_groups"} <= set(state)
            and isinstance(state["state"], dict)
            and all(isinstance(s, dict) for s in state["state"].values())
            and isinstance(state["param_groups"], list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                    for g in state["param_groups"]))


def _check_class(saved: str, obj: Any, what: str) -> None:
    if saved != type(obj).__name__:
        raise ValueError(f"the checkpoint holds the state of {what} class {saved}, "
                         f"not {type(obj).__name__}")


def _check_params(path: str, params: list[Any], saved: list[np.ndarray]) -> None:
    if len(params) != len(saved):
        raise ValueError(f"{path} holds {len(saved)} parameter arrays but {len(params)} were given")
    for k, (p, s) in enumerate(zip(params, saved)):
        if not isinstance(p, np.ndarray):
            raise TypeError(f"params[{k}] must be a numpy.ndarray (it is updated in place), "
                            f"got {type(p).__name__}")
        if p.shape != s.shape:
            raise ValueError(f"params[{k}] has shape {p.shape} but the checkpoint's "
                             f"has shape {s.shape}")
        if p.dtype != s.dtype:
            raise TypeError(f"params[{k}] has dtype {p.dtype} but the checkpoint's "
                            f"has dtype {s.dtype}")
        if not p.flags.writeable:
            raise ValueError(f"params[{k}] is read-only but is restored in place")


def _restore_states(optimizer, optimizer_state, scheduler, scheduler_state) -> None:
    """Load both states, or neither: on any error, put the old ones back."""
    old_optimizer = optimizer.state_dict()
    old_scheduler = None if scheduler is None else scheduler.state_dict()
    try:
        _load_state(optimizer, optimizer_state, "optimizer")
        if scheduler is not None:
            _load_state(scheduler, scheduler_state, "scheduler")
    except Exception:
        optimizer.load_state_dict(old_optimizer)
        if scheduler is not None:
            scheduler.load_state_dict(old_scheduler)
        raise


def _load_state(obj, state, what: str) -> None:
    try:
        obj.load_state_dict(state)
    except (LookupError, AttributeError) as error:
        # A load_state_dict that met a state of an unexpected form: say so,
        # rather than with a bare KeyError.
        raise ValueError(f"the checkpoint's {what} state does not fit {type(obj).__name__}: "
                         f"{type(error).__name__}: {error}") from error
