"""Whether eventlet can be used, as upstream TaskFlow's ``eventlet_utils`` reports it.

Upstream's engines could run tasks on eventlet green threads; this package never does and
does not depend on eventlet. The module stays so that programs written for upstream (which
import it, or check :data:`EVENTLET_AVAILABLE` before asking for green threads) keep
working, and report the truth about the installation they run in.

Eventlet itself is never imported here: importing it is slow and, in recent releases, warns
on import. Its presence is looked up on the import path instead.
"""

from __future__ import annotations

import importlib.util
import warnings

__all__ = ["EVENTLET_AVAILABLE", "check_for_eventlet"]

#: True when the ``eventlet`` package is installed (found on the import path).
EVENTLET_AVAILABLE: bool = importlib.util.find_spec("eventlet") is not None


def check_for_eventlet(exc: BaseException | None = None) -> None:
    """Raise unless eventlet is installed.

    Deprecated, as upstream's is: every call warns with ``DeprecationWarning``.

    Args:
        exc: the exception to raise when eventlet is missing, instead of the default.

    Raises:
        RuntimeError: eventlet is not installed and ``exc`` is None.
        BaseException: ``exc``, when eventlet is not installed.
    """
    warnings.warn(
        "Using function/method 'check_for_eventlet()' is deprecated: "
        "Eventlet support is deprecated.",
        DeprecationWarning,
        stacklevel=2,
    )
    if EVENTLET_AVAILABLE:
        return
    if exc is None:
        raise RuntimeError("Eventlet is not currently available")
    raise exc
