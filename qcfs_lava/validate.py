"""Exact checks of untrusted values, and of the paths the CLI writes to.

Readers (NetX, checkpoints, reference state dicts) call these before anything runs: an
integer field must be stored as an integer and lie in its range, a float must be finite, a
shape must match exactly. Nothing is coerced (a float 523.9 is not "523"; a uint64 that
wraps to a negative int64 is not "-2").

The value checks raise :class:`InvalidValueError` with a short description; the reader that calls
them adds the file name and the fix and raises its own typed error. The path checks raise
:class:`~qcfs_lava.errors.OutputPathError` directly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava.errors import OutputPathError
from qcfs_lava.interrupt import deferred_interrupt  # noqa: F401  (moved; old path kept)

__all__ = [
    "InvalidValueError",
    "exact_int",
    "exact_int_vector",
    "exact_int_array",
    "exact_bool",
    "finite_float",
    "strict_json",
    "is_plain",
    "check_torch_archive",
    "check_reference_tensors",
    "check_output_path",
    "check_recorded_metadata",
    "resolve_path",
]

INDEX_MAX = (1 << 31) - 1  # shapes, strides, counts: anything larger is damage, not a network
STEPS_MAX = 1 << 16  # the largest T a file may record (docs/failure-modes.md)


class InvalidValueError(ValueError):
    """A stored value has the wrong type, shape or range (the message says which)."""


def _is_int_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def exact_int(value: Any, where: str, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as a Python int, if it is one integer (numpy or Python) within ``[lo, hi]``.

    Raises:
        InvalidValueError: a float, bool, string, several values, or out of range.
    """
    if isinstance(value, (bool, np.bool_)):
        raise InvalidValueError(f"{where} must be an integer, got the boolean {value!r}")
    if isinstance(value, int):
        out = value
    else:
        arr = np.asarray(value)
        if arr.size != 1:
            raise InvalidValueError(f"{where} must be one integer, got shape {arr.shape}")
        if not _is_int_dtype(arr.dtype):
            raise InvalidValueError(
                f"{where} must be stored as an integer, got {arr.dtype} {arr.reshape(-1)[0]!r}"
            )
        out = int(arr.reshape(-1)[0].item())
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise InvalidValueError(f"{where} = {out} is outside [{lo}, {hi}]")
    return out


def exact_int_array(value: Any, where: str, lo: int, hi: int) -> np.ndarray:
    """``value`` as an int64 array, if it is an integer array with every element in range."""
    arr = np.asarray(value)
    if not _is_int_dtype(arr.dtype):
        raise InvalidValueError(f"{where} must be an integer array, got dtype {arr.dtype}")
    if arr.size:
        amin, amax = arr.min(), arr.max()
        if amin < lo or amax > hi:  # compared before any cast, so nothing wraps
            raise InvalidValueError(
                f"{where} values must lie in [{lo}, {hi}], got [{amin}, {amax}]")
    return arr.astype(np.int64)


