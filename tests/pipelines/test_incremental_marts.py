"""The marts' incremental path in the shape it meets in production: months of history that
the CDC relay and the processor ingestion wrote long ago (outside every lookback), then new
orders with their payments, refunds, disputes and processor objects, and late refunds of
older orders whose CDC rows arrive late; then transactions written again with a payout
(older versions not merged away yet) and a refund written after its balance transaction,
with builds in between. The frequent build (Dagster's `sales_marts` job) must recompute only
what changed and leave exactly what a full refresh computes.

The rows come from bench/marts.py's generator: the benchmark's data, at a small scale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import pytest

from bench import marts as marts_bench
from pipelines.orchestration.dbt_builds import FREQUENT_BUILD_ARGS
from tests.pipelines.dbt_runs import contents, dbt
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

pytestmark = pytest.mark.slow
ITEMS = 60_000


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Iterator[Settings]:
    settings = isolated_settings(tmp_path_factory.mktemp("marts"))
    with run_services(settings, [service_named(settings, n) for n in ("postgres", "warehouse")]):
        yield settings


def test_an_incremental_build_leaves_what_a_full_refresh_computes(
    warehouse: Settings, tmp_path: Path
):
    ch = clickhouse_connect.get_client(dsn=warehouse.effective_clickhouse_url)
    dsn = marts_bench.fresh_postgres(warehouse)
    marts_bench.create_raw_tables(warehouse, dsn, ch)
    generator = marts_bench.Generator(
        ch, warehouse.cdc_database, marts_bench.Shape.of(ITEMS, datetime.now(UTC))
    )
    generator.base()
    first = dbt(warehouse, tmp_path, "build", "--full-refresh")
    assert first.returncode == 0, first.stdout[-4000:]

    newest = ch.command("SELECT max(synced_at) FROM marts.fct_orders")
    late = marts_bench.as_datetime(newest) - timedelta(minutes=30)
    new_items, late_orders = generator.delta(late, int(time.time() * 1_000_000))
    assert new_items == ITEMS // 100 and late_orders > 0
    build = dbt(warehouse, tmp_path, *FREQUENT_BUILD_ARGS)
    assert build.returncode == 0, build.stdout[-4000:]

    # It recomputed the new and the late-refunded orders' lines, not the rest.
    written, total = ch.query(
        "SELECT countIf(built_at = (SELECT max(built_at) FROM marts.fct_order_items)), count() "
        "FROM marts.fct_order_items"
    ).result_rows[0]
    assert new_items <= written < total // 10

    first_built = ch.command("SELECT max(built_at) FROM marts.fct_balance_transactions")
    # What a processor ingestion does later, a build now and then in between:
    raw = warehouse.cdc_database
    # transactions written again with the payout that settled them, their older versions not
    # merged away yet (a build must not take an older version for news);
    ch.command(f"SYSTEM STOP MERGES `{raw}`.stripe_balance_transactions")
    payout, payout_currency = ch.query(
        f"SELECT id, currency FROM `{raw}`.stripe_payouts FINAL ORDER BY created DESC LIMIT 1"
    ).result_rows[0]
    # (the filter in a subquery: REPLACE's aliases would shadow the columns in a WHERE)
    ch.command(
        f"INSERT INTO `{raw}`.stripe_balance_transactions SELECT * REPLACE "
        "({payout:String} AS payout, now64(6) AS _ingested_at) "
        f"FROM (SELECT * FROM `{raw}`.stripe_balance_transactions FINAL "
        "WHERE type = 'charge' AND payout IS NULL AND currency = {currency:String} "
        "ORDER BY created DESC, id LIMIT 50)",
        parameters={"payout": payout, "currency": payout_currency},
    )
    _build(warehouse, tmp_path)
    # a refund's balance transaction written before the refund that names its charge, with a
    # build between the two (the refund then comes with a later stamp).
    charge, currency = ch.query(
        f"SELECT id, currency FROM `{raw}`.stripe_charges FINAL WHERE id NOT IN "
        f"(SELECT charge FROM `{raw}`.stripe_refunds WHERE charge IS NOT NULL) ORDER BY id LIMIT 1"
    ).result_rows[0]
    ch.command(
        f"INSERT INTO `{raw}`.stripe_balance_transactions (id, type, reporting_category, "
        "source, amount, fee, net, currency, fee_details, status, available_on, created, "
        "exchange_rate, payout, _raw, _ingested_at) VALUES ('txn_re_later', 'refund', 'refund', "
        "'re_later', -700, 0, -700, {currency:String}, [], 'available', now(), now(), NULL, "
        "NULL, '{}', now64(6))",
        parameters={"currency": currency},
    )
    _build(warehouse, tmp_path)
    ch.command(
        f"INSERT INTO `{raw}`.stripe_refunds (id, charge, payment_intent, amount, currency, "
        "status, balance_transaction, created, _raw, _ingested_at) VALUES ('re_later', "
        "{charge:String}, NULL, 700, {currency:String}, 'succeeded', 'txn_re_later', now(), "
        "'{}', now64(6))",
        parameters={"charge": charge, "currency": currency},
    )
    _build(warehouse, tmp_path)
    _build(warehouse, tmp_path)  # and once more with nothing new
    paid_later = ch.query(
        "SELECT count(), countIf(is_ticketflow) FROM marts.fct_balance_transactions "
        "WHERE payout_id = {payout:String} AND built_at > {first:DateTime64(6, 'UTC')}",
        parameters={"payout": payout, "first": first_built},
    ).result_rows
    assert paid_later == [(50, 50)]
    linked = ch.query(
        "SELECT charge_id, is_ticketflow FROM marts.fct_balance_transactions "
        "WHERE balance_transaction_id = 'txn_re_later'"
    ).result_rows
    assert linked == [(charge, True)]

    incremental = contents(ch)
    assert len(incremental) == 17 and all(rows for rows, _ in incremental.values())
    rebuilt = dbt(warehouse, tmp_path, "build", "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-4000:]
    assert contents(ch) == incremental
    ch.command(f"SYSTEM START MERGES `{raw}`.stripe_balance_transactions")


def _build(settings: Settings, work: Path) -> None:
    build = dbt(settings, work, *FREQUENT_BUILD_ARGS)
    assert build.returncode == 0, build.stdout[-4000:]
