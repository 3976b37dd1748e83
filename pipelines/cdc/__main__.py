"""`python -m pipelines.cdc run|sync`: the relay as a service, or drain once and exit.

`run` keeps streaming until SIGTERM/SIGINT and serves Prometheus metrics; `sync` copies what
is committed now (the initial copy first, if the slot is new) and exits: for tests and batch
use (`ticketflow cdc sync`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import clickhouse_connect
from prometheus_client import start_http_server

from api.telemetry.logs import configure_logging
from pipelines.cdc.relay import Relay
from pipelines.cdc.status import StatusReporter
from pipelines.cdc.tables import SchemaChangeError
from pipelines.cdc.warehouse import RawTables
from ticketflow.settings import LOCALHOST, Settings, get_settings

log = logging.getLogger("pipelines.cdc")


def build(settings: Settings) -> tuple[Relay, StatusReporter]:
    client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_url)
    raw = RawTables(client, settings.cdc_database)
    relay = Relay(
        settings.effective_database_url,
        raw,
        slot=settings.cdc_slot,
        publication=settings.cdc_publication,
        batch_changes=settings.cdc_batch_changes,
    )
    status = StatusReporter(
        relay, retained_wal_warn_bytes=settings.cdc_retained_wal_warn_mb * 2**20
    )
    return relay, status


def sync(settings: Settings) -> int:
    relay, status = build(settings)
    try:
        relay.start()
        status.ensure_table()
        target = relay.current_wal_lsn()
        total = 0

        def count(result) -> None:
            nonlocal total
            total += result.rows
            status.record(result)

        relay.sync_until(target, on_batch=count)
        print(f"synced {total} rows up to {relay.confirmed_lsn():#x}")
        return 0
    finally:
        relay.close()


def run(settings: Settings) -> int:
    relay, status = build(settings)
    stopping = False

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    start_http_server(settings.cdc_metrics_port, addr=LOCALHOST)
    try:
        relay.start()
        status.ensure_table()
        relay.run(lambda: stopping, on_batch=status.record)
        return 0
    finally:
        relay.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.cdc", description=__doc__)
    parser.add_argument("command", choices=["run", "sync"])
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        return run(settings) if args.command == "run" else sync(settings)
    except SchemaChangeError as exc:
        log.error("the relay stopped: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
