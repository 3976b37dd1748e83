"""The reconciliation report for finance, read from `marts.rpt_reconciliation`.

One row per item: every payment and refund TicketFlow recorded beside the processor's balance
transaction and payout, and every processor transaction of ours with no internal record. The
mart keeps minor units; here amounts become exact decimals in major units (ISO 4217 decimal
places) beside their currency. Where the mart has nothing to say it fills in zeros (no balance
transaction: actual amounts 0; no internal record: ids and expected amounts 0); the report
leaves those cells empty instead, so an empty cell means "not known", never "zero".

The functions return rows and bytes and never write files: `ticketflow report reconciliation`
writes them, and the finance dashboard can offer the same bytes as downloads.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from dashboards.money import exponent, to_major_units

TABLE = "marts.rpt_reconciliation"
FORMATS = ("csv", "xlsx")
# The order statuses are listed in, worst last (as the mart's `multiIf` decides them).
STATUSES = (
    "matched",
    "pending_payout",
    "amount_mismatch",
    "disputed",
    "missing_at_processor",
    "missing_internally",
)
UNKNOWN_TABLE = 60  # ClickHouse's error code for a table that does not exist


class ReportError(Exception):
    """The report cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class Period:
    """Calendar days in UTC, both ends included."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.first_day > self.last_day:
            raise ValueError(
                f"the period starts on {self.first_day}, after it ends ({self.last_day})"
            )

    def __str__(self) -> str:
        return f"{self.first_day} to {self.last_day}"


@dataclass(frozen=True)
class Item:
    status: str
    item_type: str  # payment | refund
    occurred_at: datetime | None  # UTC
    currency: str
    expected_gross: Decimal | None
    actual_gross: Decimal | None
    expected_fee: Decimal | None
    actual_fee: Decimal | None
    expected_net: Decimal | None
    actual_net: Decimal | None
    variance: Decimal  # actual net - expected net
    order_id: int | None
    event_id: int | None
    internal_id: int | None  # the payment's or the refund's id in TicketFlow
    processor_object_id: str | None
    balance_transaction_id: str | None
    payout_id: str | None
    reporting_category: str | None
    disputed: bool


@dataclass(frozen=True)
class SummaryLine:
    status: str
    currency: str
    items: int
    expected_net: Decimal
    actual_net: Decimal
    variance: Decimal


# --- reading ---------------------------------------------------------------------------------

_QUERY = f"""
SELECT status, item_type, occurred_at, upper(currency) AS currency,
       expected_gross_minor, actual_gross_minor, expected_fee_minor, actual_fee_minor,
       expected_net_minor, actual_net_minor, variance_minor,
       order_id, event_id, internal_id, processor_object_id, balance_transaction_id, payout_id,
       reporting_category, disputed, found_at_processor
