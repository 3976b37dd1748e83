"""The dbt marts at scale: full and incremental build times, and the daily-sales report on
ClickHouse against the same report on PostgreSQL.

Starts a private PostgreSQL and warehouse (own processes, free ports, a temporary directory),
applies the API's migrations to PostgreSQL and creates the ClickHouse raw tables from them as the
CDC relay does (`pipelines.cdc`: the same specs, the same DDL), plus the processor's
`raw.stripe_*` tables (`pipelines.stripe_ingest`). Then, for each size in --sizes:

  generate  organizers, venues, events, ticket types, users, promo codes, orders (paid, expired,
            refunded, partially refunded, disputed), order items (exactly --sizes of them),
            payments, refunds, ledger entries, and the processor's charges, refunds, disputes,
            balance transactions and daily payouts, with ClickHouse SQL straight into the raw
            tables (INSERT ... SELECT FROM numbers(N)), consistent with each other as the API
            and the processor would leave them (the books balance, every payment is matched);
            rows are stamped (`_peerdb_synced_at`) as a relay running all along would have
            written them, two seconds after their last change, up to ten days ago
  full      `dbt build --full-refresh` (every model, every test on every row): wall time
  delta     1% more order items (new orders, paid, refunded, disputed, with their money and
            processor objects) and late updates: about 0.1% of the orders refunded afterwards,
            whose rows carry a `_peerdb_synced_at` 30 minutes older than the marts' newest,
            inside the models' one-hour lookback
  incr.     the frequent build as Dagster's `sales_marts` job runs it (pipelines/orchestration/
            dbt_builds.py: `dbt build`, views and unit tests left out, each test on the rows
            its table's latest build wrote; incremental models take their incremental path),
            --incremental-repeat times, each from the full build's tables (cloned before the
            first, put back before the others) with the same delta; the median is reported.
            Then `dbt test` on every row (the daily job's tests), timed apart
  report    the rows rpt_daily_sales holds (per organizer, event, ticket type, day of payment,
            currency: tickets and money, each order's discount, fees, refunds and adjustments
            allocated to its items to the minor unit), as medians of --repeat runs after a
            warm-up, each wrapped in a count and sums (no transfer of rows):
              PostgreSQL  from the API's own tables (COPY of the raw tables' live rows, the
                          migrations' schema and indexes), with window functions;
              ClickHouse  the rpt_daily_sales model's query over fct_order_items, and, the
                          stricter comparison, the same computation as PostgreSQL's from the
                          raw CDC tables (FINAL), allocation included;
            all of them, and marts.rpt_daily_sales after the incremental run, must agree (rows
            and every total)

Targets (issue, 2 cores): full build of 10M items <= 120 s, incremental build <= 15 s,
ClickHouse >= 20x faster than PostgreSQL on the report query.

    .venv/bin/python bench/marts.py [--sizes 1000000,10000000] [--repeat 5] [--pg-repeat 3]
        [--incremental-repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import psutil
import psycopg
from clickhouse_connect.driver.client import Client

from api import migrate
from pipelines.cdc.tables import table_spec
from pipelines.cdc.warehouse import RawTables
from pipelines.orchestration.dbt_builds import (
    EVERY_ROW,
    FREQUENT_BUILD_ARGS,
    NO_UNIT_TESTS,
    run_dbt,
)
from pipelines.stripe_ingest.tables import TABLES as STRIPE_TABLES
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

TARGET_FULL_S = 120.0  # at 10M items
TARGET_INCREMENTAL_S = 15.0  # at 10M items
TARGET_RATIO = 20.0
TARGET_ITEMS = 10_000_000
MARTS_DATABASES = ("staging", "intermediate", "marts")
PG_DATABASE = "marts_bench"
# The report session on PostgreSQL gets room to sort and hash in memory, as a team reporting
# on its OLTP database would give it.
PG_REPORT_SETTINGS = {"work_mem": "256MB", "max_parallel_workers_per_gather": "2"}

# Row versions (commit LSNs): the initial copy's consistent point, then later transactions.
BASE_VERSION, DELTA_VERSION, LATE_VERSION = 1_000_000, 2_000_000, 3_000_000
DAY_US = 86_400 * 1_000_000


# --- the data's shape ----------------------------------------------------------------------


def _order_of(item: int) -> int:
    """Items are numbered from 0 in blocks of six: three orders of 1, 2 and 3 items."""
    return 3 * (item // 6) + (0, 1, 1, 2, 2, 2)[item % 6] + 1


@dataclasses.dataclass(frozen=True)
class Shape:
    items: int
    orders: int  # order ids 1..orders hold the first `items` items
    events: int
    organizers: int
    users: int
    start_us: int  # the first order (UTC microseconds)
    cutoff_us: int  # the last one of the initial data
    order_gap_us: int  # time between orders (ids follow time)
    event_gap_us: int  # between the dates of consecutive events
    window: int  # an order buys for one of the next `window` events (about 90 days ahead)

    @classmethod
    def of(cls, items: int, now: datetime) -> Shape:
        days = 720
        cutoff = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=10)
        cutoff_us = int(cutoff.timestamp()) * 1_000_000
        start_us = cutoff_us - days * DAY_US
        orders = _order_of(items - 1)
        events = max(12, items // 2_000)
        event_gap_us = (days + 180) * DAY_US // events
        return cls(
            items=items,
            orders=orders,
            events=events,
            organizers=max(3, events // 10),
            users=max(100, orders // 4),
            start_us=start_us,
            cutoff_us=cutoff_us,
            order_gap_us=days * DAY_US // orders,
            event_gap_us=event_gap_us,
            window=max(1, round(90 * DAY_US / event_gap_us)),
        )

    @property
    def delta_first_item(self) -> int:
        """The delta's first item starts a fresh block: no paid order gets more items."""
        return -(-self.items // 6) * 6

    @property
    def delta_items(self) -> int:
        return self.items // 100

    # SQL expressions of the shape (ids are Int64, as PostgreSQL's bigint maps)
    def order_time(self, order: str) -> str:
        return (
            f"fromUnixTimestamp64Micro(toInt64({self.start_us} + ({order} - 1) * "
            f"{self.order_gap_us}), 'UTC')"
        )

    def event_of(self, order: str) -> str:
        return (
            f"toInt64(least({self.events}, intDiv(({order} - 1) * {self.order_gap_us}, "
            f"{self.event_gap_us}) + toInt64(cityHash64({order}, 11) % {self.window}) + 1))"
        )

    def organizer_of(self, event: str) -> str:
        return f"toInt64(cityHash64({event}, 51) % {self.organizers} + 1)"


def currency_of(event: str) -> str:
    return (
        "['EUR', 'EUR', 'EUR', 'EUR', 'EUR', 'EUR', 'EUR', 'USD', 'USD', 'GBP']"
        f"[cityHash64({event}, 32) % 10 + 1]"
    )


def price_of(ticket_type: str) -> str:
    """Three ticket types per event: a base price, x1.5, x3."""
    return (
        f"toInt64(intDiv((20 + cityHash64(intDiv({ticket_type} - 1, 3) + 1, 31) % 60) * 100 "
        f"* [2, 3, 6][({ticket_type} - 1) % 3 + 1], 2))"
    )


def fee_of(amount: str) -> str:
    """The contracted card pricing (rpt_reconciliation's vars): 2.9% rounded half up + 30."""
    return f"(intDiv({amount} * 290 + 5000, 10000) + 30)"


def later(at: str, days: str, cap_us: int) -> str:
    """`days` after `at`, but not after the cap (nor less than an hour after `at`)."""
    cap = f"fromUnixTimestamp64Micro(toInt64({cap_us}), 'UTC')"
    return f"least({at} + toIntervalDay({days}), greatest({cap}, {at} + INTERVAL 1 HOUR))"


Ids = Callable[[str], str]  # SQL that selects orders by the id held in the column named
DISPUTE_FEE = 1500
# cityHash64(order id, 42) % 1000 decides what happened to an order:
ROLL = "cityHash64(id, 42) % 1000"
# < 15 expired after a declined payment, < 30 expired unpaid, < 50 refunded, < 80 partially
# refunded, < 82 paid then disputed, the rest paid.
STATUS = (
    "multiIf(roll < 30, 'expired', roll < 50, 'refunded', roll < 80, 'partially_refunded', 'paid')"
)


# --- generating the raw tables -------------------------------------------------------------


class Generator:
    def __init__(self, client: Client, raw: str, shape: Shape) -> None:
        self.client = client
        self.raw = raw
        self.s = shape
        # the rows' _peerdb_synced_at (SQL), when not derived from their own times (stamp())
        self.synced: str | None = "now64(9)"

    def run(self, sql: str) -> None:
        self.client.command(sql, settings={"max_partitions_per_insert_block": 0})

    def t(self, table: str) -> str:
        return f"`{self.raw}`.`{table}`"

    def base(self) -> None:
        s, v = self.s, BASE_VERSION
        self.synced = None
        self.catalog()
        self.items(0, s.items, v)
        self.orders(0, s.items, v)
        self.ticket_types()
        self.money(lambda column: f"{column} BETWEEN 1 AND {s.orders}", v, s.cutoff_us)
        self.ticket_type_sales(v)
        self.payouts(s.cutoff_us)
        self.synced = "now64(9)"

    def stamp(self, changed_at: str) -> str:
        """`_peerdb_synced_at` of rows last changed at `changed_at` (SQL). The initial data is
        as a relay running all along wrote it: two seconds after each change. Later rows are
        stamped when written, or with a given stamp (late rows)."""
        if self.synced is not None:
            return self.synced
        cutoff = f"fromUnixTimestamp64Micro(toInt64({self.s.cutoff_us}), 'UTC')"
        return f"least({changed_at}, {cutoff}) + INTERVAL 2 SECOND"

    def ingested(self, changed_at: str) -> str:
        """`_ingested_at` of processor objects last changed at `changed_at` (SQL): the initial
        data as an ingestion running all along read it, five minutes after each change;
        later objects when written."""
        if self.synced is not None:
            return "now64(6)"
        cutoff = f"fromUnixTimestamp64Micro(toInt64({self.s.cutoff_us}), 'UTC')"
        return f"toDateTime64(least({changed_at}, {cutoff}) + INTERVAL 5 MINUTE, 6, 'UTC')"

    def delta(self, late_synced_at: datetime, now_us: int) -> tuple[int, int]:
        """1% more items (new orders) and late refunds of recent orders; (items, late orders)."""
        s = self.s
        first, count = s.delta_first_item, s.delta_items
        self.items(first, count, DELTA_VERSION)
        self.orders(first, count, DELTA_VERSION)
        first_order, last_order = _order_of(first), _order_of(first + count - 1)
        cap = now_us - 3_600_000_000
        self.money(
            lambda column: f"{column} BETWEEN {first_order} AND {last_order}", DELTA_VERSION, cap
        )
        late = self.late_refunds(late_synced_at, now_us)
        self.ticket_type_sales(LATE_VERSION)
        return count, late

    def catalog(self) -> None:
        s, v = self.s, BASE_VERSION
        t0 = f"fromUnixTimestamp64Micro(toInt64({s.start_us - 200 * DAY_US}), 'UTC')"
        self.run(
            f"INSERT INTO {self.t('organizers')} (id, name, created_at, _peerdb_version, "
            "_peerdb_synced_at) SELECT number + 1, concat('Organizer ', toString(number + 1)), "
            f"{t0}, {v}, {self.stamp(t0)} "
            f"FROM numbers({s.organizers})"
        )
        self.run(
            f"INSERT INTO {self.t('venues')} (id, organizer_id, name, address, city, country, "
            "created_at, _peerdb_version, _peerdb_synced_at) "
            "SELECT number + 1, intDiv(number, 2) + 1, concat('Hall ', toString(number + 1)), "
            "concat(toString(number % 200 + 1), ' Main Street'), "
            "['Berlin', 'Paris', 'London', 'Madrid', 'Rome', 'Vienna'][number % 6 + 1], "
            f"['DE', 'FR', 'GB', 'ES', 'IT', 'AT'][number % 6 + 1], {t0}, {v}, {self.stamp(t0)} "
            f"FROM numbers({2 * s.organizers})"
        )
        self.run(
            f"INSERT INTO {self.t('users')} (id, email, password_hash, full_name, role, "
            "is_active, created_at, _peerdb_version, _peerdb_synced_at) "
            "SELECT number + 1, concat('buyer', toString(number + 1), '@example.com'), "
            "concat('$argon2id$v=19$m=65536,t=3,p=4$', hex(cityHash64(number))), "
            f"concat('Buyer ', toString(number + 1)), 'attendee', true, {t0}, {v}, "
            f"{self.stamp(t0)} "
            f"FROM numbers({s.users})"
        )
        self.run(
            f"INSERT INTO {self.t('events')} (id, organizer_id, venue_id, title, description, "
            "category, status, timezone, starts_at, ends_at, sales_start_at, sales_end_at, "
            "published_at, created_at, updated_at, _peerdb_version, _peerdb_synced_at) "
            f"SELECT e, {s.organizer_of('e')} AS organizer, "
            "2 * (organizer - 1) + 1 + toInt64(cityHash64(e, 52) % 2), "
            "concat('Event ', toString(e)), 'An evening of live music.', "
            "['concert', 'theatre', 'comedy', 'festival', 'sports'][cityHash64(e, 53) % 5 + 1], "
            "if(ends < now64(6), 'ended', 'published'), 'Europe/Berlin', starts, ends, "
            "sales_start, sales_end, created, created, created, "
            f"{v}, {self.stamp('created')} FROM (SELECT toInt64(number + 1) AS e, "
            f"fromUnixTimestamp64Micro(toInt64({s.start_us} + number * {s.event_gap_us}), "
            "'UTC') AS centre, centre + INTERVAL 2 DAY AS starts, "
            "starts + INTERVAL 4 HOUR AS ends, "
            f"centre - toIntervalSecond({(s.window * s.event_gap_us + DAY_US) // 1_000_000})"
            " AS sales_start, "
            f"centre + toIntervalSecond({(s.event_gap_us + DAY_US) // 1_000_000}) AS sales_end, "
            f"sales_start - INTERVAL 7 DAY AS created FROM numbers({s.events}))"
        )
        self.run(
            f"INSERT INTO {self.t('promo_codes')} (id, event_id, code, kind, value, created_at, "
            "_peerdb_version, _peerdb_synced_at) SELECT number + 1, number + 1, 'EARLY10', "
            f"'percent', 10, {t0}, {v}, {self.stamp(t0)} FROM numbers({s.events})"
        )

    def items(self, first: int, count: int, version: int) -> None:
        s = self.s
        self.run(
            f"INSERT INTO {self.t('order_items')} (id, order_id, ticket_type_id, quantity, "
            "unit_price_minor, _peerdb_version, _peerdb_synced_at) "
            "SELECT toInt64(number + 1), "
            "toInt64(3 * intDiv(number, 6) + [0, 1, 1, 2, 2, 2][number % 6 + 1] + 1) AS o, "
            f"3 * ({s.event_of('o')} - 1) + multiIf(cityHash64(number, 21) % 10 < 6, 1, "
            "cityHash64(number, 21) % 10 < 9, 2, 3) AS tt, "
            "toInt64(1 + cityHash64(number, 22) % if((tt - 1) % 3 = 2, 2, 4)), "
            f"{price_of('tt')}, {version}, {self.stamp(s.order_time('o'))} "
            f"FROM numbers({first}, {count})"
        )

    def orders(self, first: int, count: int, version: int) -> None:
        """One row per order of the items first..first+count-1, in the state it ends in."""
        s = self.s
        refunded_at = later("paid", "1 + cityHash64(id, 45) % 20", s.cutoff_us)  # as refunds()
        changed = (
            f"multiIf(status IN ('refunded', 'partially_refunded'), {refunded_at}, "
            "status = 'expired', created + INTERVAL 15 MINUTE, assumeNotNull(paid))"
        )
        self.run(
            f"INSERT INTO {self.t('orders')} (id, user_id, event_id, status, currency, "
            "subtotal_minor, discount_minor, total_minor, promo_code_id, expires_at, paid_at, "
            "created_at, _peerdb_version, _peerdb_synced_at) "
            f"SELECT id, toInt64(cityHash64(id, 41) % {s.users} + 1), e, status, "
            f"{currency_of('e')}, subtotal, discount, subtotal - discount, "
            "if(discount > 0, e, NULL), created + INTERVAL 15 MINUTE, "
            "if(status = 'expired', NULL, created + toIntervalSecond(30 + "
            f"cityHash64(id, 43) % 270)) AS paid, created, {version}, {self.stamp(changed)} "
            f"FROM (SELECT o AS id, subtotal, {s.event_of('id')} AS e, "
            f"{s.order_time('id')} AS created, {ROLL} AS roll, {STATUS} AS status, "
            "if(cityHash64(id, 44) % 10 = 0, intDiv(subtotal, 10), 0) AS discount "
            "FROM (SELECT order_id AS o, sum(quantity * unit_price_minor) AS subtotal "
            f"FROM {self.t('order_items')} WHERE id > {first} AND id <= {first + count} "
            "GROUP BY order_id))"
        )

    def ticket_types(self) -> None:
        """Three per event; capacity leaves a quarter free over what was bought (holds too)."""
        s, v = self.s, BASE_VERSION
        self.run(
            f"INSERT INTO {self.t('ticket_types')} (id, event_id, name, price_minor, currency, "
            "capacity, max_per_order, created_at, _peerdb_version, _peerdb_synced_at) "
            "SELECT tt, intDiv(tt - 1, 3) + 1 AS e, ['General', 'Reserved', 'VIP'][(tt - 1) % 3 "
            f"+ 1], {price_of('tt')}, {currency_of('e')}, "
            "toInt64(greatest(2000, ceil(bought * 1.25 / 50) * 50)), 10, "
            f"events.created_at, {v}, {self.stamp('events.created_at')} "
            f"FROM (SELECT toInt64(number + 1) AS tt FROM numbers({3 * s.events})) AS types "
            "LEFT JOIN (SELECT ticket_type_id, sum(quantity) AS bought FROM "
            f"{self.t('order_items')} GROUP BY ticket_type_id) AS sold "
            "ON sold.ticket_type_id = types.tt "
            f"LEFT JOIN {self.t('events')} AS events ON events.id = intDiv(types.tt - 1, 3) + 1"
        )

    def money(self, ids: Ids, version: int, cap_us: int) -> None:
        """Payments, refunds, ledger entries and the processor's objects of the orders whose
        ids `ids` selects, as their final states have them."""
        paid = (
            f"(SELECT *, {ROLL} AS roll FROM {self.t('orders')} FINAL "
            f"WHERE {ids('id')} AND _peerdb_is_deleted = 0)"
        )
        self.run(
            f"INSERT INTO {self.t('payments')} (id, order_id, provider, provider_payment_id, "
            "amount_minor, currency, status, fee_minor, provider_charge_id, "
            "provider_balance_transaction_id, failure_code, disputed, created_at, "
            "succeeded_at, _peerdb_version, _peerdb_synced_at) "
            "SELECT id, id, 'stripe', concat('pi_bench_', toString(id)), total_minor, currency, "
            f"if(ok, 'succeeded', 'failed'), if(ok, {fee_of('total_minor')}, NULL), "
            "if(ok, concat('ch_bench_', toString(id)), NULL), "
            "if(ok, concat('txn_ch_', toString(id)), NULL), if(ok, NULL, 'card_declined'), "
            "roll >= 80 AND roll < 82, created_at + INTERVAL 20 SECOND, paid_at, "
            f"{version}, {self.stamp('coalesce(paid_at, created_at)')} "
            f"FROM (SELECT *, status != 'expired' AS ok FROM {paid}) "
            "WHERE ok OR roll < 15"
        )
        self.refunds(ids, version, cap_us)
        # sale and fee when paid; a dispute's adjustment and fee ten days later
        dispute_at = later("paid_at", "10", cap_us)
        self.run(
            f"INSERT INTO {self.t('ledger_entries')} (id, order_id, event_id, organizer_id, "
            "payment_id, kind, amount_minor, currency, occurred_at, created_at, "
            "_peerdb_version, _peerdb_synced_at) "
            f"SELECT 8 * id + entry.1, id, event_id, {self.s.organizer_of('event_id')}, id, "
            f"entry.2, entry.3, currency, entry.4, entry.4, {version}, {self.stamp('entry.4')} "
            "FROM (SELECT *, arrayJoin(arrayConcat("
            f"[(1, 'sale', total_minor, at), (2, 'fee', -{fee_of('total_minor')}, at)], "
            f"if(roll >= 80 AND roll < 82, [(4, 'adjustment', -total_minor, {dispute_at}), "
            f"(5, 'fee', toInt64(-{DISPUTE_FEE}), {dispute_at})], []))) AS entry "
            f"FROM (SELECT *, assumeNotNull(paid_at) AS at FROM {paid} "
            "WHERE status != 'expired'))"
        )
        # the processor's side
        self.run(
            f"INSERT INTO {self.t('stripe_charges')} (id, payment_intent, amount, "
            "amount_refunded, currency, status, balance_transaction, disputed, created, "
            "metadata_order_id, _raw, _ingested_at) "
            "SELECT provider_charge_id, provider_payment_id, amount_minor, "
            "coalesce(refunded, 0), currency, 'succeeded', provider_balance_transaction_id, "
            "disputed, succeeded_at, toString(order_id), "
            "concat('{\"id\":\"', provider_charge_id, '\"}'), "
            f"{self.ingested('succeeded_at')} "
            f"FROM {self.t('payments')} AS p FINAL LEFT JOIN (SELECT payment_id, "
            f"sum(amount_minor) AS refunded FROM {self.t('refunds')} FINAL WHERE "
            f"{ids('order_id')} GROUP BY payment_id) AS r ON r.payment_id = p.id "
            f"WHERE {ids('p.order_id')} AND p.status = 'succeeded'"
        )
        self.run(
            f"INSERT INTO {self.t('stripe_balance_transactions')} (id, type, reporting_category, "
            "source, amount, fee, net, currency, fee_details, status, available_on, created, "
            "exchange_rate, payout, _raw, _ingested_at) "
            "SELECT provider_balance_transaction_id, 'charge', 'charge', provider_charge_id, "
            f"amount_minor, {fee_of('amount_minor')} AS fee, amount_minor - fee, currency, "
            "[('stripe_fee', fee, currency, 'Stripe processing fees')], 'available', "
            "succeeded_at + INTERVAL 2 DAY, succeeded_at, NULL, NULL, "
            "concat('{\"id\":\"', provider_balance_transaction_id, '\"}'), "
            f"{self.ingested('succeeded_at')} "
            f"FROM {self.t('payments')} FINAL WHERE {ids('order_id')} AND status = 'succeeded'"
        )
        self.run(
            f"INSERT INTO {self.t('stripe_disputes')} (id, charge, payment_intent, amount, "
            "currency, status, reason, created, balance_transaction_ids, _raw, _ingested_at) "
            "SELECT concat('dp_bench_', toString(id)), concat('ch_bench_', toString(id)), "
            "concat('pi_bench_', toString(id)), total_minor, currency, 'lost', 'fraudulent', "
            f"{dispute_at}, [concat('txn_dp_', toString(id))], "
            "concat('{\"id\":\"dp_bench_', toString(id), '\"}'), "
            f"{self.ingested(dispute_at)} "
            f"FROM {paid} WHERE roll >= 80 AND roll < 82"
        )
        self.run(
            f"INSERT INTO {self.t('stripe_balance_transactions')} (id, type, reporting_category, "
            "source, amount, fee, net, currency, fee_details, status, available_on, created, "
            "exchange_rate, payout, _raw, _ingested_at) "
            "SELECT concat('txn_dp_', toString(id)), 'adjustment', 'dispute', "
            f"concat('dp_bench_', toString(id)), -total_minor, {DISPUTE_FEE}, "
            f"-total_minor - {DISPUTE_FEE}, currency, "
            f"[('stripe_fee', {DISPUTE_FEE}, currency, 'Dispute fee')], 'available', "
            f"{dispute_at}, {dispute_at}, NULL, NULL, "
            "concat('{\"id\":\"txn_dp_', toString(id), '\"}'), "
            f"{self.ingested(dispute_at)} "
            f"FROM {paid} WHERE roll >= 80 AND roll < 82"
        )

    def refunds(self, ids: Ids, version: int, cap_us: int, at: str | None = None) -> None:
        """A refund (with its ledger entry and processor objects) of each selected order that
        is refunded (all of it) or partially refunded (a third), 1-20 days after payment."""
        at = at or later("assumeNotNull(paid_at)", "1 + cityHash64(id, 45) % 20", cap_us)
        self.run(
            f"INSERT INTO {self.t('refunds')} (id, order_id, payment_id, amount_minor, "
            "currency, reason, status, provider_refund_id, created_at, _peerdb_version, "
            "_peerdb_synced_at) SELECT id, id, id, if(status = 'refunded', total_minor, "
            "greatest(1, intDiv(total_minor, 3))), currency, 'requested_by_customer', "
            f"'succeeded', concat('re_bench_', toString(id)), {at}, {version}, {self.stamp(at)} "
            f"FROM {self.t('orders')} FINAL WHERE {ids('id')} AND _peerdb_is_deleted = 0 "
            "AND status IN ('refunded', 'partially_refunded')"
        )
        refunds = f"(SELECT * FROM {self.t('refunds')} FINAL WHERE {ids('order_id')})"
        self.run(
            f"INSERT INTO {self.t('ledger_entries')} (id, order_id, event_id, organizer_id, "
            "payment_id, refund_id, kind, amount_minor, currency, occurred_at, created_at, "
            "_peerdb_version, _peerdb_synced_at) "
            f"SELECT 8 * order_id + 3, order_id, {self.s.event_of('order_id')} AS e, "
            f"{self.s.organizer_of('e')}, payment_id, id, 'refund', -amount_minor, currency, "
            f"created_at, created_at, {version}, {self.stamp('created_at')} FROM {refunds}"
        )
        self.run(
            f"INSERT INTO {self.t('stripe_refunds')} (id, charge, payment_intent, amount, "
            "currency, status, balance_transaction, created, _raw, _ingested_at) "
            "SELECT provider_refund_id, concat('ch_bench_', toString(payment_id)), "
            "concat('pi_bench_', toString(payment_id)), amount_minor, currency, 'succeeded', "
            "concat('txn_re_', toString(id)), created_at, "
            "concat('{\"id\":\"', provider_refund_id, '\"}'), "
            f"{self.ingested('created_at')} "
            f"FROM {refunds}"
        )
        self.run(
            f"INSERT INTO {self.t('stripe_balance_transactions')} (id, type, reporting_category, "
            "source, amount, fee, net, currency, fee_details, status, available_on, created, "
            "exchange_rate, payout, _raw, _ingested_at) "
            "SELECT concat('txn_re_', toString(id)), 'refund', 'refund', provider_refund_id, "
            "-amount_minor, 0, -amount_minor, currency, [], 'available', created_at, "
            "created_at, NULL, NULL, concat('{\"id\":\"txn_re_', toString(id), '\"}'), "
            f"{self.ingested('created_at')} FROM {refunds}"
        )

    def late_refunds(self, synced_at: datetime, now_us: int) -> int:
        """About 1 in 50 of the orders paid 1-30 days before the cutoff are refunded; their CDC
        rows reach ClickHouse late, stamped `synced_at` (older than the marts' newest row),
        two seconds after the refund."""
        s = self.s
        first = s.orders - 30 * DAY_US // s.order_gap_us
        last = s.orders - DAY_US // s.order_gap_us

        def chosen(column: str) -> str:
            return (
                f"{column} BETWEEN {first} AND {last} "
                f"AND cityHash64({column}, 42) % 1000 >= 82 "
                f"AND cityHash64({column}, 46) % 50 = 0"
            )

        stamp = f"toDateTime64('{synced_at:%Y-%m-%d %H:%M:%S.%f}', 9, 'UTC')"
        self.run(
            f"INSERT INTO {self.t('orders')} SELECT * REPLACE ("
            "if(cityHash64(id, 47) % 2 = 0, 'refunded', 'partially_refunded') AS status, "
            f"{stamp} AS _peerdb_synced_at, {LATE_VERSION} AS _peerdb_version) "
            f"FROM {self.t('orders')} FINAL WHERE {chosen('id')}"
        )
        refunded_us = int(synced_at.timestamp() * 1_000_000) - 2_000_000
        at = f"fromUnixTimestamp64Micro(toInt64({refunded_us}), 'UTC')"
        self.synced = stamp
        self.refunds(chosen, LATE_VERSION, now_us, at=at)
        self.synced = "now64(9)"
        # the processor lists the charges again, with the refunded amounts
        self.run(
            f"INSERT INTO {self.t('stripe_charges')} SELECT c.* REPLACE (c.amount_refunded + "
            f"r.amount_minor AS amount_refunded, {self.ingested('now64(6)')} AS _ingested_at) "
            f"FROM {self.t('stripe_charges')} AS c FINAL INNER JOIN (SELECT payment_id, "
            f"amount_minor FROM {self.t('refunds')} FINAL WHERE {chosen('order_id')}) AS r "
            "ON c.id = concat('ch_bench_', toString(r.payment_id))"
        )
        return self.client.command(
            f"SELECT count() FROM {self.t('orders')} WHERE _peerdb_version = {LATE_VERSION}"
        )

    def ticket_type_sales(self, version: int) -> None:
        """The table the API's trigger keeps: tickets in paid or partially refunded orders."""
        self.run(
            f"INSERT INTO {self.t('ticket_type_sales')} (ticket_type_id, tickets_sold, "
            "_peerdb_version, _peerdb_synced_at) SELECT ticket_type_id, sum(quantity), "
            f"{version}, {self.stamp('now64(6)')} "
            f"FROM {self.t('order_items')} FINAL WHERE order_id IN (SELECT id FROM "
            f"{self.t('orders')} FINAL WHERE status IN ('paid', 'partially_refunded')) "
            "GROUP BY ticket_type_id"
        )

    def payouts(self, cap_us: int) -> None:
        """Daily automatic payouts per currency of what became available before the cap."""
        bt = self.t("stripe_balance_transactions")
        self.run(
            f"INSERT INTO {bt} SELECT * REPLACE (concat('po_bench_', currency, '_', "
            "toString(toYYYYMMDD(available_on))) AS payout, "
            f"{self.ingested('available_on + INTERVAL 1 DAY')} AS _ingested_at) "
            f"FROM {bt} FINAL WHERE available_on < "
            f"fromUnixTimestamp64Micro(toInt64({cap_us - DAY_US}), 'UTC')"
        )
        self.run(
            f"INSERT INTO {bt} (id, type, reporting_category, source, amount, fee, net, "
            "currency, fee_details, status, available_on, created, exchange_rate, payout, "
            "_raw, _ingested_at) "
            "SELECT concat('txn_', payout), 'payout', 'payout', payout, -sum(net), 0, "
            "-sum(net), currency, [], 'available', max(available_on), max(available_on), "
            "NULL, payout, concat('{\"id\":\"txn_', payout, '\"}'), "
            f"{self.ingested('max(available_on) + INTERVAL 1 DAY')} "
            f"FROM {bt} FINAL WHERE payout IS NOT NULL GROUP BY payout, currency"
        )
        self.run(
            f"INSERT INTO {self.t('stripe_payouts')} (id, amount, currency, status, automatic, "
            "reconciliation_status, arrival_date, created, balance_transaction, "
            "balance_transaction_ids, _raw, _ingested_at) "
            "SELECT payout, sumIf(net, type != 'payout'), currency, 'paid', true, 'completed', "
            "max(available_on) + INTERVAL 1 DAY, max(available_on), "
            "concat('txn_', payout), groupArray(id), concat('{\"id\":\"', payout, '\"}'), "
            f"{self.ingested('max(available_on) + INTERVAL 1 DAY')} "
            f"FROM {bt} FINAL WHERE payout IS NOT NULL GROUP BY payout, currency"
        )


# --- the raw tables, as the CDC relay and the processor ingestion create them ---------------


def create_raw_tables(settings: Settings, dsn: str, client: Client) -> list:
    """Every table of the migrated schema, through the relay's own specs and DDL."""
    raw = RawTables(client, settings.cdc_database)
    raw.ensure_database()
    with psycopg.connect(dsn) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        specs = [table_spec(conn, "public", name) for name in names]
    for spec in specs:
        raw.ensure(spec)
    for table in STRIPE_TABLES:
        client.command(table.create_sql(settings.cdc_database))
    return specs


def fresh_postgres(settings: Settings) -> str:
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    dsn = settings.effective_database_url.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    migrate.upgrade(settings.sqlalchemy_url.rsplit("/", 1)[0] + f"/{PG_DATABASE}")
    return dsn


def drop_warehouse(client: Client, raw: str) -> None:
    for database in (raw, *MARTS_DATABASES):
        client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")
        client.command(f"DROP DATABASE IF EXISTS `{KEPT_PREFIX}{database}` SYNC")


KEPT_PREFIX = "bench_kept_"


def _tables(client: Client, database: str) -> list[str]:
    return [
        name
        for (name,) in client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND engine != 'View'",
            parameters={"db": database},
        ).result_rows
    ]