def exact_int_vector(
    value: Any, where: str, lo: int, hi: int, length: int | tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """A 1-D integer vector (a scalar counts as length 1) as a tuple of ints."""
    arr = np.asarray(value)
    if arr.ndim > 1:
        raise InvalidValueError(f"{where} must be a vector, got shape {arr.shape}")
    out = tuple(int(v) for v in exact_int_array(np.atleast_1d(arr), where, lo, hi))
    lengths = (length,) if isinstance(length, int) else length
    if lengths is not None and len(out) not in lengths:
        raise InvalidValueError(f"{where} must have {' or '.join(map(str, lengths))} entries, "
                           f"got {len(out)}")
    return out


def exact_bool(value: Any, where: str) -> bool:
    """A stored boolean: numpy/Python bool, or an integer 0 or 1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    arr = np.asarray(value)
    if arr.dtype == np.bool_ and arr.size == 1:
        return bool(arr.reshape(-1)[0])
    return bool(exact_int(value, where, 0, 1))


def finite_float(value: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    """A finite real number (int or float, not bool) within ``[lo, hi]``."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise InvalidValueError(f"{where} must be a number, got {value!r}")
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        raise InvalidValueError(f"{where} must be one number, got {arr.dtype} of shape {arr.shape}")
    out = float(arr.reshape(-1)[0].item())
    if not math.isfinite(out):
        raise InvalidValueError(f"{where} must be finite, got {out}")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise InvalidValueError(f"{where} = {out} is outside [{lo}, {hi}]")
    return out


def _refuse_constant(name: str):
    raise InvalidValueError(f"JSON holds {name}, which is not a number JSON allows")


def strict_json(text: Any, where: str) -> Any:
    """Parse JSON text, refusing ``NaN``/``Infinity`` and anything that is not a string."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidValueError(f"{where} is not UTF-8 text ({exc})") from None
    if not isinstance(text, str):
        raise InvalidValueError(f"{where} must be JSON text, got {type(text).__name__}")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"{where} is not valid JSON ({exc})") from None
    except InvalidValueError as exc:
        raise InvalidValueError(f"{where}: {exc}") from None
    except RecursionError:
        raise InvalidValueError(f"{where} is nested too deeply") from None


# --------------------------------------------------------------------------- recorded metadata


def check_recorded_metadata(meta: Mapping[str, Any], where: str = "metadata") -> dict[str, Any]:
    """Check the provenance a NetX or NIR file records (the keys qcfs-lava writes; others are
    kept as they are).

    ``steps`` is an integer in ``1..STEPS_MAX`` (a recorded T becomes a default, so an absurd
    one would run for ever); ``dataset``, ``model``, ``checkpoint``, ``checkpoint_sha256`` and
    ``qcfs_lava_version`` are strings; ``class_names`` a list of strings; ``layer_copies`` an
    integer in ``1..64``.

    Returns:
        ``meta`` as a dict, values unchanged.

    Raises:
        InvalidValueError: every bad field, in one message.
    """
    problems = []
    for key, hi in (("steps", STEPS_MAX), ("layer_copies", 64)):
        if key not in meta:
            continue
        value = meta[key]
        if isinstance(value, (np.integer, np.ndarray)) and np.ndim(value) == 0:
            value = value.item()  # an HDF5 scalar; a list or an array of one is no integer
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where} '{key}' must be an integer, got {meta[key]!r}"[:200])
        elif not 1 <= value <= hi:
            problems.append(f"{where} '{key}' = {value} is outside [1, {hi}]")
    for key in ("dataset", "model", "checkpoint", "checkpoint_sha256", "qcfs_lava_version"):
        if key in meta and (not isinstance(meta[key], str) or not meta[key]):
            problems.append(f"{where} '{key}' must be a non-empty string, got {meta[key]!r}"[:200])
    if "class_names" in meta:
        names = meta["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or \
                len(names) > INDEX_MAX:
            problems.append(f"{where} 'class_names' must be a list of strings")
    if problems:
        raise InvalidValueError("; ".join(problems))
    return dict(meta)


# --------------------------------------------------------------------------- checkpoint values

_PLAIN = (str, int, float, bool, type(None))
LEVELS_MAX = 1 << 16


def is_plain(value: Any, depth: int = 0) -> bool:
    """True for JSON-like values (what a checkpoint's ``model_kwargs`` may hold)."""
    if depth > 8:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v, depth + 1) for k, v in value.items())
    return False


def check_torch_archive(path: str | os.PathLike) -> str | None:
    """Verify the CRC-32 of every record of a ``torch.save`` zip archive before torch reads it.

    ``torch.load`` does not check the checksums its own writer stores, so a changed byte of a
    weight would load silently as a different weight. A file that is not a zip archive (the
    legacy pickle format) is left to ``torch.load``.

    Returns:
        None when the archive is intact (or not a zip); otherwise what is wrong, in a few words.
    """
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                head = f.read(4)
            return "a damaged zip archive" if head.startswith(b"PK") else None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError, UnicodeDecodeError) as exc:
        return f"a damaged zip archive ({exc})"
    if bad is not None:
        return f"record {bad!r} fails its CRC-32 check"
    return None


