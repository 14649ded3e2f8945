"""ZooKeeper boards that share one kazoo client, as upstream's examples have them.

Upstream TaskFlow 6.5's ``jobboard_produce_consume_colors`` example connects eight boards on
one not yet started client from eight threads at once. kazoo refuses to start a client whose
start is under way ("Unable to start, connection routine already active"), which killed the
example's threads on upstream; here the first board starts the client and the others wait.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from taskflow.jobs import backends
from tests.helpers import services
from tests.helpers.databases import isolated_zookeeper_root

services.need_module("kazoo", "zookeeper")
from taskflow.utils import kazoo_utils  # noqa: E402  (needs kazoo, checked above)

pytestmark = pytest.mark.zookeeper


def test_boards_connect_a_shared_client_from_many_threads_at_once(zk_hosts):
    with (
        isolated_zookeeper_root(zk_hosts, prefix="tfzkshared") as root,
        contextlib.closing(kazoo_utils.make_client({"hosts": zk_hosts})) as client,
    ):
        conf = {"board": "zookeeper", "path": f"{root}/jobs"}
        boards = [backends.fetch(f"b{i}", dict(conf), client=client) for i in range(8)]
        start = threading.Barrier(len(boards))
        errors: list[BaseException] = []

        def connect(board):
            start.wait()
            try:
                board.connect()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=connect, args=(b,)) for b in boards]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Without the serialized start some connects raise and others hang for good.
        assert [t.name for t in threads if t.is_alive()] == [], "connect() never returned"
        assert errors == []
        assert all(board.connected for board in boards)

        posted = boards[0].post("shared", details={"color": "red"})
        assert boards[-1].wait(timeout=10) is not None
        assert [job.uuid for job in boards[-1].iterjobs(ensure_fresh=True)] == [posted.uuid]
        # A board given its client leaves it running when closed: the others go on.
        boards[0].close()
        assert client.connected
        assert boards[1].job_count == 1
        for board in boards[1:]:
            board.close()
        assert client.connected
    # contextlib.closing() stopped the started client on the way out.
    assert not client.connected
