"""A PostgreSQL database, a slot, a publication and a ClickHouse database of each test's own, on
the session's embedded PostgreSQL and warehouse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import clickhouse_connect
import psycopg
import pytest
from clickhouse_connect.driver.client import Client

from pipelines.cdc.relay import BatchResult, Relay
from pipelines.cdc.warehouse import RawTables
from ticketflow.ports import free_port
from ticketflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CdcCase:
    """One test's source database and relay names (the slot, the publication and the
    ClickHouse database are all called `name`)."""

    name: str
    dsn: str
    clickhouse_url: str
    ch: Client
    relays: list[Relay] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def sql(self, statement: str, params=None) -> list[tuple]:
        """Run one statement in its own transaction; rows, if it returns any."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def relay(self, batch_changes: int = 50_000) -> Relay:
        """A relay with a client of its own, as a fresh process would build it."""
        client = clickhouse_connect.get_client(dsn=self.clickhouse_url)
        relay = Relay(
            self.dsn,
            RawTables(client, self.name),
            slot=self.name,
            publication=self.name,
            batch_changes=batch_changes,
        )
        self.relays.append(relay)
        return relay

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of `python -m pipelines.cdc` for this case."""
        return {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "CLICKHOUSE_URL": self.clickhouse_url,
            "TICKETFLOW_CDC_SLOT": self.name,
            "TICKETFLOW_CDC_PUBLICATION": self.name,
            "TICKETFLOW_CDC_DATABASE": self.name,
            "TICKETFLOW_CDC_METRICS_PORT": str(free_port()),
            "TICKETFLOW_LOG_LEVEL": "WARNING",
            **extra,
        }

    def start_relay_process(self, command: str = "run", **env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cdc", command],
            cwd=ROOT,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def run_relay_command(self, command: str = "sync", timeout: float = 120):
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cdc", command],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def count(self, table: str, final: bool = False) -> int:
        """Rows stored in ClickHouse: every version, or (final) the live rows."""
        if final:
            return self.ch.command(
                f"SELECT count() FROM `{self.name}`.`{table}` FINAL WHERE _peerdb_is_deleted = 0"
            )
        return self.ch.command(f"SELECT count() FROM `{self.name}`.`{table}`")


def drain(relay: Relay) -> list[BatchResult]:
    """Sync everything committed so far; the batches it took."""
    results: list[BatchResult] = []
    relay.sync_until(relay.current_wal_lsn(), on_batch=results.append)
    return results


def _database_url(settings: Settings, name: str) -> str:
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return settings.effective_database_url.rsplit("/", 1)[0] + f"/{name}"


def _drop_slot(settings: Settings, slot: str) -> None:
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        for _ in range(50):
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if row[0] is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            except psycopg.errors.ObjectInUse:
                continue  # the backend that held it is still going away
        raise RuntimeError(f"could not drop the replication slot {slot}")


@pytest.fixture
def cdc(request, postgres: Settings, warehouse: Settings) -> Iterator[CdcCase]:
    test = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    name = f"cdc_{test}_{uuid.uuid4().hex[:6]}"
    client = clickhouse_connect.get_client(dsn=warehouse.effective_clickhouse_url)
    case = CdcCase(name, _database_url(postgres, name), warehouse.effective_clickhouse_url, client)
    yield case
    for process in case.processes:
        if process.poll() is None:
            process.kill()
        process.communicate()
    for relay in case.relays:
        relay.close()
        relay.raw.client.close()
    _drop_slot(postgres, name)
    with psycopg.connect(postgres.effective_database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    client.command(f"DROP DATABASE IF EXISTS `{name}`")
    client.close()