def keep_tables(client: Client, databases: list[str]) -> None:
    """Clone every table of `databases` (hard links to their parts: instant) into
    `bench_kept_<database>`, so that `restore_tables` can put them back as they are now."""
    for database in databases:
        kept = f"`{KEPT_PREFIX}{database}`"
        client.command(f"DROP DATABASE IF EXISTS {kept} SYNC")
        client.command(f"CREATE DATABASE {kept}")
        for table in _tables(client, database):
            client.command(f"CREATE TABLE {kept}.`{table}` CLONE AS `{database}`.`{table}`")


def restore_tables(client: Client, databases: list[str]) -> None:
    """The tables as `keep_tables` found them (views, which hold no rows, stay)."""
    for database in databases:
        for table in _tables(client, f"{KEPT_PREFIX}{database}"):
            client.command(f"DROP TABLE IF EXISTS `{database}`.`{table}` SYNC")
            client.command(
                f"CREATE TABLE `{database}`.`{table}` CLONE AS `{KEPT_PREFIX}{database}`.`{table}`"
            )


def load_postgres(client: Client, raw: str, dsn: str, specs: list) -> int:
    """The live rows of every raw table, COPYed into the migrated schema (triggers and foreign
    keys are not re-checked: the rows are the API's, as a restore would load them)."""
    rows = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET timezone = 'UTC'")
        for spec in specs:
            source = f"`{raw}`.`{spec.name}`"
            if not client.command(f"SELECT count() FROM {source}"):
                continue
            columns = ", ".join(f"`{c}`" for c in spec.column_names)
            query = (
                f"SELECT {columns} FROM {source} FINAL WHERE _peerdb_is_deleted = 0 "
                "FORMAT TabSeparated"
            )
            targets = ", ".join(f'"{c}"' for c in spec.column_names)
            with (
                conn.cursor().copy(f'COPY "{spec.name}" ({targets}) FROM STDIN') as copy,
                client.raw_stream(query) as stream,
            ):
                for chunk in stream:
                    copy.write(chunk)
            conn.commit()
            rows += conn.execute(f'SELECT count(*) FROM "{spec.name}"').fetchone()[0]
            if "id" in spec.column_names:
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('\"{spec.name}\"', 'id'), max(id)) "
                    f'FROM "{spec.name}" HAVING pg_get_serial_sequence(\'"{spec.name}"\', '
                    "'id') IS NOT NULL"
                )
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return rows


