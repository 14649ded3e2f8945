"""Find and configure a persistence backend from a URI or a configuration dict.

``fetch('sqlite:////tmp/flows.db')`` or ``fetch({'connection': 'memory://'})``: the URI's
scheme picks the backend (``mysql+pymysql`` → ``mysql``), through
:func:`taskflow._plugins.load` (built-in table, then ``taskflow.persistence`` entry points).
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

    from taskflow.persistence.base import Backend

__all__ = ["backend", "fetch"]

LOG = logging.getLogger(__name__)

#: Entry point group searched for backends.
BACKEND_NAMESPACE = "taskflow.persistence"


def _uri_options(uri: str) -> tuple[str, dict[str, Any]]:
    """(backend name, options carried by the URI) for a connection string."""
    parts = parse.urlsplit(uri)
    name = (parts.scheme or uri).split("+", 1)[0]
    return name, (uri_options(uri) if parts.scheme else {})


def fetch(
    conf: str | Mapping[str, Any], namespace: str = BACKEND_NAMESPACE, **kwargs: Any
) -> Backend:
    """Create (but do not upgrade) the backend a URI or configuration names.

    Args:
        conf: a URI, or a dict whose ``connection`` key is one. The URI's user, password,
            host/port and query parameters are added to the configuration unless it
            already has those keys; its path is not (backends read it from
            ``connection`` themselves).
        namespace: the entry point group to search.
        **kwargs: passed on to the backend's constructor.

    Raises:
        KeyError: a dict without ``connection``.
        taskflow.exceptions.NotFound: no backend of that name.
        ValueError: a malformed URI (a non-numeric port, for instance).
    """
    if isinstance(conf, str):
        conf = {"connection": conf}
    merged = dict(conf)
    name, options = _uri_options(merged["connection"])
    for key, value in options.items():
        merged.setdefault(key, value)
    LOG.debug("Looking for %r backend driver in %r", name, namespace)
    try:
        backend_cls = _plugins.load(namespace, name)
    except exc.NotFound as err:
        raise exc.NotFound(f"Could not find backend {name}: {err.args[0]}") from None
    backend: Backend = backend_cls(merged, **kwargs)
    return backend


@contextlib.contextmanager
def backend(
    conf: str | Mapping[str, Any], namespace: str = BACKEND_NAMESPACE, **kwargs: Any
) -> Iterator[Backend]:
    """Fetch a backend, upgrade it, yield it and close it on exit (see :func:`fetch`)."""
    with contextlib.closing(fetch(conf, namespace=namespace, **kwargs)) as be:
        with contextlib.closing(be.get_connection()) as conn:
            conn.upgrade()
        yield be
