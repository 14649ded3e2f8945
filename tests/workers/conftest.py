"""Brokers, workers and engine options for the worker-based engine's tests.

``broker`` runs each test on every transport: RabbitMQ (``amqp``, the real broker of this
machine), Redis through kombu's redis transport, and kombu's in-process ``memory`` transport
(workers then run as threads of the test process, which that transport needs). kombu's
``filesystem`` transport (``filesystem``: a folder of the test's) has tests of its own. Each test
gets an exchange of its own. ``Workers.thread`` starts an in-process worker;
``Workers.process`` a worker process (``python -m taskflow.engines.worker_based.worker``) to
kill for real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import services
from tests.workers import tasks

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
PATIENCE = 60.0


@dataclass
class Broker:
    kind: str
    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    exchange: str = field(default_factory=lambda: f"tf-test-{uuid.uuid4().hex[:12]}")

    @property
    def in_process_only(self) -> bool:
        return self.kind == "memory"

    def options(self, topics: list[str], **more: Any) -> dict[str, Any]:
        """Engine options reaching the workers of ``topics`` on this broker."""
        return {
            "engine": "worker-based",
            "exchange": self.exchange,
            "topics": topics,
            "url": self.url,
            "transport_options": self.transport_options,
            **more,
        }


def _broker(kind: str, tmp_path: Path | None = None) -> Broker:
    services.need_module("kombu", "workers")
    if kind == "amqp":
        return Broker(kind, services.need("AMQP_URL", 5672))
    if kind == "redis":
        url = services.need("REDIS_URL", 6379)
        return Broker(kind, url, {"polling_interval": 0.01})
    if kind == "filesystem":
        assert tmp_path is not None
        folder = tmp_path / "broker"
        folder.mkdir()
        options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            # Its exchange tables: kombu's default is a "control" folder in the cwd.
            "control_folder": str(tmp_path / "control"),
            "polling_interval": 0.01,
        }
        return Broker(kind, "filesystem://", options)
    return Broker(kind, "memory://", {"polling_interval": 0.01})


@pytest.fixture(params=["amqp", "redis", "memory"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Broker:
    return _broker(request.param, tmp_path)


@pytest.fixture
def filesystem(tmp_path: Path) -> Broker:
    return _broker("filesystem", tmp_path)


@pytest.fixture
def filesystem_workers(filesystem: Broker, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(filesystem, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def amqp() -> Broker:
    return _broker("amqp")


class Workers:
    """Workers started by one test, stopped (or killed) when it ends."""

    def __init__(self, broker: Broker, tmp_path: Path) -> None:
        self.broker = broker
        self.tmp_path = tmp_path
        self._threads: list[tuple[Any, threading.Thread]] = []
        self._procs: list[subprocess.Popen[str]] = []

    def thread(self, topic: str = "t1", tasks_: list[type] | None = None, **kwargs: Any) -> Any:
        from taskflow.engines.worker_based.worker import Worker

        worker = Worker(
            self.broker.exchange,
            topic,
            tasks_ if tasks_ is not None else tasks.LISTED,
            url=self.broker.url,
            transport_options=self.broker.transport_options,
            **kwargs,
        )
        thread = threading.Thread(target=worker.run, kwargs={"display_banner": False}, daemon=True)
        thread.start()
        assert worker.wait(PATIENCE), "the worker did not start"
        self._threads.append((worker, thread))
        return worker

    def process(self, topic: str = "t1", threads: int = 2, *extra: str) -> subprocess.Popen[str]:
        assert not self.broker.in_process_only
        args = [
            sys.executable,
            "-m",
            "taskflow.engines.worker_based.worker",
            "--exchange",
            self.broker.exchange,
            "--connection-url",
            self.broker.url,
            "--topic",
            topic,
            "--threads",
            str(threads),
            *extra,
        ]
        for cls in tasks.LISTED:
            args += ["--task", f"{cls.__module__}:{cls.__qualname__}"]
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for worker, _ in self._threads:
            worker.stop()
        for _, thread in self._threads:
            thread.join(PATIENCE)
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.communicate(timeout=PATIENCE)


@pytest.fixture
def workers(broker: Broker, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(broker, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def amqp_workers(amqp: Broker, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(amqp, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def queue_exists(broker: Broker, name: str) -> bool:
    """Whether queue ``name`` exists on the broker (a passive declare)."""
    from kombu import Connection

    with Connection(broker.url, transport_options=broker.transport_options) as conn:
        channel = conn.channel()
        try:
            channel.queue_declare(queue=name, passive=True)
        except conn.channel_errors:
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()
        return True