# --- dbt ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Invocation:
    seconds: float
    nodes: list[tuple[str, float, str]]  # (node, seconds, status)

    @property
    def failed(self) -> list[str]:
        return [n for n, _, status in self.nodes if status not in ("success", "pass")]

    def slowest(self, count: int = 6) -> str:
        top = sorted(self.nodes, key=lambda n: -n[1])[:count]
        return ", ".join(f"{n.split('.', 2)[-1]} {s:.1f}" for n, s, _ in top)


def dbt(settings: Settings, work: Path, *args: str) -> Invocation:
    started = time.perf_counter()
    done = run_dbt(settings, work, *args)
    seconds = time.perf_counter() - started
    results = work / "target" / "run_results.json"
    if not results.exists():
        raise SystemExit(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}{done.stderr}")
    nodes = [
        (r["unique_id"], r["execution_time"], r["status"])
        for r in json.loads(results.read_text())["results"]
    ]
    results.unlink()
    invocation = Invocation(seconds, nodes)
    if done.returncode and not invocation.failed:
        raise SystemExit(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}{done.stderr}")
    return invocation


# --- the report, the same on both databases ---------------------------------------------------

TOTALS = (
    "count(*), sum(tickets), sum(gross_minor), sum(discounts_minor), sum(fees_minor), "
    "sum(refunds_minor), sum(adjustments_minor), sum(net_minor)"
)
TOTAL_NAMES = ("rows", "tickets", "gross", "discounts", "fees", "refunds", "adjustments", "net")

