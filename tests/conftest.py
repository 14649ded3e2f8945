"""Fixtures shared by the whole suite: addresses of real services (see helpers/services.py).

A service's fixture also needs the driver the tests reach it with: without it they skip
(or fail under TASKFLOW_TEST_REQUIRE_SERVICES=1) naming the extra to install.
"""

from __future__ import annotations

import pytest

from tests.helpers import services


@pytest.fixture(scope="session")
def postgres_url() -> str:
    services.need_module("psycopg", "postgresql")
    return services.need("POSTGRES_URL", 5432)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    services.need_module("pymysql", "mysql")
    return services.need("MYSQL_URL", 3306)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return services.need("REDIS_URL", 6379)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return services.need("AMQP_URL", 5672)


@pytest.fixture(scope="session")
def zk_hosts() -> str:
    services.need_module("kazoo", "zookeeper")
    return services.need("ZK_HOSTS", 2181)


@pytest.fixture(scope="session")
def etcd_address() -> str:
    """``host:port`` of etcd's client port (its gRPC gateway serves the same port)."""
    services.need_module("etcd3gw", "etcd")
    return services.need("ETCD", 2379)
