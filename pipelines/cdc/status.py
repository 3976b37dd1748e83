"""How far behind the relay is: Prometheus gauges, and a ClickHouse table dashboards read
for their "data as of" line.

`data_as_of` is the newest moment up to which every committed change is in ClickHouse: now,
when the relay has caught up; the last synced commit's time while it works through a backlog.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from pipelines.cdc.relay import BatchResult, Relay
from pipelines.cdc.tables import quote

log = logging.getLogger(__name__)

LAG_SECONDS = Gauge("cdc_lag_seconds", "Seconds between now and the data's as-of time.")
LAG_BYTES = Gauge("cdc_lag_bytes", "WAL written but not yet synced (bytes).")
RETAINED_WAL = Gauge("cdc_retained_wal_bytes", "WAL the slot keeps on the server (bytes).")
LAST_LSN = Gauge("cdc_last_synced_lsn", "The slot's confirmed position (as a number).")
LAST_COMMIT = Gauge("cdc_last_commit_timestamp_seconds", "Commit time of the last synced txn.")
ROWS = Counter("cdc_rows_total", "Rows written to ClickHouse.")
ROWS_PER_SECOND = Gauge("cdc_rows_per_second", "Rows written per second, last batch.")

STATUS_TABLE = "_relay_status"
WRITE_EVERY_SECONDS = 5.0  # while idle; batches with rows, and catching up, are written at once


@dataclass
class Progress:
    as_of: datetime
    lag_seconds: float
    lag_bytes: int
    retained_wal_bytes: int
    confirmed_lsn: int


class StatusReporter:
    def __init__(
        self,
        relay: Relay,
        *,
        retained_wal_warn_bytes: int,
        write_every_seconds: float = WRITE_EVERY_SECONDS,
    ) -> None:
        self.relay = relay
        self.warn_bytes = retained_wal_warn_bytes
        self.write_every_seconds = write_every_seconds
        self._written_caught_up: bool | None = None
        self.last_commit_time: datetime | None = None
        self._last_write = 0.0
        self._last_batch_at = time.monotonic()
        self._warned = False

    def ensure_table(self) -> None:
        self.relay.raw.client.command(
            f"CREATE TABLE IF NOT EXISTS {quote(self.relay.raw.database)}.{STATUS_TABLE} ("
            "recorded_at DateTime64(6, 'UTC'), slot String, confirmed_lsn Int64, "
            "last_commit_at Nullable(DateTime64(6, 'UTC')), data_as_of DateTime64(6, 'UTC'), "
            "lag_seconds Float64, lag_bytes Int64, retained_wal_bytes Int64, rows UInt64, "
            "rows_per_second Float64) ENGINE = MergeTree ORDER BY recorded_at "
            "TTL toDateTime(recorded_at) + INTERVAL 30 DAY"
        )

    def _progress(self, result: BatchResult, now: datetime) -> Progress:
        current, confirmed, restart = self.relay.conn.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, confirmed_flush_lsn - '0/0'::pg_lsn, "
            "restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
            (self.relay.slot,),
        ).fetchone()
        if result.last_commit_time is not None:
            self.last_commit_time = result.last_commit_time
        as_of = now if result.caught_up else (self.last_commit_time or now)
        return Progress(
            as_of=as_of,
            lag_seconds=max((now - as_of).total_seconds(), 0.0),
            lag_bytes=max(int(current - confirmed), 0),
            retained_wal_bytes=int(current - restart),
            confirmed_lsn=int(confirmed),
        )

    def record(self, result: BatchResult) -> Progress:
        """Set the gauges; write a status row for a batch with rows, for catching up or
        falling behind, and otherwise every `write_every_seconds`. A caught-up slot still moves
        over WAL nothing is published from, so between idle rows the table may trail it."""
        now = datetime.now(UTC)
        progress = self._progress(result, now)
        elapsed = max(time.monotonic() - self._last_batch_at, 1e-6)
        self._last_batch_at = time.monotonic()
        rate = result.rows / elapsed
        LAG_SECONDS.set(progress.lag_seconds)
        LAG_BYTES.set(progress.lag_bytes)
        RETAINED_WAL.set(progress.retained_wal_bytes)
        LAST_LSN.set(progress.confirmed_lsn)
        if self.last_commit_time:
            LAST_COMMIT.set(self.last_commit_time.timestamp())
        ROWS.inc(result.rows)
        ROWS_PER_SECOND.set(rate)
        self._warn_about_retained_wal(progress.retained_wal_bytes)
        if (
            result.rows
            or result.caught_up != self._written_caught_up
            or time.monotonic() - self._last_write >= self.write_every_seconds
        ):
            self._write(progress, now, result.rows, rate)
            self._written_caught_up = result.caught_up
        return progress

    def _warn_about_retained_wal(self, retained: int) -> None:
        over = retained > self.warn_bytes
        if over and not self._warned:
            log.warning(
                "the replication slot keeps %d MB of WAL (warning at %d MB): the relay is "
                "behind, and PostgreSQL's disk fills until it catches up",
                retained // 2**20,
                self.warn_bytes // 2**20,
            )
        self._warned = over

    def _write(self, progress: Progress, now: datetime, rows: int, rate: float) -> None:
        self.relay.raw.client.insert(
            f"{self.relay.raw.database}.{STATUS_TABLE}",
            [
                [
                    now,
                    self.relay.slot,
                    progress.confirmed_lsn,
                    self.last_commit_time,
                    progress.as_of,
                    progress.lag_seconds,
                    progress.lag_bytes,
                    progress.retained_wal_bytes,
                    rows,
                    rate,
                ]
            ],
            column_names=[
                "recorded_at",
                "slot",
                "confirmed_lsn",
                "last_commit_at",
                "data_as_of",
                "lag_seconds",
                "lag_bytes",
                "retained_wal_bytes",
                "rows",
                "rows_per_second",
            ],
        )
        self._last_write = time.monotonic()
