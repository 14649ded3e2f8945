"""Loggers with taskflow's extra, very verbose ``TRACE`` (alias ``BLATHER``) level.

Importing this module changes nothing in :mod:`logging`; the level's name is registered the
first time :func:`getLogger` is called.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "BLATHER",
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "FATAL",
    "INFO",
    "NOTSET",
    "TRACE",
    "WARN",
    "WARNING",
    "getLogger",
]

#: Below DEBUG: per-atom, per-transition chatter.
TRACE = 5
BLATHER = TRACE

# The standard levels, re-exported so callers need only this module.
NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL = (
    logging.NOTSET,
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.ERROR,
    logging.CRITICAL,
)
WARN = WARNING
FATAL = CRITICAL

_level_named = False


class _TraceLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger adapter that can also log at the ``TRACE`` level."""

    def trace(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log ``msg % args`` at the ``TRACE`` level."""
        self.log(TRACE, msg, *args, **kwargs)

    blather = trace

    def warn(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Alias of :meth:`warning` (kept for callers of the old name)."""
        self.warning(msg, *args, **kwargs)


def getLogger(name: str = "taskflow", extra: dict[str, Any] | None = None) -> _TraceLoggerAdapter:
    """A logger adapter for ``name`` that also has :meth:`trace`/:meth:`blather`.

    Args:
        name: the stdlib logger's name.
        extra: context added to every record (``LoggerAdapter`` semantics).
    """
    global _level_named
    if not _level_named:
        # Only name the level if nobody else did, so an application's choice wins.
        if logging.getLevelName(TRACE) == f"Level {TRACE}":
            logging.addLevelName(TRACE, "TRACE")
        _level_named = True
    return _TraceLoggerAdapter(logging.getLogger(name), extra)
