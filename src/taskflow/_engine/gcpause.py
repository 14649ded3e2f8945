"""Keep the cyclic garbage collector off the objects that exist before an engine step starts.

A run of thousands of atoms allocates many long-lived containers; each time enough pile up,
CPython's collector walks every older object again: the user's tasks and flows, which were
typically just built and are still young. That made compiling and running cost more per atom
as flows grew. During an engine step we therefore freeze the objects that already exist
(:func:`gc.freeze` moves them to the permanent generation in constant time) and unfreeze
them when the step ends (back into the oldest generation, in constant time). Objects created
during the step, garbage cycles included, are collected as usual; nothing is ever lost.

The freeze is counted, so concurrent engines in several threads never thaw early, and it is
skipped when the application froze objects itself (``gc.get_freeze_count()``), so that its
own use of freezing (e.g. before forking) is never undone.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["gc_frozen"]

_lock = threading.Lock()
_depth = 0
_ours = False


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    global _depth, _ours
    with _lock:
        if _depth == 0:
            _ours = gc.isenabled() and gc.get_freeze_count() == 0
            if _ours:
                gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _ours:
                gc.unfreeze()
                _ours = False
