"""Keep the collector's full collections out of engine steps, without hiding any garbage.

A step over thousands of atoms (compiling, preparing, running) allocates many long-lived
containers; each time enough of them pile up, CPython's collector runs a full collection,
which walks every object of the process again: the user's tasks and flows, just built and
still alive. That made compiling and running cost more per atom as flows grew.

During a step we therefore make full collections ten times rarer (the oldest generation's
threshold, ``gc.get_threshold()[2]``, times ten) and put the threshold back when the step
ends. Nothing else changes: young collections run as usual, every object stays in its
generation and the collector's accounting of long-lived objects stays exact, so a full
collection that fell due during the step simply happens after it, and sees every object.

This replaces ``gc.freeze()`` around steps, which hid every object of the process from the
collector during the step and then moved them all to the oldest generation without telling
it: garbage that existed before a step (an engine run earlier, and the database pools of
its backend) then waited for a full collection that rarely came, so a loop of runs could run
out of database connections and file descriptors.

The change is counted, so concurrent engines in several threads never restore it early; it
is skipped when the collector is disabled, and a threshold the application sets meanwhile
is left as it set it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["gc_frozen"]

#: How much rarer full collections are during a step (not never: a long run, or engines
#: running back to back in several threads, must not keep them off for good).
_FACTOR = 10

_lock = threading.Lock()
_depth = 0
# (the thresholds to put back, the ones set for the steps); None when untouched.
_saved: tuple[tuple[int, ...], tuple[int, ...]] | None = None


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Run the block with the collector's full collections deferred (see the module)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            thresholds: tuple[int, ...] = gc.get_threshold()
            if gc.isenabled() and len(thresholds) == 3 and thresholds[2] > 0:
                stepping = (*thresholds[:2], thresholds[2] * _FACTOR)
                gc.set_threshold(*stepping)
                _saved = (thresholds, stepping)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                before, during = _saved
                if gc.get_threshold() == during:
                    gc.set_threshold(*before)
                _saved = None