FROM {TABLE}
WHERE toDate(occurred_at, 'UTC') BETWEEN {{first_day:Date}} AND {{last_day:Date}}
ORDER BY occurred_at, item_type, processor_object_id, internal_id
"""


def connect(clickhouse_url: str) -> Client:
    """A client for the warehouse, or ReportError saying it does not answer."""
    try:
        return clickhouse_connect.get_client(dsn=clickhouse_url, connect_timeout=5)
    except (OperationalError, DatabaseError) as exc:
        where = _without_password(clickhouse_url)
        raise ReportError(
            f"the warehouse at {where} does not answer ({_first_line(exc)}); start it "
            "(`ticketflow up`) or point CLICKHOUSE_URL at a running one"
        ) from exc


def fetch_items(client: Client, period: Period) -> list[Item]:
    """Every item whose date (UTC) falls in `period`, oldest first."""
    try:
        result = client.query(
            _QUERY, parameters={"first_day": period.first_day, "last_day": period.last_day}
        )
    except DatabaseError as exc:
        if f"Code: {UNKNOWN_TABLE}." in str(exc):
            raise ReportError(
                f"{TABLE} does not exist yet in the warehouse: build the marts first (Dagster's "
                "`reconciliation` job, or `dbt build` in dbt_project/)"
            ) from exc
        raise ReportError(f"the warehouse could not read {TABLE}: {_first_line(exc)}") from exc
    except OperationalError as exc:
        raise ReportError(f"the warehouse stopped answering: {_first_line(exc)}") from exc
    rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    try:
        return [_item(row) for row in rows]
    except ValueError as exc:  # a currency that is no ISO 4217 code: no decimal places known
        raise ReportError(f"{TABLE} holds a row this report cannot present: {exc}") from exc


def _item(row: dict[str, Any]) -> Item:
    currency = row["currency"]
    internal = row["internal_id"] != 0  # 0: a processor transaction with no record of ours
    at_processor = bool(row["found_at_processor"])

    def amount(column: str, known: bool) -> Decimal | None:
        return to_major_units(row[column], currency) if known else None

    occurred_at = row["occurred_at"]
    if occurred_at is not None and occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    return Item(
        status=row["status"],
        item_type=row["item_type"],
        occurred_at=occurred_at,
        currency=currency,
        expected_gross=amount("expected_gross_minor", internal),
        actual_gross=amount("actual_gross_minor", at_processor),
        expected_fee=amount("expected_fee_minor", internal),
        actual_fee=amount("actual_fee_minor", at_processor),
        expected_net=amount("expected_net_minor", internal),
        actual_net=amount("actual_net_minor", at_processor),
        variance=to_major_units(row["variance_minor"], currency),
        order_id=row["order_id"] if internal else None,
        event_id=row["event_id"] if internal else None,
        internal_id=row["internal_id"] if internal else None,
        processor_object_id=row["processor_object_id"] or None,
        balance_transaction_id=(row["balance_transaction_id"] or None) if at_processor else None,
        payout_id=row["payout_id"] or None,
        reporting_category=row["reporting_category"] or None,
        disputed=bool(row["disputed"]),
    )


def summarize(items: Iterable[Item]) -> list[SummaryLine]:
    """Counts and net totals per currency and status (currencies A-Z, statuses as STATUSES)."""
    groups: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        groups.setdefault((item.currency, item.status), []).append(item)

    def total(group: list[Item], field: str, currency: str) -> Decimal:
        zero = to_major_units(0, currency)  # keeps the currency's decimal places
        return sum((getattr(i, field) or zero for i in group), zero)

    def order(key: tuple[str, str]) -> tuple:
        currency, status = key
        rank = STATUSES.index(status) if status in STATUSES else len(STATUSES)
        return currency, rank, status

    return [
        SummaryLine(
            status=status,
            currency=currency,
            items=len(group),
            expected_net=total(group, "expected_net", currency),
            actual_net=total(group, "actual_net", currency),
            variance=total(group, "variance", currency),
        )
        for (currency, status), group in sorted(groups.items(), key=lambda kv: order(kv[0]))
    ]


# --- columns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], Any]
    kind: str = "text"  # text | money | datetime | id | count | bool
    width: float = 14


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda row: getattr(row, name)


def _money(name: str) -> Column:
    return Column(name, _attr(name), "money")


ITEM_COLUMNS: tuple[Column, ...] = (
    Column("status", _attr("status"), width=22),
    Column("item_type", _attr("item_type"), width=10),
    Column("occurred_at_utc", _attr("occurred_at"), "datetime", width=20),
    Column("currency", _attr("currency"), width=9),
    _money("expected_gross"),
    _money("actual_gross"),
    _money("expected_fee"),
    _money("actual_fee"),
    _money("expected_net"),
    _money("actual_net"),
    _money("variance"),
    Column("order_id", _attr("order_id"), "id", width=10),
    Column("event_id", _attr("event_id"), "id", width=10),
    Column("internal_id", _attr("internal_id"), "id", width=11),
    Column("processor_object_id", _attr("processor_object_id"), width=30),
    Column("balance_transaction_id", _attr("balance_transaction_id"), width=30),
    Column("payout_id", _attr("payout_id"), width=30),
    Column("reporting_category", _attr("reporting_category"), width=18),
    Column("disputed", _attr("disputed"), "bool", width=9),
)

SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("status", _attr("status"), width=22),
    Column("currency", _attr("currency"), width=9),
    Column("items", _attr("items"), "count", width=9),
    _money("expected_net"),
    _money("actual_net"),
    _money("variance"),
)


# --- CSV -------------------------------------------------------------------------------------


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _csv(columns: Sequence[Column], rows: Iterable[Any]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)  # RFC 4180: comma, double quotes, CRLF
    writer.writerow(c.header for c in columns)
    for row in rows:
        writer.writerow(_csv_text(c.value(row)) for c in columns)
    return text.getvalue().encode("utf-8")


def items_csv(items: Iterable[Item]) -> bytes:
    """One line per item; amounts as plain decimals (`45.00`, JPY `4500`, BHD `4.500`)."""
    return _csv(ITEM_COLUMNS, items)


def summary_csv(lines: Iterable[SummaryLine]) -> bytes:
    return _csv(SUMMARY_COLUMNS, lines)


# --- XLSX ------------------------------------------------------------------------------------

_DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def _money_format(currency: str) -> str:
    places = exponent(currency)
    return "#,##0" + ("." + "0" * places if places else "")


def _sheet(workbook: Workbook, title: str, columns: Sequence[Column], rows: Sequence[Any]) -> None:
    """A sheet with a bold, frozen, filterable header row and typed, formatted cells."""
    sheet = workbook.create_sheet(title)
    sheet.freeze_panes = "A2"
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"
    bold = Font(bold=True)
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=column.header)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in rows:
        cells = []
        for column in columns:
            value = column.value(row)
            if isinstance(value, datetime):
                # No time zones in a spreadsheet: UTC, as the header says. Whole seconds, as in
                # the CSV: shown as hh:mm:ss, 23:59:59.9 would round up into the next day.
                value = value.astimezone(UTC).replace(tzinfo=None, microsecond=0)
            cell = WriteOnlyCell(sheet, value=value)
            if column.kind == "money" and value is not None:
                cell.number_format = _money_format(row.currency)
            elif column.kind == "datetime" and value is not None:
                cell.number_format = _DATETIME_FORMAT
            elif column.kind in ("id", "count"):
                cell.number_format = "0"
            cells.append(cell)
        sheet.append(cells)


def workbook_xlsx(items: Sequence[Item], summary: Sequence[SummaryLine], period: Period) -> bytes:
    """Two sheets: `Summary` (per status and currency) and `Items` (one row per item)."""
    workbook = Workbook(write_only=True)
    workbook.properties.title = f"Reconciliation {period}"
    workbook.properties.subject = f"{TABLE}, items dated {period} (UTC)"
    workbook.properties.creator = "TicketFlow"
    _sheet(workbook, "Summary", SUMMARY_COLUMNS, summary)
    _sheet(workbook, "Items", ITEM_COLUMNS, items)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- the report as files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    report: bytes
    summary: bytes | None  # the CSV summary, when asked for (the XLSX carries its own sheet)
    items: int


def export(client: Client, period: Period, fmt: str, *, csv_summary: bool = False) -> Export:
    """The report for `period` as `fmt` ("csv" or "xlsx"), read from the warehouse once."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    items = fetch_items(client, period)
    summary = summarize(items)
    if fmt == "xlsx":
        return Export(workbook_xlsx(items, summary, period), None, len(items))
    return Export(items_csv(items), summary_csv(summary) if csv_summary else None, len(items))


def default_filename(period: Period, fmt: str, *, summary: bool = False) -> str:
    suffix = "_summary" if summary else ""
    return f"reconciliation_{period.first_day}_{period.last_day}{suffix}.{fmt}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
