"""Every read the dashboards make of the warehouse: parameterised, cached, read-only.

Pages call these functions and never build SQL. The reconciliation is read through the export
module (`dashboards.exports.reconciliation`), so the page, its downloads and `ticketflow report
reconciliation` all see the same rows in the same way.
"""

from __future__ import annotations

from datetime import date

import clickhouse_connect
import streamlit as st
from clickhouse_connect.driver.client import Client

from dashboards.exports import reconciliation
from ticketflow.settings import get_settings

MARTS = "marts"
CACHE_TTL_S = 60  # how stale a page may be; the marts change when Dagster rebuilds them


@st.cache_resource
def warehouse() -> Client:
    """One client for every viewer: read-only, and without a ClickHouse session, which would
    run one query at a time for all of them."""
    return clickhouse_connect.get_client(
        dsn=get_settings().effective_clickhouse_url,
        autogenerate_session_id=False,
        settings={"readonly": 2},  # reads only; 2 still lets the client set query settings
        connect_timeout=5,
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def marts_built_at() -> str | None:
    """When the reconciliation mart was last built (UTC, to the minute: the newest `built_at`
    its rows carry, which an incremental build moves too), or None before the first build."""
    client = warehouse()
    exists = client.command(
        "SELECT count() FROM system.tables WHERE database = {database:String} "
        "AND name = {table:String}",
        parameters={"database": MARTS, "table": reconciliation.TABLE.split(".")[1]},
    )
    if not exists:
        return None
    built = client.query(
        f"SELECT formatDateTime(max(built_at), '%Y-%m-%d %H:%i', 'UTC'), count() "
        f"FROM {reconciliation.TABLE}"
    ).result_rows[0]
    return built[0] if built[1] else None


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="Reading the reconciliation...")
def reconciliation_items(first_day: date, last_day: date) -> list[reconciliation.Item]:
    """The reconciliation's items dated in the period (UTC, both days included)."""
    return reconciliation.fetch_items(warehouse(), reconciliation.Period(first_day, last_day))


def reconciliation_file(first_day: date, last_day: date, fmt: str) -> bytes:
    """The report for the period as the CLI writes it, read afresh (not cached): what finance
    downloads is what the warehouse holds when they click."""
    period = reconciliation.Period(first_day, last_day)
    return reconciliation.export(warehouse(), period, fmt).report
