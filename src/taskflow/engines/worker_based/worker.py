"""Workers: processes that run the tasks they list for worker-based engines.

``Worker(exchange='test', topic='t1', tasks=['my.module:MyTask'], url=...).run()`` serves
until ``stop()``; from a shell::

    python -m taskflow.engines.worker_based.worker --exchange test \\
        --connection-url amqp://guest:guest@localhost:5672// --topic t1 \\
        --task my.module:MyTask [--task other.module ...] [--threads N] [-v]

A worker runs only the task classes it lists (each request builds ``cls(name=...)``: a
task's constructor state is not shipped), checks every message it gets, and survives any
message (see :mod:`taskflow._workers.server`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import platform
import socket
import sys
from typing import TYPE_CHECKING, Any

from taskflow import task as task_module
from taskflow._workers import protocol
from taskflow._workers.server import HEARTBEAT, Server
from taskflow.utils import threading_utils

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["Worker", "main"]

LOG = logging.getLogger(__name__)


class Worker:
    """A worker serving ``topic`` on ``exchange`` with the task classes of ``tasks``.

    Args:
        exchange: the broker exchange shared with engines.
        topic: the topic it serves (engines list it in their ``topics`` option).
        tasks: task classes, ``'module:Class'`` or ``'module.Class'`` names, or module
            names (every Task subclass defined in the module), or modules.
        executor: a ``concurrent.futures`` executor to run tasks on (not shut down here).
        threads_count: size of the thread pool it makes otherwise (default: CPUs + 1).
        url, transport, transport_options, retry_options: the broker, as for the engine.
        heartbeat: seconds between its announcements and running tasks' heartbeats (ours).
        max_message_bytes: larger messages are rejected (ours; default 16 MiB).

    Raises:
        ValueError: a task name that does not import, or names no task class.
    """

    def __init__(
        self,
        exchange: str,
        topic: str,
        tasks: Iterable[Any],
        executor: cf.Executor | None = None,
        threads_count: int | None = None,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
        heartbeat: float = HEARTBEAT,
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
    ) -> None:
        classes = _task_classes(tasks)
        if threads_count is None:
            threads_count = threading_utils.get_optimal_thread_count()
        if not isinstance(threads_count, int) or threads_count < 1:
            raise ValueError(f"threads_count must be a positive integer, not {threads_count!r}")
        self._exchange = exchange
        self._url = url
        self._transport = transport
        self._server = Server(
            exchange,
            topic,
            classes,
            executor=executor,
            threads_count=threads_count,
            url=url,
            transport=transport,
            transport_options=transport_options,
            retry_options=retry_options,
            heartbeat=heartbeat,
            max_message_bytes=max_message_bytes,
        )

    @property
    def banner(self) -> str:
        """What :meth:`run` shows first: where the worker listens and what it runs."""
        server = self._server
        lines = [
            "TaskFlow worker",
            f"  topic: {server.topic}",
            f"  exchange: {self._exchange}",
            f"  connection: {_redacted(self._url, self._transport)}",
            f"  identity: {server.identity}",
            f"  threads: {server.threads}",
            f"  host: {socket.gethostname()} (python {platform.python_version()})",
            "  tasks:",
            *(f"    {name}" for name in sorted(server.endpoints)),
        ]
        return "\n".join(lines)

    def run(
        self, display_banner: bool = True, banner_writer: Callable[[str], Any] | None = None
    ) -> None:
        """Serve until :meth:`stop` (blocks); the banner goes to ``banner_writer`` (default:
        this module's log, at INFO)."""
        if display_banner:
            (banner_writer or LOG.info)(self.banner)
        self._server.run()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker listens for requests; False if ``timeout`` passed first."""
        return self._server.wait_started(timeout)

    def stop(self) -> None:
        """Stop serving: :meth:`run` returns once the tasks under way are done."""
        self._server.stop()


def _redacted(url: str | None, transport: str | None) -> str:
    if url is None:
        return f"{transport or 'amqp'} (default)"
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _task_classes(tasks: Iterable[Any]) -> list[type]:
    if isinstance(tasks, str | type):
        tasks = [tasks]
    classes: list[type] = []
    for item in tasks:
        if isinstance(item, type):
            classes.append(item)
        elif inspect.ismodule(item):
            classes.extend(_classes_of(item))
        elif isinstance(item, str) and item:
            classes.extend(_import_tasks(item))
        else:
            raise ValueError(f"Not a task class, class name or module: {item!r}")
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, task_module.Task)):
            raise ValueError(f"{cls!r} is not a subclass of taskflow.task.Task")
    return classes


def _import_tasks(name: str) -> list[type]:
    module_name, sep, attr = name.partition(":")
    if sep:
        return [getattr(_import(module_name, name), attr)] if attr else []
    try:
        return _classes_of(importlib.import_module(name))
    except ImportError:
        module_name, _, attr = name.rpartition(".")
        if not module_name:
            raise ValueError(f"Task {name!r} does not import") from None
        module = _import(module_name, name)
        if not hasattr(module, attr):
            raise ValueError(
                f"Task {name!r} does not import: no {attr!r} in {module_name}"
            ) from None
        return [getattr(module, attr)]


def _import(module_name: str, name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"Task {name!r} does not import: {err}") from err


def _classes_of(module: Any) -> list[type]:
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, task_module.Task)
        and value.__module__ == module.__name__
        and not inspect.isabstract(value)
    ]
    if not found:
        raise ValueError(f"Module {module.__name__} defines no task class")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """The worker's command line (upstream's options, plus ``--threads``)."""
    parser = argparse.ArgumentParser(
        prog="python -m taskflow.engines.worker_based.worker",
        description="Run a TaskFlow worker serving the given tasks.",
    )
    parser.add_argument("--exchange", required=True, help="the exchange engines use")
    parser.add_argument("--connection-url", default=None, help="the broker's URL")
    parser.add_argument("--topic", required=True, help="the topic to serve")
    parser.add_argument(
        "--task",
        action="append",
        required=True,
        help="a task to run: module:Class, module.Class or a module (repeatable)",
    )
    parser.add_argument("--threads", type=int, default=None, help="tasks run at once")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        worker = Worker(
            args.exchange,
            args.topic,
            args.task,
            threads_count=args.threads,
            url=args.connection_url,
        )
    except ValueError as err:
        parser.error(str(err))
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
