"""Pause the cyclic garbage collector around bounded, allocation-heavy engine steps.

Compiling and preparing a flow of thousands of atoms allocates many long-lived containers;
each time they pile up, CPython's collector walks the whole heap again (the user's tasks and
flows included), which made compile time grow faster than the flow. Those steps run no user
code and create no garbage cycles, so pausing the collector for their duration is safe. The
pause is counted, so concurrent engines in several threads never re-enable it early.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["gc_paused"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
