"""Stripe -> ClickHouse: list each kind of object through the stripe SDK, newer than what the
table already holds, and write it into `raw.stripe_<kind>`.

Incremental by `created`, with no state of its own: each table's cursor is its `max(created)`.
A run lists from the cursor minus an overlap (objects that became visible late), so rows are
read again and replaced (ReplacingMergeTree), never doubled. Stripe lists newest first, so a
run keeps what it read in memory and writes it oldest first: a run cut short leaves the table
holding a prefix of history, and the cursor cannot jump over a gap.

Payouts are listed again for `PAYOUT_LOOKBACK`, because their status moves on after creation
(pending, in transit, paid) and Stripe can list the transactions an automatic payout settled
only once its `reconciliation_status` is `completed`. Those transactions are then written again
with their `payout`, wherever their `created` lies. The payout row, which lists them, is
written last: until it is in the table, the next run lists them again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

import clickhouse_connect
import stripe
from clickhouse_connect.driver.client import Client

from pipelines.stripe_ingest.tables import (
    BALANCE_TRANSACTIONS,
    CHARGES,
    DISPUTES,
    PAYOUTS,
    REFUNDS,
    TABLES,
    RawTable,
    quote,
)
from ticketflow.settings import Settings

OVERLAP = timedelta(minutes=5)
PAYOUT_LOOKBACK = timedelta(days=10)
PAGE_SIZE = 100  # Stripe's largest page
BATCH_ROWS = 10_000  # rows per INSERT
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class IngestionClock:
    """`_ingested_at` stamps, one per batch written, strictly increasing. A batch written
    later in a run is newer than every one before it, so whatever compares stamps downstream
    (the marts' incremental builds) sees it as news, even when a build read the tables between
    two batches (a refund written after the transaction that names it)."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def stamp(self) -> datetime:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


@dataclass(frozen=True)
class KindResult:
    rows: int  # rows written this run (objects read again in the overlap included)
    cursor: datetime | None  # max(created) in the table after the run; None while empty


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """The SDK pointed at Stripe, or at the embedded processor when no key is set."""
    return stripe.StripeClient(
        settings.effective_stripe_api_key,
        base_addresses={"api": settings.stripe_api_base} if settings.embedded_payments else None,
        max_network_retries=2,
    )


def warehouse_client(settings: Settings) -> Client:
    return clickhouse_connect.get_client(dsn=settings.effective_clickhouse_url)


def ingest_stripe(
    stripe_api: stripe.StripeClient, warehouse: Client, *, database: str = "raw"
) -> dict[str, KindResult]:
    """Bring every `raw.stripe_*` table up to date; rows written and cursor, per kind."""
    raw = _RawStripe(warehouse, database)
    raw.ensure_tables()
    written: dict[str, int] = {}

    payout_since = raw.since(PAYOUTS, PAYOUT_LOOKBACK)
    payouts = list(_listed(stripe_api.v1.payouts, payout_since))
    known = raw.known_settlements(payout_since)
    settled, settled_txns = _settled_by_payouts(stripe_api, payouts, known)
    payout_of = {txn_id: payout_id for payout_id, ids in settled.items() for txn_id in ids}

    txns = settled_txns | {
        txn["id"]: txn
        for txn in _listed(stripe_api.v1.balance_transactions, raw.since(BALANCE_TRANSACTIONS))
    }
    written[BALANCE_TRANSACTIONS.kind] = raw.write(
        BALANCE_TRANSACTIONS,
        (
            BALANCE_TRANSACTIONS.row(txn, payout=payout_of.get(txn["id"]))
            for txn in _oldest_first(txns.values())
        ),
    )
    for table in (CHARGES, REFUNDS, DISPUTES):
        listed = _listed(getattr(stripe_api.v1, table.kind), raw.since(table))
        written[table.kind] = raw.write(table, (table.row(obj) for obj in _oldest_first(listed)))
    written[PAYOUTS.kind] = raw.write(
        PAYOUTS,
        (
            PAYOUTS.row(payout, balance_transaction_ids=settled.get(payout["id"], []))
            for payout in _oldest_first(payouts)
        ),
    )
    return {table.kind: KindResult(written[table.kind], raw.cursor(table)) for table in TABLES}


def ingest_from_settings(
    settings: Settings, *, database: str | None = None
) -> dict[str, KindResult]:
    """`ingest_stripe` with the clients the settings describe, into the database of raw
    tables (`settings.cdc_database`, `raw` by default) unless told another."""
    warehouse = warehouse_client(settings)
    try:
        return ingest_stripe(
            stripe_client(settings), warehouse, database=database or settings.cdc_database
        )
    finally:
        warehouse.close()


def _settled_by_payouts(
    stripe_api: stripe.StripeClient, payouts: list[dict], known: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Per payout, the transactions it settled (known ones from the table, the others from
    Stripe once reconciled); and the transaction objects newly read that way."""
    settled: dict[str, list[str]] = {}
    txns: dict[str, dict] = {}
    for payout in payouts:
        ids = known.get(payout["id"])
        if ids is None and _reconciled(payout):
            listed = list(_listed(stripe_api.v1.balance_transactions, None, payout=payout["id"]))
            txns.update((txn["id"], txn) for txn in listed)
            ids = [txn["id"] for txn in listed]
        settled[payout["id"]] = ids or []
    return settled, txns


def _reconciled(payout: dict) -> bool:
    """Stripe lists a payout's transactions for automatic payouts, once reconciled."""
    return bool(payout.get("automatic")) and payout.get("reconciliation_status") == "completed"


def _listed(service, since: int | None, **params) -> Iterator[dict]:
    """Every object of a list, as plain dicts, all pages, created at `since` or later."""
    params = {"limit": PAGE_SIZE, **params}
    if since is not None:
        params["created"] = {"gte": since}
    for obj in service.list(params=params).auto_paging_iter():
        yield obj.to_dict()


def _oldest_first(objects: Iterable[dict]) -> list[dict]:
    return sorted(objects, key=lambda obj: obj["created"])


class _RawStripe:
    """The raw.stripe_* tables of one database."""

    def __init__(self, client: Client, database: str) -> None:
        if not _DATABASE_NAME.fullmatch(database):
            raise ValueError(f"not a plain ClickHouse database name: {database!r}")
        self.client = client
        self.database = database
        self.clock = IngestionClock()

    def target(self, table: RawTable) -> str:
        return f"{quote(self.database)}.{quote(table.name)}"

    def ensure_tables(self) -> None:
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
        for table in TABLES:
            self.client.command(table.create_sql(self.database))

    def cursor(self, table: RawTable) -> datetime | None:
        """The newest `created` the table holds."""
        seconds, rows = self.client.query(
            f"SELECT toUnixTimestamp(max(created)), count() FROM {self.target(table)}"
        ).result_rows[0]
        return datetime.fromtimestamp(seconds, UTC) if rows else None

    def since(self, table: RawTable, overlap: timedelta | None = None) -> int | None:
        """Where the next listing starts: the cursor minus an overlap (None: from the start)."""
        cursor = self.cursor(table)
        if cursor is None:
            return None
        return int((cursor - (OVERLAP if overlap is None else overlap)).timestamp())

    def known_settlements(self, since: int | None) -> dict[str, list[str]]:
        """The transactions of each reconciled payout created since then, as written."""
        if since is None:
            return {}
        rows = self.client.query(
            f"SELECT id, balance_transaction_ids FROM {self.target(PAYOUTS)} FINAL "
            "WHERE toUnixTimestamp(created) >= {since:Int64} "
            "AND automatic AND reconciliation_status = 'completed'",
            parameters={"since": since},
        ).result_rows
        return {payout_id: list(ids) for payout_id, ids in rows}

    def write(self, table: RawTable, rows: Iterable[tuple]) -> int:
        """Insert in order, a batch at a time, each stamped `_ingested_at` later than the one
        before; the number of rows."""
        count = 0
        rows = iter(rows)
        while batch := list(islice(rows, BATCH_ROWS)):
            stamp = self.clock.stamp()
            self.client.insert(
                table.name,
                [(*row, stamp) for row in batch],
                column_names=table.column_names,
                database=self.database,
                column_type_names=table.column_types,
            )
            count += len(batch)
        return count
