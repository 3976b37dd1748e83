"""The marts' incremental path in the shape it meets in production: months of history that
the CDC relay and the processor ingestion wrote long ago (outside every lookback), then new
orders with their payments, refunds, disputes and processor objects, and late refunds of
older orders whose CDC rows arrive late. The frequent build (Dagster's `sales_marts` job)
must recompute only what changed and leave exactly what a full refresh computes.

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

    incremental = contents(ch)
    assert len(incremental) == 17 and all(rows for rows, _ in incremental.values())
    rebuilt = dbt(warehouse, tmp_path, "build", "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-4000:]
    assert contents(ch) == incremental
