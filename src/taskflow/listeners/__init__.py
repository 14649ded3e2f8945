"""Listeners: log, print, time, capture or guard what an engine does.

Each listener lives in its own module (``taskflow.listeners.logging``, ``.printing``,
``.timing``, ``.capturing``, ``.claims``) on top of :mod:`taskflow.listeners.base`.
"""

from __future__ import annotations

__all__: list[str] = []