# int_order_money_allocated_to_items, then rpt_daily_sales, on the live rows of the CDC tables
# (as the models compute them: an order's items as an array, no window over all items)
CLICKHOUSE_REPORT = """
WITH items AS (
    SELECT order_id,
           groupArray((id, ticket_type_id, quantity, quantity * unit_price_minor)) AS lines,
           arraySum(line -> line.4, lines) AS order_gross_minor,
           arrayMax(line -> line.4, lines) AS largest_gross_minor,
           arrayMin(line -> if(line.4 = largest_gross_minor, line.1, 9223372036854775807),
                    lines) AS largest_item_id
    FROM {raw}.order_items FINAL WHERE _peerdb_is_deleted = 0
    GROUP BY order_id
),
ledger AS (
    SELECT order_id,
           minIf(occurred_at, kind = 'sale') AS first_paid_at,
           sumIf(-amount_minor, kind = 'fee') AS fees_minor,
           sumIf(-amount_minor, kind = 'refund') AS refunds_minor,
           sumIf(-amount_minor, kind = 'adjustment') AS adjustments_minor
    FROM {raw}.ledger_entries FINAL WHERE _peerdb_is_deleted = 0
    GROUP BY order_id
),
per_order AS (
    SELECT items.order_id AS order_id, items.lines AS lines,
           items.largest_item_id AS largest_item_id,
           greatest(items.order_gross_minor, 1) AS divisor,
           orders.event_id AS event_id, orders.currency AS currency,
           coalesce(orders.paid_at, ledger.first_paid_at) AS paid_at,
           orders.discount_minor AS d, ledger.fees_minor AS f, ledger.refunds_minor AS r,
           ledger.adjustments_minor AS a,
           d - arraySum(line -> intDiv(d * line.4, divisor), lines) AS d_rest,
           f - arraySum(line -> intDiv(f * line.4, divisor), lines) AS f_rest,
           r - arraySum(line -> intDiv(r * line.4, divisor), lines) AS r_rest,
           a - arraySum(line -> intDiv(a * line.4, divisor), lines) AS a_rest
    FROM items
    INNER JOIN (SELECT id AS order_id, event_id, currency, discount_minor, paid_at
                FROM {raw}.orders FINAL WHERE _peerdb_is_deleted = 0) AS orders
        ON orders.order_id = items.order_id
    INNER JOIN ledger ON ledger.order_id = items.order_id
),
allocated AS (
    SELECT event_id, line.2 AS ticket_type_id, currency, paid_at, line.3 AS quantity,
           line.4 AS gross_minor, line.1 = largest_item_id AS largest,
           intDiv(d * gross_minor, divisor) + if(largest, d_rest, 0) AS discount_minor,
           intDiv(f * gross_minor, divisor) + if(largest, f_rest, 0) AS fees_minor,
           intDiv(r * gross_minor, divisor) + if(largest, r_rest, 0) AS refunds_minor,
           intDiv(a * gross_minor, divisor) + if(largest, a_rest, 0) AS adjustments_minor
    FROM per_order ARRAY JOIN lines AS line
),
daily AS (
    SELECT events.organizer_id AS organizer_id, allocated.event_id AS event_id,
           allocated.ticket_type_id AS ticket_type_id, toDate(allocated.paid_at) AS sales_day,
           allocated.currency AS currency,
           sum(allocated.quantity) AS tickets, sum(allocated.gross_minor) AS gross_minor,
           sum(allocated.discount_minor) AS discounts_minor,
           sum(allocated.fees_minor) AS fees_minor, sum(allocated.refunds_minor) AS refunds_minor,
           sum(allocated.adjustments_minor) AS adjustments_minor,
           sum(allocated.gross_minor - allocated.discount_minor - allocated.fees_minor
               - allocated.refunds_minor - allocated.adjustments_minor) AS net_minor
    FROM allocated
    INNER JOIN (SELECT id AS event_id, organizer_id FROM {raw}.events FINAL
                WHERE _peerdb_is_deleted = 0) AS events ON events.event_id = allocated.event_id
    GROUP BY organizer_id, event_id, ticket_type_id, sales_day, currency
)
SELECT {totals} FROM daily
"""

