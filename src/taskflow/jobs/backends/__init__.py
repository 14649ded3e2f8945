"""Find and configure a jobboard from a configuration dict or a URI.

``fetch('my-board', {'board': 'sqlite', 'connection': 'sqlite:////var/lib/app/jobs.db'})``
or ``fetch('my-board', 'postgresql://user@host/db')``: the ``board`` key (or the URI's
scheme, ``postgresql+psycopg`` -> ``postgresql``) names the kind, found through
:func:`taskflow._plugins.load` (built-in table, then ``taskflow.jobboards`` entry points).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib import parse

from taskflow import _plugins
from taskflow import exceptions as exc
from taskflow._config import uri_options

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from taskflow.jobs.base import JobBoard

__all__ = ["backend", "fetch"]

LOG = logging.getLogger(__name__)

#: Entry point group searched for board kinds.
BACKEND_NAMESPACE = "taskflow.jobboards"


def fetch(
    name: str, conf: str | Mapping[str, Any], namespace: str = BACKEND_NAMESPACE, **kwargs: Any
) -> JobBoard:
    """Create (not connect) the board ``conf`` describes.

    Args:
        name: the board's name.
        conf: a URI, or a dict whose ``board`` key is a kind (``'sqlite'``,
            ``'postgresql'``...) or a URI. A URI's user, password, host/port and query
            parameters are added to the configuration unless it has those keys already.
        namespace: the entry point group to search.
        **kwargs: passed to the board's constructor (``persistence=`` for instance).

    Raises:
        KeyError: a dict without ``board``.
        taskflow.exceptions.NotFound: no board of that kind.
        ValueError: a malformed URI or configuration value (the key is named).
    """
    merged = {"board": conf} if isinstance(conf, str) else dict(conf)
    board = str(merged["board"])
    kind = board
    if "://" in board:
        kind = parse.urlsplit(board).scheme.split("+", 1)[0]
        for key, value in uri_options(board).items():
            merged.setdefault(key, value)
    LOG.debug("Looking for %r jobboard driver in %r", kind, namespace)
    try:
        board_cls = _plugins.load(namespace, kind)
    except exc.NotFound as err:
        raise exc.NotFound(f"Could not find jobboard {kind}: {err.args[0]}") from None
    jobboard: JobBoard = board_cls(name, merged, **kwargs)
    return jobboard


@contextlib.contextmanager
def backend(
    name: str, conf: str | Mapping[str, Any], namespace: str = BACKEND_NAMESPACE, **kwargs: Any
) -> Iterator[JobBoard]:
    """Fetch a board, connect it, yield it and close it on exit (see :func:`fetch`)."""
    board = fetch(name, conf, namespace=namespace, **kwargs)
    board.connect()
    with contextlib.closing(board):
        yield board
