"""Helpers shared by everything that talks to ZooKeeper through kazoo.

:func:`make_client` builds a (not yet started) ``KazooClient`` from a taskflow
configuration dict (one that stops itself when closed), :func:`checked_commit` commits a
kazoo transaction and raises if any of its operations failed, :func:`check_compatible`
checks the server's version and :func:`finalize_client` stops and closes a client.

Importing this module needs kazoo (``pip install taskflow[zookeeper]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from taskflow import exceptions as exc
from taskflow._config import as_bool, as_float

try:
    from kazoo import client as k_client
    from kazoo import exceptions as k_exc
except ImportError as _err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "ZooKeeper support needs the kazoo package: pip install taskflow[zookeeper]",
        name="kazoo",
    ) from _err

__all__ = [
    "KazooTransactionException",
    "check_compatible",
    "checked_commit",
    "finalize_client",
    "make_client",
    "prettify_failures",
]

_DEFAULT_HOSTS = "localhost:2181"
_DEFAULT_TIMEOUT = 10.0

#: Boolean options copied from the configuration to the client: (key, default).
_BOOL_OPTIONS = (
    ("read_only", False),
    ("randomize_hosts", False),
    ("use_ssl", False),
    ("verify_certs", True),
)
#: Options copied as they are (None when absent).
_PLAIN_OPTIONS = ("keyfile", "keyfile_password", "certfile")


class KazooTransactionException(k_exc.KazooException):  # type: ignore[misc]
    """A kazoo transaction was rolled back because some of its operations failed.

    Args:
        message: what went wrong.
        failures: ``(operation, exception)`` pairs, one per failed operation.

    Attributes:
        failures: the ``(operation, exception)`` pairs, as a tuple.
    """

    def __init__(self, message: str, failures: Iterable[tuple[Any, BaseException]]) -> None:
        super().__init__(message)
        self.failures: tuple[tuple[Any, BaseException], ...] = tuple(failures)


def _describe_op(op: Any) -> str:
    """``SetData(path='/a', version=2)``: an operation named with its path and version."""
    fields = [f"path={getattr(op, 'path', None)!r}"]
    version = getattr(op, "version", None)
    if version is not None:
        fields.append(f"version={version}")
    return f"{type(op).__name__}({', '.join(fields)})"


def prettify_failures(failures: Iterable[tuple[Any, BaseException]], limit: int = -1) -> str:
    """Describe failed transaction operations on one line.

    Args:
        failures: ``(operation, exception)`` pairs.
        limit: describe at most this many (the rest are counted); <= 0 describes all.

    Returns:
        For example ``"NodeExistsError@Create(path='/a') and 2 more..."``.
    """
    described = [f"{type(err).__name__}@{_describe_op(op)}" for op, err in failures]
    if 0 < limit < len(described):
        shown = ", ".join(described[:limit])
        return f"{shown} and {len(described) - limit} more..."
    return ", ".join(described)


def checked_commit(txn: Any, timeout: float | None = None) -> list[Any]:
    """Commit a kazoo transaction, raising if any of its operations failed.

    ZooKeeper applies a transaction all or nothing, and kazoo reports failures as
    exception objects among the results rather than raising; this turns them into an
    exception.

    Args:
        txn: a ``kazoo.client.TransactionRequest``.
        timeout: seconds to wait for the server's answer (None: wait as long as the
            client's session lives).

    Returns:
        The results of the operations (e.g. the paths created). An empty transaction is
        not sent and gives ``[]``.

    Raises:
        KazooTransactionException: an operation failed (nothing was applied).
        kazoo.exceptions.KazooException: the connection failed.
    """
    if not txn.operations:
        return []
    results: list[Any] = txn.commit_async().get(timeout=timeout)
    failures = [
        (op, result)
        for op, result in zip(txn.operations, results, strict=False)
        if isinstance(result, k_exc.KazooException)
    ]
    if failures:
        raise KazooTransactionException(
            f"Transaction with {len(failures)} operations failed: "
            f"{prettify_failures(failures, limit=1)}",
            failures,
        )
    return results


def finalize_client(client: Any) -> None:
    """Stop a kazoo client and release its resources; safe to call more than once."""
    try:
        client.stop()
    finally:
        client.close()


def _version_text(version: Iterable[int]) -> str:
    return ".".join(str(part) for part in version)


def check_compatible(
    client: Any,
    min_version: tuple[int, ...] | None = None,
    max_version: tuple[int, ...] | None = None,
) -> None:
    """Check the version of the ZooKeeper server a started client is connected to.

    The version is read with the ``envi`` four letter word command, which the server must
    allow (``4lw.commands.whitelist`` in its configuration).

    Args:
        client: a started ``KazooClient``.
        min_version: the oldest acceptable version, e.g. ``(3, 4, 0)``.
        max_version: the newest acceptable version.

    Raises:
        taskflow.exceptions.IncompatibleVersion: the server is too old or too new.
        kazoo.exceptions.KazooException: the version could not be read.
    """
    try:
        version = tuple(client.server_version())
    except (AttributeError, TypeError, ValueError) as err:
        # kazoo fails this way when the server refuses the command.
        raise k_exc.KazooException(
            "Could not read the ZooKeeper server version (is the 'envi' command allowed by"
            " 4lw.commands.whitelist?)"
        ) from err
    if min_version is not None and version < tuple(min_version):
        raise exc.IncompatibleVersion(
            f"Incompatible zookeeper version {_version_text(version)} detected,"
            f" zookeeper >= {_version_text(min_version)} required"
        )
    if max_version is not None and version > tuple(max_version):
        raise exc.IncompatibleVersion(
            f"Incompatible zookeeper version {_version_text(version)} detected,"
            f" zookeeper <= {_version_text(max_version)} required"
        )


def _parse_hosts(hosts: Any) -> str:
    """The ``host:port,...`` string kazoo wants, from a string, a list or a dict."""
    if isinstance(hosts, str):
        text = hosts.strip()
    elif isinstance(hosts, Mapping):
        text = ",".join(f"{host}:{port}" for host, port in hosts.items())
    elif isinstance(hosts, (list, tuple)):
        text = ",".join(str(host) for host in hosts)
    else:
        text = None
    if not text:
        raise TypeError(
            "Invalid hosts format, expected non-empty string/list,"
            f" not '{hosts if text is None else text}' ({type(hosts)})"
        )
    return text


def _handler(value: Any) -> Any:
    """A kazoo handler instance, from an instance or one of kazoo's handler names."""
    if not isinstance(value, str):
        return value
    name = value.strip().lower()
    if name in ("threading", "thread", "default"):
        from kazoo.handlers.threading import SequentialThreadingHandler

        return SequentialThreadingHandler()
    if name == "eventlet":
        from kazoo.handlers.eventlet import SequentialEventletHandler

        return SequentialEventletHandler()
    if name == "gevent":
        from kazoo.handlers.gevent import SequentialGeventHandler

        return SequentialGeventHandler()
    raise ValueError(f"Unknown kazoo handler '{value}' (threading, eventlet or gevent)")


