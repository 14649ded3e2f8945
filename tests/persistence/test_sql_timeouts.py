"""SQL servers that never answer: connect and read timeouts bound every wait, by default too.

A server (or a proxy in front of one) that accepts the TCP connection and then says nothing
used to block ``upgrade()`` for ever on MySQL (PyMySQL reads the server's greeting without a
timeout) and for 130 seconds on PostgreSQL (psycopg's fallback). The backend now sets
``connect_timeout`` and ``read_timeout`` for each driver, from its configuration or the URI.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from taskflow import exceptions as exc
from taskflow.persistence import backends
from tests.helpers import services
from tests.helpers.network import silent_server

dialects = services.need_module("taskflow.persistence.backends._sqlalchemy.dialects", "database")
sa = services.need_module("sqlalchemy", "database")

DRIVERS = {"postgresql": ("psycopg", "postgresql"), "mysql": ("pymysql", "mysql")}


def _upgrade_within(conf: dict[str, Any], seconds: float) -> tuple[BaseException | None, float]:
    """(what ``upgrade()`` raised, how long it took), or fail if it takes over ``seconds``."""
    outcome: list[BaseException | None] = []

    def upgrade() -> None:
        backend = backends.fetch(conf)
        try:
            with backend.get_connection() as conn:
                conn.upgrade()
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)
        finally:
            backend.close()

    started = time.monotonic()
    thread = threading.Thread(target=upgrade, name="upgrade", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        pytest.fail(f"upgrade() still waiting after {seconds} s")
    return outcome[0], time.monotonic() - started


@pytest.mark.parametrize("scheme", list(DRIVERS))
@pytest.mark.parametrize("where", ["conf", "uri"])
def test_a_server_that_never_answers_fails_upgrade_within_the_timeouts(
    scheme: str, where: str
) -> None:
    services.need_module(*DRIVERS[scheme])
    with silent_server() as port:
        uri = f"{scheme}://taskflow@127.0.0.1:{port}/test"
        if where == "conf":
            conf: dict[str, Any] = {"connection": uri, "connect_timeout": 2, "read_timeout": 2}
        else:
            conf = {"connection": f"{uri}?connect_timeout=2&read_timeout=2"}
        error, seconds = _upgrade_within(conf, 20)
    assert isinstance(error, exc.StorageFailure), error
    assert seconds < 10


def test_default_timeouts_for_each_driver() -> None:
    url = sa.make_url("postgresql+psycopg://u@h/db")
    assert dialects.PostgreSQL({}).connect_args(url) == {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 120,
        "tcp_user_timeout": 120_000,
    }
    url = sa.make_url("mysql+pymysql://u@h/db")
    assert dialects.MySQL({}).connect_args(url) == {
        "connect_timeout": 10.0,
        "read_timeout": 120.0,
        "write_timeout": 120.0,
    }
    assert dialects.SQLite({}).connect_args(sa.make_url("sqlite://")) == {}


def test_timeouts_are_configurable_and_the_drivers_own_uri_options_win() -> None:
    conf = {"connect_timeout": "2.5", "read_timeout": 30}
    url = sa.make_url("postgresql+psycopg://u@h/db?tcp_user_timeout=5000")
    assert dialects.PostgreSQL(conf).connect_args(url) == {
        "connect_timeout": 3,  # libpq takes whole seconds: rounded up
        "keepalives": 1,
        "keepalives_idle": 30,
    }
    url = sa.make_url("mysql+pymysql://u@h/db")
    assert dialects.MySQL({"read_timeout": 0}).connect_args(url) == {"connect_timeout": 10.0}
    for bad in (-1, "soon"):
        with pytest.raises(ValueError, match="read_timeout"):
            dialects.MySQL({"read_timeout": bad})


def test_a_transaction_left_idle_on_postgresql_is_ended_and_frees_the_flow(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client paused (SIGSTOP) between two statements of a write keeps its row locks; the
    # server ends its transaction after the idle timeout, so a new owner's claim of the
    # flow goes through instead of waiting for the paused client to come back.
    from tests.helpers.databases import isolated_postgres
    from tests.helpers.ownership import saved_flow

    monkeypatch.setattr(dialects, "IDLE_TRANSACTION_TIMEOUT", 1.0)
    with isolated_postgres(postgres_url) as url:
        paused, other = backends.fetch({"connection": url}), backends.fetch({"connection": url})
        try:
            detail = saved_flow(paused, "idle")
            with paused.get_connection() as conn:
                conn.claim_flow(detail.uuid, lease=0.2)
            # The paused client's transaction: the owner row locked, then nothing more.
            stuck = paused._engine.connect()  # type: ignore[attr-defined]
            stuck.execute(
                sa.text("SELECT * FROM taskflow_owners WHERE flow_uuid = :u FOR UPDATE"),
                {"u": detail.uuid},
            )
            time.sleep(0.3)  # its lease lapsed
            claimed: list[Any] = []

            def claim() -> None:
                with other.get_connection() as conn:
                    claimed.append(conn.claim_flow(detail.uuid, lease=30))

            thread = threading.Thread(target=claim, daemon=True)
            thread.start()
            thread.join(20)
            assert claimed, "the claim still waits on the idle transaction's row lock"
            assert claimed[0].held
            with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
                stuck.execute(sa.text("SELECT 1"))  # the server ended that session
            stuck.invalidate()
            stuck.close()
        finally:
            paused.close()
            other.close()