# The same on the API's schema in PostgreSQL
POSTGRES_REPORT = """
WITH ledger AS (
    SELECT order_id,
           min(occurred_at) FILTER (WHERE kind = 'sale') AS first_paid_at,
           coalesce(sum(-amount_minor) FILTER (WHERE kind = 'fee'), 0) AS fees_minor,
           coalesce(sum(-amount_minor) FILTER (WHERE kind = 'refund'), 0) AS refunds_minor,
           coalesce(sum(-amount_minor) FILTER (WHERE kind = 'adjustment'), 0)
               AS adjustments_minor
    FROM ledger_entries
    GROUP BY order_id
),
shares AS (
    SELECT i.id AS order_item_id, i.order_id, i.ticket_type_id, i.quantity,
           i.quantity * i.unit_price_minor AS gross_minor, o.event_id, o.currency,
           coalesce(o.paid_at, l.first_paid_at) AS paid_at,
           o.discount_minor AS order_discount_minor, l.fees_minor AS order_fees_minor,
           l.refunds_minor AS order_refunds_minor, l.adjustments_minor AS order_adjustments_minor,
           sum(i.quantity * i.unit_price_minor) OVER (PARTITION BY i.order_id)
               AS order_gross_minor,
           row_number() OVER (PARTITION BY i.order_id
                              ORDER BY i.quantity * i.unit_price_minor DESC, i.id) AS size_rank
    FROM order_items AS i
    JOIN orders AS o ON o.id = i.order_id
    JOIN ledger AS l ON l.order_id = i.order_id
),
proportional AS (
    SELECT *,
        order_discount_minor * gross_minor / greatest(order_gross_minor, 1) AS discount_share,
        order_fees_minor * gross_minor / greatest(order_gross_minor, 1) AS fees_share,
        order_refunds_minor * gross_minor / greatest(order_gross_minor, 1) AS refunds_share,
        order_adjustments_minor * gross_minor / greatest(order_gross_minor, 1)
            AS adjustments_share
    FROM shares
),
allocated AS (
    SELECT order_id, event_id, ticket_type_id, currency, paid_at, quantity, gross_minor,
        discount_share + CASE WHEN size_rank = 1
            THEN order_discount_minor - sum(discount_share) OVER w ELSE 0 END AS discount_minor,
        fees_share + CASE WHEN size_rank = 1
            THEN order_fees_minor - sum(fees_share) OVER w ELSE 0 END AS fees_minor,
        refunds_share + CASE WHEN size_rank = 1
            THEN order_refunds_minor - sum(refunds_share) OVER w ELSE 0 END AS refunds_minor,
        adjustments_share + CASE WHEN size_rank = 1
            THEN order_adjustments_minor - sum(adjustments_share) OVER w ELSE 0 END
            AS adjustments_minor
    FROM proportional
    WINDOW w AS (PARTITION BY order_id)
),
daily AS (
    SELECT e.organizer_id, a.event_id, a.ticket_type_id,
           (a.paid_at AT TIME ZONE 'UTC')::date AS sales_day, a.currency,
           sum(a.quantity) AS tickets, sum(a.gross_minor) AS gross_minor,
           sum(a.discount_minor) AS discounts_minor, sum(a.fees_minor) AS fees_minor,
           sum(a.refunds_minor) AS refunds_minor, sum(a.adjustments_minor) AS adjustments_minor,
           sum(a.gross_minor - a.discount_minor - a.fees_minor - a.refunds_minor
               - a.adjustments_minor) AS net_minor
    FROM allocated AS a
    JOIN events AS e ON e.id = a.event_id
    GROUP BY e.organizer_id, a.event_id, a.ticket_type_id, 4, a.currency
)
SELECT {totals} FROM daily
"""

