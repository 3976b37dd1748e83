"""Shared fixtures: real embedded servers on free ports in temporary directories."""

from __future__ import annotations

from collections.abc import Iterator

import clickhouse_connect
import pytest

from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services


@pytest.fixture(scope="session")
def platform_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session's shared platform (each service starts when a test first needs it)."""
    return isolated_settings(tmp_path_factory.mktemp("platform"))


@pytest.fixture
def private_settings(tmp_path) -> Settings:
    """A platform of the test's own, for tests that stop and start servers."""
    return isolated_settings(tmp_path)


@pytest.fixture(scope="session")
def warehouse(platform_settings: Settings) -> Iterator[Settings]:
    """The warehouse process, serving ClickHouse's HTTP interface for the whole session."""
    with run_services(platform_settings, [service_named(platform_settings, "warehouse")]):
        yield platform_settings


@pytest.fixture(scope="session")
def postgres(platform_settings: Settings) -> Iterator[Settings]:
    with run_services(platform_settings, [service_named(platform_settings, "postgres")]):
        yield platform_settings


@pytest.fixture(scope="session")
def payments(platform_settings: Settings) -> Iterator[Settings]:
    with run_services(platform_settings, [service_named(platform_settings, "payments")]):
        yield platform_settings


@pytest.fixture
def ch(warehouse: Settings):
    """A clickhouse-connect client talking HTTP to the warehouse process."""
    client = clickhouse_connect.get_client(host="127.0.0.1", port=warehouse.warehouse_port)
    yield client
    client.close()
