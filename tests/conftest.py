"""Fixtures shared by the whole suite: addresses of real services (see helpers/services.py)."""

from __future__ import annotations

import pytest

from tests.helpers import services


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return services.need("POSTGRES_URL", 5432)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return services.need("MYSQL_URL", 3306)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return services.need("REDIS_URL", 6379)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return services.need("AMQP_URL", 5672)


@pytest.fixture(scope="session")
def zk_hosts() -> str:
    return services.need("ZK_HOSTS", 2181)