class _StoppingKazooClient(k_client.KazooClient):  # type: ignore[misc]
    """A ``KazooClient`` whose :meth:`close` stops it first when it is still started.

    kazoo refuses to close a started client ("Cannot close connection until it is
    stopped"), so ``with contextlib.closing(make_client(conf)) as client:`` around boards
    that share the client would fail on the way out. Closing ends the session (its
    ephemeral znodes, i.e. claims, go with it), as :func:`finalize_client` does.
    """

    def close(self) -> None:
        self.stop()  # a no-op when never started or already stopped
        super().close()


def make_client(conf: Mapping[str, Any]) -> Any:
    """A new, not yet started ``KazooClient`` configured from ``conf``.

    Unlike a plain ``KazooClient``, the client may be closed while started: ``close()``
    stops it first.

    Keys read (all optional):

    * ``hosts``: ``"h1:2181,h2:2181"``, a list of ``"host:port"`` strings or a
      ``{host: port}`` dict (default ``"localhost:2181"``).
    * ``timeout``: session timeout in seconds (default 10).
    * ``handler``: a kazoo handler object, or ``"threading"``/``"eventlet"``/``"gevent"``.
    * ``read_only`` (False), ``randomize_hosts`` (False), ``use_ssl`` (False),
      ``verify_certs`` (True): booleans, read by :func:`taskflow._config.to_bool` (strings
      such as ``"true"``/``"0"`` accepted, a misspelt word refused).
    * ``keyfile``, ``keyfile_password``, ``certfile``: TLS client credentials.
    * ``command_retry``, ``connection_retry``: dicts of ``kazoo.retry.KazooRetry``
      arguments (e.g. ``{"max_tries": 3}``); other values are ignored.

    Raises:
        TypeError: ``hosts`` is empty or of another type.
        ValueError: ``timeout`` is not a number, a boolean option is not a boolean, or an
            unknown handler name.
    """
    options: dict[str, Any] = {
        "hosts": _parse_hosts(conf.get("hosts", _DEFAULT_HOSTS)),
        "timeout": as_float(conf, "timeout", _DEFAULT_TIMEOUT),
    }
    for key, default in _BOOL_OPTIONS:
        options[key] = as_bool(conf, key, default)
    for key in _PLAIN_OPTIONS:
        options[key] = conf.get(key)
    if conf.get("handler") is not None:
        options["handler"] = _handler(conf["handler"])
    for key in ("command_retry", "connection_retry"):
        if isinstance(conf.get(key), Mapping):
            options[key] = dict(conf[key])
    return _StoppingKazooClient(**options)
