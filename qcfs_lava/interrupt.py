"""The Ctrl-C hold: publish a set of files together, or not at all."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["deferred_interrupt"]


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) while the body runs; it is raised when the body ends.

    Used around the few ``os.replace`` calls that publish a set of files together, so that an
    interrupt cannot leave half of the set replaced.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda sig, frame: caught.append((sig, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
        elif caught:
            raise KeyboardInterrupt
