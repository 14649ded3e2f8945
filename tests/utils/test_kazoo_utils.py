"""``taskflow.utils.kazoo_utils``: client configuration, transactions, version checks."""

from __future__ import annotations

import uuid

import pytest

from taskflow import exceptions as exc
from tests.helpers import services

k_exc = services.need_module("kazoo.exceptions", "zookeeper")
k_threading = services.need_module("kazoo.handlers.threading", "zookeeper")
k_ops = services.need_module("kazoo.protocol.serialization", "zookeeper")
kazoo_utils = services.need_module("taskflow.utils.kazoo_utils", "zookeeper")

# -- make_client (no server needed) -----------------------------------------------------------


def test_make_client_defaults():
    client = kazoo_utils.make_client({})
    assert client.hosts == [("localhost", 2181)]
    assert client._session_timeout == 10000
    assert client.read_only is False
    assert client.randomize_hosts is False
    assert client.use_ssl is False
    assert client.verify_certs is True
    assert (client.keyfile, client.keyfile_password, client.certfile) == (None, None, None)
    assert isinstance(client.handler, k_threading.SequentialThreadingHandler)
    assert not client.connected  # made, not started


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("a:1,b:2", [("a", 1), ("b", 2)]),
        (["a:1", "b"], [("a", 1), ("b", 2181)]),
        (("a:1",), [("a", 1)]),
        ({"a": 1, "b": "2"}, [("a", 1), ("b", 2)]),
    ],
)
def test_make_client_hosts_forms(hosts, expected):
    assert kazoo_utils.make_client({"hosts": hosts}).hosts == expected


@pytest.mark.parametrize(
    ("hosts", "shown"),
    [(5, "'5' (<class 'int'>)"), ("", "'' (<class 'str'>)"), ([], "'' (<class 'list'>)")],
)
def test_make_client_rejects_bad_hosts(hosts, shown):
    with pytest.raises(TypeError) as caught:
        kazoo_utils.make_client({"hosts": hosts})
    assert str(caught.value) == (
        f"Invalid hosts format, expected non-empty string/list, not {shown}"
    )


def test_make_client_options_accept_strings():
    client = kazoo_utils.make_client(
        {
            "timeout": "3",
            "read_only": "true",
            "randomize_hosts": "yes",
            "use_ssl": "1",
            "verify_certs": "off",
            "keyfile": "k.pem",
            "keyfile_password": "secret",
            "certfile": "c.pem",
        }
    )
    assert client._session_timeout == 3000
    assert (client.read_only, client.randomize_hosts, client.use_ssl) == (True, True, True)
    assert client.verify_certs is False
    assert (client.keyfile, client.keyfile_password, client.certfile) == (
        "k.pem",
        "secret",
        "c.pem",
    )
    with pytest.raises(ValueError, match="abc"):
        kazoo_utils.make_client({"timeout": "abc"})


def test_make_client_refuses_a_misspelt_boolean():
    # A typo must not silently turn TLS (or anything else) off.
    with pytest.raises(ValueError, match=r"'use_ssl' must be a boolean.*'ture'"):
        kazoo_utils.make_client({"use_ssl": "ture"})


def test_make_client_retry_policies():
    client = kazoo_utils.make_client(
        {"command_retry": {"max_tries": 3}, "connection_retry": {"max_tries": 2, "delay": 0.5}}
    )
    assert client._retry.max_tries == 3
    assert (client._conn_retry.max_tries, client._conn_retry.delay) == (2, 0.5)


def test_make_client_handlers():
    handler = k_threading.SequentialThreadingHandler()
    assert kazoo_utils.make_client({"handler": handler}).handler is handler
    named = kazoo_utils.make_client({"handler": "threading"}).handler
    assert isinstance(named, k_threading.SequentialThreadingHandler)
    with pytest.raises(ValueError, match="Unknown kazoo handler 'nope'"):
        kazoo_utils.make_client({"handler": "nope"})


# -- transaction failures -----------------------------------------------------------------------


_FAILURES = [
    (k_ops.Create("/a", b"x", [], 0), k_exc.NodeExistsError()),
    (k_ops.Delete("/b", 3), k_exc.NoNodeError()),
    (k_ops.SetData("/c", b"", 2), k_exc.BadVersionError()),
    (k_ops.CheckVersion("/d", 1), k_exc.BadVersionError()),
]


def test_prettify_failures():
    everything = (
        "NodeExistsError@Create(path='/a'), NoNodeError@Delete(path='/b', version=3),"
        " BadVersionError@SetData(path='/c', version=2),"
        " BadVersionError@CheckVersion(path='/d', version=1)"
    )
    assert kazoo_utils.prettify_failures(_FAILURES) == everything
    assert kazoo_utils.prettify_failures(_FAILURES, limit=0) == everything
    assert kazoo_utils.prettify_failures(_FAILURES, limit=4) == everything
    assert kazoo_utils.prettify_failures(_FAILURES, limit=1) == (
        "NodeExistsError@Create(path='/a') and 3 more..."
    )
    assert kazoo_utils.prettify_failures(_FAILURES, limit=2) == (
        "NodeExistsError@Create(path='/a'), NoNodeError@Delete(path='/b', version=3) and 2 more..."
    )
    assert kazoo_utils.prettify_failures([]) == ""


