"""Conductors: long-running workers that claim jobs on a jobboard and run their flows.

``taskflow.conductors.backends.fetch('blocking', name, board, persistence=backend)`` builds
one; ``conductor.run()`` then claims jobs until ``stop()``. Kinds: ``blocking`` (one job at
a time, in the calling thread) and ``nonblocking`` (several at once, on a thread pool). The
contract is :class:`taskflow.conductors.base.Conductor`; the machinery lives in the private
``taskflow._conductors`` package.
"""

from __future__ import annotations

__all__: list[str] = []
