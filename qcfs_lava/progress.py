"""Progress output that reads well on a terminal and in a log.

On a terminal, long loops show tqdm bars. When stderr is not a terminal (CI, ``make demo >
log``), bars would write hundreds of carriage-return fragments into the log; instead no bar is
drawn and each finished stage prints one line, ``<stage>: done in <s> s``, to stderr.

``QCFS_LAVA_PROGRESS`` overrides the detection: ``bars`` (always bars), ``lines`` (always one
line per stage) or ``off`` (nothing).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["ENV_VAR", "bar", "counter", "line", "mode", "stage"]

ENV_VAR = "QCFS_LAVA_PROGRESS"
_MODES = ("bars", "lines", "off")

T = TypeVar("T")


def mode() -> str:
    """``"bars"``, ``"lines"`` or ``"off"``: from ``$QCFS_LAVA_PROGRESS``, else ``"bars"`` when
    stderr is a terminal and ``"lines"`` when it is not."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in _MODES:
        return forced
    try:
        return "bars" if sys.stderr.isatty() else "lines"
    except (AttributeError, ValueError):  # closed or replaced stream
        return "lines"


def bar(iterable: Iterable[T], *, desc: str, enabled: bool = True, total: int | None = None,
        unit: str = "it", leave: bool = False, **kwargs) -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar when ``enabled`` and on a terminal, else as is.

    Extra keyword arguments go to :class:`tqdm.tqdm`. The returned object supports
    ``set_postfix`` either way.
    """
    if enabled and mode() == "bars":
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, **kwargs)
    return _Plain(iterable)


def counter(total: int, *, desc: str, enabled: bool = True, unit: str = "it",
            leave: bool = False):
    """A progress counter advanced by ``update(n)``: a tqdm bar when ``enabled`` and on a
    terminal, else a silent object with the same ``update`` / context-manager interface.

    For loops whose unit of progress is not one iterable (e.g. time steps inside batches).
    """
    if enabled and mode() == "bars":
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    return _Plain(())


class _Plain:
    """An iterable with tqdm's ``set_postfix`` as a no-op."""

    def __init__(self, iterable: Iterable[T]) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[T]:
        return iter(self._iterable)

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc) -> None:
        return None


def line(message: str, enabled: bool = True) -> None:
    """In ``"lines"`` mode, print ``message`` as one line to stderr (the log's progress)."""
    if enabled and mode() == "lines":
        print(message, file=sys.stderr, flush=True)


@contextmanager
def stage(name: str, enabled: bool = True) -> Iterator[None]:
    """Time a stage; in ``"lines"`` mode print ``"<name>: done in <s> s"`` when it finishes."""
    start = time.perf_counter()
    yield
    line(f"{name}: done in {time.perf_counter() - start:.1f} s", enabled)