def test_transaction_exception_keeps_failures():
    err = kazoo_utils.KazooTransactionException("boom", iter(_FAILURES))
    assert isinstance(err, k_exc.KazooException)
    assert str(err) == "boom"
    assert err.failures == tuple(_FAILURES)


def test_empty_transaction_is_not_sent():
    client = kazoo_utils.make_client({"hosts": "127.0.0.1:1"})  # never started
    assert kazoo_utils.checked_commit(client.transaction()) == []


def test_check_compatible_reports_an_unreadable_version():
    class NoVersion:
        def server_version(self):
            # What kazoo does when the server refuses the 'envi' command.
            raise AttributeError("'NoneType' object has no attribute 'group'")

    with pytest.raises(k_exc.KazooException, match=r"4lw\.commands\.whitelist"):
        kazoo_utils.check_compatible(NoVersion(), (3, 4, 0))


# -- with a server ------------------------------------------------------------------------------


@pytest.fixture
def client(zk_hosts):
    client = kazoo_utils.make_client({"hosts": zk_hosts})
    client.start(timeout=10)
    root = f"/taskflow-test-{uuid.uuid4().hex}"
    client.create(root)
    client.test_root = root
    yield client
    if client.connected:
        client.delete(root, recursive=True)
    kazoo_utils.finalize_client(client)


@pytest.mark.zookeeper
def test_checked_commit(client):
    root = client.test_root
    txn = client.transaction()
    txn.create(f"{root}/a", b"1")
    txn.create(f"{root}/a/b", b"2")
    assert kazoo_utils.checked_commit(txn, timeout=10) == [f"{root}/a", f"{root}/a/b"]

    txn = client.transaction()
    txn.create(f"{root}/c")
    txn.set_data(f"{root}/a", b"3", version=7)
    with pytest.raises(kazoo_utils.KazooTransactionException) as caught:
        kazoo_utils.checked_commit(txn)
    assert str(caught.value).startswith("Transaction with 2 operations failed: ")
    assert str(caught.value).endswith(" and 1 more...")
    kinds = [type(failure) for _, failure in caught.value.failures]
    assert k_exc.BadVersionError in kinds
    # All or nothing: the first operation was rolled back.
    assert client.exists(f"{root}/c") is None
    assert client.get(f"{root}/a")[0] == b"1"


@pytest.mark.zookeeper
def test_check_compatible(client):
    version = client.server_version()
    kazoo_utils.check_compatible(client)
    kazoo_utils.check_compatible(client, (3, 4, 0))
    kazoo_utils.check_compatible(client, version, version)
    shown = ".".join(map(str, version))
    with pytest.raises(exc.IncompatibleVersion) as caught:
        kazoo_utils.check_compatible(client, (99, 0, 0))
    assert str(caught.value).startswith(
        f"Incompatible zookeeper version {shown} detected, zookeeper >= 99.0.0 required"
    )
    with pytest.raises(exc.IncompatibleVersion, match=r"zookeeper <= 3\.1 required"):
        kazoo_utils.check_compatible(client, (3, 0), (3, 1))


@pytest.mark.zookeeper
def test_finalize_client_is_idempotent(client):
    client.delete(client.test_root, recursive=True)
    kazoo_utils.finalize_client(client)
    assert not client.connected
    kazoo_utils.finalize_client(client)
    with pytest.raises(k_exc.ConnectionClosedError):
        client.exists("/")


def test_closing_a_client_never_started_is_fine():
    client = kazoo_utils.make_client({})
    client.close()
    client.close()
    assert not client.connected


@pytest.mark.zookeeper
def test_closing_a_started_client_stops_it_first(zk_hosts):
    # A plain KazooClient refuses ("Cannot close connection until it is stopped"), which
    # broke ``with contextlib.closing(make_client(conf))`` around boards sharing the client.
    client = kazoo_utils.make_client({"hosts": zk_hosts})
    client.start(timeout=10)
    session_node = f"/taskflow-test-{uuid.uuid4().hex}"
    client.create(session_node, ephemeral=True)
    client.close()
    assert not client.connected
    with pytest.raises(k_exc.ConnectionClosedError):
        client.exists("/")
    # Closing ended the session: its ephemeral znodes (a board's claims) are gone.
    other = kazoo_utils.make_client({"hosts": zk_hosts})
    other.start(timeout=10)
    try:
        assert other.exists(session_node) is None
    finally:
        other.close()