# The rpt_daily_sales model's own query (what dbt runs), over the materialized marts
MARTS_REPORT = """
SELECT {totals} FROM (
    SELECT events.organizer_id AS organizer_id, items.event_id AS event_id,
           items.ticket_type_id AS ticket_type_id, toDate(items.paid_at) AS sales_day,
           items.currency AS currency, sum(items.quantity) AS tickets,
           sum(items.gross_minor) AS gross_minor, sum(items.discount_minor) AS discounts_minor,
           sum(items.fees_minor) AS fees_minor, sum(items.refunds_minor) AS refunds_minor,
           sum(items.adjustments_minor) AS adjustments_minor, sum(items.net_minor) AS net_minor
    FROM marts.fct_order_items AS items
    INNER JOIN marts.dim_events AS events ON events.event_id = items.event_id
    GROUP BY organizer_id, event_id, ticket_type_id, sales_day, currency
)
"""


def timed(run: Callable[[], tuple], repeat: int) -> tuple[list[float], tuple]:
    """A warm-up run, then `repeat` timed ones; (seconds, the result, which must not vary)."""
    first = run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
        if result != first:
            raise RuntimeError(f"the report changed between runs: {first} then {result}")
    return times, first


def clickhouse_totals(client: Client, sql: str) -> tuple:
    return tuple(int(x) for x in client.query(sql).result_rows[0])


