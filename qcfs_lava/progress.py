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
            leave: bool = False, interval: float = 10.0):
    """A progress counter advanced by ``update(n)``, for loops whose unit of progress is not
    one iterable (e.g. time steps inside batches).

    On a terminal (``"bars"`` mode) a tqdm bar; in ``"lines"`` mode one line
    ``<desc>: <done>/<total> <unit> (<pct>%), <s> s`` at most every ``interval`` seconds, so a
    long stage shows progress in a log without flooding it; silent when ``"off"`` or not
    ``enabled``. Either way it supports ``update`` and the context-manager protocol.
    """
    current = mode()
    if enabled and current == "bars":
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    if enabled and current == "lines":
        return _Lines(total, desc, unit, interval)
    return _Plain(())


class _Lines:
    """``counter`` in ``"lines"`` mode: a line to stderr at most every ``interval`` seconds."""

    def __init__(self, total: int, desc: str, unit: str, interval: float) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.done = 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            pct = 100.0 * self.done / max(self.total, 1)
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), "
                  f"{now - self.start:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        return None


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

    def close(self) -> None:
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
