"""Checks that span systems: the relay's freshness, and the books balancing against
PostgreSQL (the marts must agree to the minor unit with the source of truth)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import clickhouse_connect
import psycopg

from ticketflow.settings import Settings

MAX_LAG_SECONDS = 300.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict


def _warehouse(settings: Settings):
    return clickhouse_connect.get_client(dsn=settings.effective_clickhouse_url)


def relay_is_fresh(settings: Settings, max_lag_seconds: float = MAX_LAG_SECONDS) -> Verdict:
    with contextlib.closing(_warehouse(settings)) as client:
        rows = client.query(
            "SELECT lag_seconds, data_as_of, recorded_at "
            f"FROM {settings.cdc_database}._relay_status ORDER BY recorded_at DESC LIMIT 1"
        ).result_rows
    if not rows:
        return Verdict(False, "the CDC relay has not reported yet", {})
    lag, as_of, recorded = rows[0]
    fresh = lag <= max_lag_seconds
    return Verdict(
        fresh,
        f"data as of {as_of:%Y-%m-%d %H:%M:%S} UTC, {lag:.1f} s behind",
        {"lag_seconds": float(lag), "recorded_at": str(recorded)},
    )


_SOURCE_TOTALS = """
SELECT event_id, currency, sum(amount_minor)::bigint
FROM ledger_entries GROUP BY event_id, currency
"""
_MART_TOTALS = "SELECT event_id, currency, sum(net_minor) FROM marts.rpt_daily_sales GROUP BY 1, 2"


def books_balance(settings: Settings) -> Verdict:
    """Net money per event and currency: marts (ClickHouse) against the ledger (PostgreSQL)."""
    with psycopg.connect(settings.effective_database_url) as conn:
        source = {(e, c): int(n) for e, c, n in conn.execute(_SOURCE_TOTALS)}
    with contextlib.closing(_warehouse(settings)) as client:
        marts = {(e, c): int(n) for e, c, n in client.query(_MART_TOTALS).result_rows}
    differ = {
        f"event {key[0]} {key[1]}": {"source": source.get(key), "marts": marts.get(key)}
        for key in sorted(source.keys() | marts.keys())
        if source.get(key) != marts.get(key)
    }
    return Verdict(
        not differ,
        "marts agree with PostgreSQL" if not differ else f"{len(differ)} event(s) differ",
        {"events_compared": len(source), "differences": differ},
    )