def postgres_totals(dsn: str) -> Callable[[], tuple]:
    conn = psycopg.connect(dsn, autocommit=True)
    for name, value in PG_REPORT_SETTINGS.items():
        conn.execute(f"SET {name} = '{value}'")
    sql = POSTGRES_REPORT.format(totals=TOTALS)
    return lambda: tuple(int(x) for x in conn.execute(sql).fetchone())


# --- one size ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Figures:
    items: int
    rows: dict[str, int]
    generate_s: float
    full_build: Invocation
    delta_s: float
    delta_items: int
    late_orders: int
    incremental_builds: list[Invocation]  # the same delta on the same state, each
    every_row_test: Invocation
    load_s: float
    pg_rows: int
    clickhouse_s: list[float]
    marts_s: list[float]
    postgres_s: list[float]
    totals: dict[str, tuple]
    peak_rss: dict[str, int]  # bytes, per service
    load: float  # load average (1 min) when this size started

    @property
    def ratio(self) -> float:
        """PostgreSQL from its tables / the rpt_daily_sales model's query over the marts."""
        return statistics.median(self.postgres_s) / statistics.median(self.marts_s)

    @property
    def raw_ratio(self) -> float:
        """PostgreSQL / ClickHouse computing the same from the raw CDC tables (FINAL)."""
        return statistics.median(self.postgres_s) / statistics.median(self.clickhouse_s)

    @property
    def incremental_build(self) -> Invocation:
        """The last run: the state the every-row test and the report comparison read."""
        return self.incremental_builds[-1]

    @property
    def incremental_s(self) -> float:
        return statistics.median(i.seconds for i in self.incremental_builds)

    @property
    def agree(self) -> bool:
        return len(set(self.totals.values())) == 1

    @property
    def green(self) -> bool:
        return not any(
            i.failed for i in (self.full_build, *self.incremental_builds, self.every_row_test)
        )


class PeakMemory(threading.Thread):
    """The largest resident set of each service (with its children) while a size runs."""

    def __init__(self, supervisor) -> None:
        super().__init__(daemon=True)
        self.processes = {
            item.service.name: psutil.Process(item.process.pid) for item in supervisor.running
        }
        self.peak = dict.fromkeys(self.processes, 0)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.Error):
                    rss = sum(
                        p.memory_info().rss for p in [process, *process.children(recursive=True)]
                    )
                    self.peak[name] = max(self.peak[name], rss)

    def finish(self) -> dict[str, int]:
        self.stop.set()
        self.join()
        return self.peak


def settle(client: Client, timeout_s: float = 600) -> float:
    """Wait until no merge or mutation runs: a deployment building every few minutes meets
    the incremental run in that state, long after the full build (whose new parts the
    warehouse merges in the background for a minute or so at 10M items)."""
    started = time.perf_counter()
    busy = (
        "SELECT (SELECT count() FROM system.merges)"
        " + (SELECT count() FROM system.mutations WHERE NOT is_done)"
    )
    while client.command(busy) and time.perf_counter() - started < timeout_s:
        time.sleep(1)
    return time.perf_counter() - started


def measure(settings: Settings, items: int, args, work: Path, supervisor) -> Figures:
    raw = settings.cdc_database
    load = os.getloadavg()[0]
    memory = PeakMemory(supervisor)
    memory.start()
    client = clickhouse_connect.get_client(
        dsn=settings.effective_clickhouse_url, send_receive_timeout=3600
    )
    drop_warehouse(client, raw)
    dsn = fresh_postgres(settings)
    specs = create_raw_tables(settings, dsn, client)
    shape = Shape.of(items, datetime.now(UTC))
    generator = Generator(client, raw, shape)

    started = time.perf_counter()
    generator.base()
    generate_s = time.perf_counter() - started
    rows = {
        table: client.command(f"SELECT count() FROM `{raw}`.`{table}`")
        for table in ("orders", "order_items", "payments", "refunds", "ledger_entries")
    }
    print(f"  {items:,} items generated in {generate_s:.1f} s: {rows}", flush=True)

    full_build = dbt(settings, work, "build", "--full-refresh")
    print(
        f"  dbt build --full-refresh {full_build.seconds:.1f} s: {full_build.slowest()}", flush=True
    )

    settled_s = settle(client)
    print(f"  the full build's background merges finished {settled_s:.1f} s later", flush=True)
    newest = client.command("SELECT max(synced_at) FROM marts.fct_orders")
    late_synced_at = as_datetime(newest) - timedelta(minutes=30)
    warehouse = [raw, *MARTS_DATABASES]
    keep_tables(client, warehouse)
    incremental_builds = []
    for run in range(args.incremental_repeat):
        if run:
            restore_tables(client, warehouse)
            settle(client)
        started = time.perf_counter()
        now_us = int(time.time() * 1_000_000)
        delta_items, late_orders = generator.delta(late_synced_at, now_us)
        delta_s = time.perf_counter() - started
        print(
            f"  delta: {delta_items:,} new items, {late_orders:,} orders refunded late "
            f"({delta_s:.1f} s)",
            flush=True,
        )
        incremental_builds.append(dbt(settings, work, *FREQUENT_BUILD_ARGS))
        print(
            f"  {' '.join(FREQUENT_BUILD_ARGS)} (incremental, run {run + 1}) "
            f"{incremental_builds[-1].seconds:.1f} s: {incremental_builds[-1].slowest()}",
            flush=True,
        )
    every_row_test = dbt(settings, work, "test", *NO_UNIT_TESTS, *EVERY_ROW)
    print(
        f"  dbt test, every row {every_row_test.seconds:.1f} s: {every_row_test.slowest()}",
        flush=True,
    )

    started = time.perf_counter()
    pg_rows = load_postgres(client, raw, dsn, specs)
    load_s = time.perf_counter() - started
    print(f"  PostgreSQL: {pg_rows:,} rows loaded in {load_s:.1f} s", flush=True)

    ch_sql = CLICKHOUSE_REPORT.format(raw=f"`{raw}`", totals=TOTALS)
    clickhouse_s, ch_totals = timed(lambda: clickhouse_totals(client, ch_sql), args.repeat)
    marts_sql = MARTS_REPORT.format(totals=TOTALS)
    marts_s, marts_totals = timed(lambda: clickhouse_totals(client, marts_sql), args.repeat)
    postgres_s, pg_totals = timed(postgres_totals(dsn), args.pg_repeat)
    stored = clickhouse_totals(client, f"SELECT {TOTALS} FROM marts.rpt_daily_sales")
    totals = {
        "ClickHouse, from the raw tables": ch_totals,
        "ClickHouse, the model over the marts": marts_totals,
        "marts.rpt_daily_sales after the incremental run": stored,
        "PostgreSQL": pg_totals,
    }
    print(
        f"  report: ClickHouse {statistics.median(clickhouse_s):.3f} s, over the marts "
        f"{statistics.median(marts_s):.3f} s, PostgreSQL {statistics.median(postgres_s):.3f} s",
        flush=True,
    )
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
    drop_warehouse(client, raw)
    client.close()
    return Figures(
        items,
        rows,
        generate_s,
        full_build,
        delta_s,
        delta_items,
        late_orders,
        incremental_builds,
        every_row_test,
        load_s,
        pg_rows,
        clickhouse_s,
        marts_s,
        postgres_s,
        totals,
        memory.finish(),
        load,
    )


