"""Atomic file output: every file qcfs-lava writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    If the body raises (or the process dies), the temporary file is removed and an existing
    ``path`` is left untouched.
    """
    path = Path(path)
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with _named(path):
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Report an OSError about a hidden temporary file as one about ``path``, the file the
    user asked for (the temporary name means nothing to them)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or Path(str(exc.filename)).name.startswith(f".{path.name}."):
            exc.filename = str(path)
        raise


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Like :func:`atomic_path` for several files that belong together.

    Every temporary file is written before any target is replaced; the replacements then run
    in the order given with Ctrl-C held back, so an interrupt leaves either all the old files
    or all the new ones. (A crash of the machine between two renames can still split them;
    readers detect that, see :func:`qcfs_lava.netx.read_export_config`.)
    """
    from qcfs_lava.interrupt import deferred_interrupt

    with contextlib.ExitStack() as stack:
        tmps = []
        for path in paths:
            path = Path(path)
            with _named(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                           dir=path.parent)
            os.close(fd)
            stack.callback(_remove_quietly, tmp)
            tmps.append(Path(tmp))
        try:
            yield tuple(tmps)
        except OSError as exc:
            for path, tmp in zip(paths, tmps, strict=True):
                if exc.filename is not None and Path(str(exc.filename)) == tmp:
                    exc.filename = str(path)
            raise
        for tmp in tmps:
            os.chmod(tmp, 0o666 & ~_umask())
        with deferred_interrupt():
            for tmp, path in zip(tmps, paths, strict=True):
                os.replace(tmp, path)


def _remove_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` with plain ``os.write`` calls and flush it to the disk.

    Every file qcfs-lava writes is built in memory first (HDF5 with h5py on a ``BytesIO``,
    checkpoints with ``torch.save`` into one) and then written here, so a full disk or a
    failing device is an :class:`OSError` from the operating system, never a half-written
    file inside a C library (the HDF5 library can crash on its own write errors).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_file_bytes`)."""
    with atomic_path(path) as tmp:
        write_file_bytes(tmp, data)
    return Path(path)


def torch_bytes(obj: Any) -> bytes:
    """What ``torch.save(obj, ...)`` would write, as bytes."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, built in memory first."""
    return write_bytes(path, torch_bytes(obj))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (numpy values converted,
    non-finite floats written as ``null``)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=sort_keys, allow_nan=False)
    return write_text(path, text + "\n")


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays, tuples, sets and paths turned into JSON types."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
