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
]

INDEX_MAX = (1 << 31) - 1  # shapes, strides, counts: anything larger is damage, not a network


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
    except RecursionError:
        raise InvalidValueError(f"{where} is nested too deeply") from None


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


def check_output_path(
    path: str | os.PathLike,
    *,
    arg: str,
    kind: str,
    inputs: Iterable[str | os.PathLike] = (),
    force: bool = False,
) -> Path:
    """Check, before any work, that ``path`` can be written and replacing it loses nothing.

    Args:
        path: the file the command will write.
        arg: the option that named it (``"--out"``, ``"--json"``), for the message.
        kind: what will be written: ``"hdf5"``, ``"json"`` or ``"torch"`` (see
            :func:`qcfs_lava.safe_hdf5.file_kind`).
        inputs: the files the command reads: never overwritten, even with ``force``.
        force: allow replacing an existing file of another kind.

    Raises:
        OutputPathError: ``path`` is an input, a directory, a file of another kind (without
            ``force``), or in a folder that cannot be created or written.
    """
    from qcfs_lava.safe_hdf5 import file_kind

    path = Path(path)
    for source in inputs:
        with contextlib.suppress(OSError):
            if path.exists() and os.path.samefile(path, source):
                raise OutputPathError(
                    f"{arg} {path} is the input file {source}; writing it would destroy the "
                    f"input: choose another {arg}"
                )
    found = file_kind(path)
    if found == "directory":
        raise OutputPathError(f"{arg} {path} is a directory; pass a file name, e.g. "
                              f"{path / ('out.net' if kind == 'hdf5' else 'out.json')}")
    if found not in ("missing", "empty", kind) and not force:
        names = {"hdf5": "an HDF5 / NetX file", "torch": "a torch checkpoint",
                 "json": "a JSON file", "other": "a file of unknown kind"}
        raise OutputPathError(
            f"{arg} {path} exists and is {names[found]}, not {names[kind]}; refusing to replace "
            f"it: choose another {arg}, or pass --force to overwrite it"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"{arg} {path}: {folder} is not a directory; choose another {arg}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{arg} {path}: the folder {folder} is not writable; choose "
                              f"another {arg} or fix the folder's permissions")
    return path