def as_datetime(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


# --- report ---------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_figures(all_figures: list[Figures], args, load_before: float) -> None:
    print()
    print(
        f"dbt marts benchmark: {os.cpu_count()} CPUs, load average before the run "
        f"{load_before:.2f}, after {os.getloadavg()[0]:.2f}; report times are medians of "
        f"{args.repeat} (ClickHouse) and {args.pg_repeat} (PostgreSQL) runs after a warm-up"
    )
    for f in all_figures:
        print()
        print(
            f"{f.items:,} order items ({f.rows['orders']:,} orders, "
            f"{f.rows['ledger_entries']:,} ledger entries, {f.rows['payments']:,} payments, "
            f"{f.rows['refunds']:,} refunds), generated in {f.generate_s:.1f} s; "
            f"delta {f.delta_items:,} items and {f.late_orders:,} late refunds; load average "
            f"{f.load:.2f} at the start; peak memory "
            + ", ".join(f"{name} {rss / 2**30:.1f} GiB" for name, rss in f.peak_rss.items())
        )
        print(f"  full build, dbt build --full-refresh:   {f.full_build.seconds:6.1f} s")
        print(
            f"  incremental build (+1%, late rows), {' '.join(FREQUENT_BUILD_ARGS)}: "
            f"{f.incremental_s:.1f} s, the median of {len(f.incremental_builds)} runs of the "
            "same delta on the full build's tables (runs "
            + ", ".join(f"{i.seconds:.1f}" for i in f.incremental_builds)
            + "; Dagster's sales_marts job; each test reads the rows its table's latest build "
            "wrote)"
        )
        print(
            f"  then every row tested, dbt test {' '.join(NO_UNIT_TESTS + EVERY_ROW)}: "
            f"{f.every_row_test.seconds:.1f} s (the daily reconciliation job's tests)"
        )
        print(f"  slowest nodes, full:        {f.full_build.slowest()}")
        print(f"  slowest nodes, incremental: {f.incremental_build.slowest()}")
        failed = [
            n for i in (f.full_build, *f.incremental_builds, f.every_row_test) for n in i.failed
        ]
        print(f"  dbt tests: {'all green' if not failed else 'FAILED: ' + ', '.join(failed)}")
        print(
            f"  rpt_daily_sales on PostgreSQL, from the API's tables: "
            f"{statistics.median(f.postgres_s):.3f} s (runs "
            + ", ".join(f"{s:.2f}" for s in f.postgres_s)
            + ")"
        )
        print(
            f"  rpt_daily_sales on ClickHouse, the model's query over fct_order_items: "
            f"{statistics.median(f.marts_s):.3f} s (runs "
            + ", ".join(f"{s:.3f}" for s in f.marts_s)
            + f"): {f.ratio:.1f}x faster"
        )
        print(
            f"  the same on ClickHouse from the raw CDC tables (FINAL, allocation included): "
            f"{statistics.median(f.clickhouse_s):.3f} s (runs "
            + ", ".join(f"{s:.3f}" for s in f.clickhouse_s)
            + f"): {f.raw_ratio:.1f}x faster"
        )
        print(
            f"  PostgreSQL: {f.pg_rows:,} rows COPYed in {f.load_s:.1f} s; settings "
            f"{PG_REPORT_SETTINGS}"
        )
        first = next(iter(f.totals.values()))
        print(
            "  totals "
            + ("agree" if f.agree else "DISAGREE")
            + ": "
            + ", ".join(f"{n} {v:,}" for n, v in zip(TOTAL_NAMES, first, strict=True))
        )
        if not f.agree:
            for label, values in f.totals.items():
                print(f"    {label}: {values}")
    print()
    print(f"{'target (2 cores)':<56} {'items':>12} {'measured':>10}  verdict")
    for f in all_figures:
        at_scale = f.items >= TARGET_ITEMS
        rows = [
            (
                f"full build <= {TARGET_FULL_S:.0f} s",
                f"{f.full_build.seconds:.1f} s",
                f.full_build.seconds <= TARGET_FULL_S,
            ),
            (
                f"incremental build <= {TARGET_INCREMENTAL_S:.0f} s",
                f"{f.incremental_s:.1f} s",
                f.incremental_s <= TARGET_INCREMENTAL_S,
            ),
            (
                f"ClickHouse >= {TARGET_RATIO:.0f}x faster than PostgreSQL (model query)",
                f"{f.ratio:.1f}x",
                f.ratio >= TARGET_RATIO,
            ),
            (
                "  the same computed from the raw CDC tables",
                f"{f.raw_ratio:.1f}x",
                f.raw_ratio >= TARGET_RATIO,
            ),
            ("dbt tests green, report totals agree", "", f.green and f.agree),
        ]
        for label, measured, ok in rows:
            applies = at_scale or not label.startswith(("full", "incr"))
            verdict = _verdict(ok) if applies else f"({_verdict(ok)}; target is at 10M)"
            print(f"{label:<56} {f.items:>12,} {measured:>10}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1000000,10000000",
        help="order items, comma-separated (default: 1M and 10M)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="ClickHouse report runs")
    parser.add_argument(
        "--incremental-repeat",
        type=int,
        default=3,
        help="incremental builds, each of the same delta on the full build's tables",
    )
    parser.add_argument("--pg-repeat", type=int, default=3, help="PostgreSQL report runs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.replace("_", "").split(",") if s]
    load_before = os.getloadavg()[0]
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(Path(tmp))
        work = Path(tmp) / "dbt"
        services = [service_named(settings, n) for n in ("postgres", "warehouse")]
        with run_services(settings, services) as supervisor:
            for items in sizes:
                print(f"{items:,} order items:", flush=True)
                figures.append(measure(settings, items, args, work, supervisor))
                shutil.rmtree(work, ignore_errors=True)
    print_figures(figures, args, load_before)


if __name__ == "__main__":
    main()