def check_reference_tensors(
    renamed: Mapping[str, Any], expected: Mapping[str, Any], arch: str
) -> list[str]:
    """Problems of reference tensors against the model's own: exact shapes (a one-element
    threshold may be a scalar or a vector of one), finite values, positive thresholds.

    Returns:
        One line per problem (empty when everything fits).
    """
    import torch

    problems = []
    for key, value in renamed.items():
        if key not in expected:
            continue
        want = tuple(expected[key].shape)
        got = tuple(value.shape)
        if got != want and not (value.numel() == 1 and int(np.prod(want)) == 1):
            problems.append(f"{key}: reference shape {got}, model needs {want}")
            continue
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            problems.append(f"{key}: holds NaN or infinite values")
        elif key.endswith("thresh") and bool((value <= 0).any()):
            problems.append(f"{key}: threshold {value.reshape(-1).tolist()[:4]} must be > 0")
    return problems


# --------------------------------------------------------------------------- output paths


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute with ``..`` and every symbolic link resolved, as the operating
    system will see it when the file is written (``nothere/../in.pt`` is ``in.pt``)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _same_file(a: Path, b: Path) -> bool:
    if resolve_path(a) == resolve_path(b):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)  # hard links
    return False


_KIND_NAMES = {"hdf5": "an HDF5 / NetX / NIR file", "torch": "a torch checkpoint",
               "json": "a JSON file", "other": "a file of unknown kind"}


def check_output_path(
    path: str | os.PathLike,
    *,
    arg: str,
    kind: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    force: bool = False,
    others: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """The one rule for every file a command writes, checked before any work.

    The path is resolved (``..``, symbolic links) before it is compared, so no spelling of an
    input gets past the check.

    Args:
        path: the file the command will write.
        arg: the option that named it (``"--out"``, ``"--json"``), for the message.
        kind: what will be written: ``"hdf5"``, ``"json"`` or ``"torch"`` (see
            :func:`qcfs_lava.safe_hdf5.file_kind`).
        inputs: every file the command reads (network, checkpoint, dataset file, NIR file):
            never overwritten, even with ``force``. ``None`` entries are ignored.
        force: allow replacing an existing regular file of another kind.
        others: the command's other outputs (one file may not be written twice).

    Returns:
        ``path`` resolved.

    Raises:
        OutputPathError: ``path`` is an input or another output, a directory, a device or
            another special file, a file of another kind (without ``force``), or in a folder
            that cannot be created or written (tried with a real temporary file).
    """
    import stat
    import tempfile

    from qcfs_lava.safe_hdf5 import file_kind

    given = Path(path)
    if not os.fspath(path):
        raise OutputPathError(f"{arg} is empty; pass a file name")
    resolved = resolve_path(given)
    shown = str(given) if str(given) == str(resolved) else f"{given} (that is {resolved})"
    for source in inputs:
        if source is not None and _same_file(given, Path(source)):
            raise OutputPathError(
                f"{arg} {shown} is the input file {source}; an input is never "
                f"overwritten, not even with --force: choose another {arg}")
    for other in others:
        if other is not None and _same_file(given, Path(other)):
            raise OutputPathError(f"{arg} {shown} is also the command's output {other}; "
                                  f"choose another {arg}")
    try:
        st = os.stat(resolved)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise OutputPathError(f"{arg} {shown} cannot be examined ({exc.strerror}); choose "
                              f"another {arg}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputPathError(f"{arg} {shown} is a directory; pass a file name, e.g. "
                                  f"{given / ('out.net' if kind == 'hdf5' else 'out.json')}")
        if not stat.S_ISREG(st.st_mode):
            what = ("a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                    "a named pipe" if stat.S_ISFIFO(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
            raise OutputPathError(f"{arg} {shown} is {what}, not a regular file; it is never "
                                  f"replaced (not even with --force): choose another {arg}")
        found = file_kind(resolved)
        if found not in ("missing", "empty", kind) and not force:
            raise OutputPathError(
                f"{arg} {shown} exists and is {_KIND_NAMES[found]}, not {_KIND_NAMES[kind]}; "
                f"refusing to replace it: choose another {arg}, or pass --force to overwrite it")
    folder = resolved.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"{arg} {shown}: {folder} is not a directory; choose another {arg}")
    try:  # the only sure test: /proc, read-only mounts and ACLs all answer here
        fd, probe = tempfile.mkstemp(prefix=".qcfs-lava-probe.", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"{arg} {shown}: cannot write in the folder {folder}, it is not "
                              f"writable ({exc.strerror}); choose another {arg} or fix the "
                              "folder's permissions") from None
    os.close(fd)
    os.unlink(probe)
    return resolved
