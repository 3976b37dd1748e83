"""`ticketflow report reconciliation` as finance runs it, against a real warehouse process.

The warehouse holds a `marts.rpt_reconciliation` with the very column types `dbt build` gives
the real model (DESCRIBE after tests/pipelines/test_finance_end_to_end.py, 2026-12-06), and
rows for every status, currencies with 0, 2 and 3 decimal places, the edges of the period and
items outside it. tests/dashboards/test_reconciliation_report_from_the_pipeline.py runs the
same command on the mart the real pipeline builds.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pytest
from openpyxl import load_workbook

from ticketflow.ports import free_port
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

TICKETFLOW = str(Path(sys.executable).with_name("ticketflow"))

MART = """
CREATE TABLE marts.rpt_reconciliation (
    item_type String, internal_id Int64, order_id Int64, event_id Int64,
    processor_object_id Nullable(String), balance_transaction_id String,
    payout_id Nullable(String), reporting_category LowCardinality(String), currency String,
    expected_gross_minor Int64, actual_gross_minor Int64, expected_fee_minor Int64,
    actual_fee_minor Int64, expected_net_minor Int64, actual_net_minor Int64, disputed Bool,
    found_at_processor UInt8, occurred_at Nullable(DateTime64(6, 'UTC')), variance_minor Int64,
    status String, charge_key String, charge_noticed_at DateTime64(6, 'UTC'),
    built_at DateTime64(6, 'UTC')
) ENGINE = MergeTree ORDER BY charge_key
"""


def _row(status, item_type, at, currency, ids, processor, expected, actual, disputed=False):
    """One mart row as the model computes it. `expected`/`actual` are (gross, fee) in minor
    units, or None where that side has no record (the mart then holds zeros and '')."""
    order_id, event_id, internal_id = ids
    object_id, transaction_id, payout_id, category = processor
    expected_gross, expected_fee = expected or (0, 0)
    actual_gross, actual_fee = actual or (0, 0)
    expected_net, actual_net = expected_gross - expected_fee, actual_gross - actual_fee
    return {
        "item_type": item_type,
        "internal_id": internal_id,
        "order_id": order_id,
        "event_id": event_id,
        "processor_object_id": object_id,
        "balance_transaction_id": transaction_id,
        "payout_id": payout_id,
        "reporting_category": category,
        "currency": currency,
        "expected_gross_minor": expected_gross,
        "actual_gross_minor": actual_gross,
        "expected_fee_minor": expected_fee,
        "actual_fee_minor": actual_fee,
        "expected_net_minor": expected_net,
        "actual_net_minor": actual_net,
        "disputed": disputed,
        "found_at_processor": int(actual is not None),
        "occurred_at": datetime.fromisoformat(at).replace(tzinfo=UTC),
        "variance_minor": actual_net - expected_net,
        "status": status,
    }


ROWS = [
    _row("matched", "payment", "2026-10-31 23:59:59.999999", "EUR", (6, 1, 6),
         ("ch_before", "txn_before", "po_0", "charge"), (4500, 161), (4500, 161)),
    _row("matched", "payment", "2026-11-01 00:00:00", "EUR", (1, 1, 1),
         ("ch_a", "txn_a", "po_1", "charge"), (9000, 291), (9000, 291)),
    _row("amount_mismatch", "payment", "2026-11-10 08:30:00", "EUR", (2, 1, 2),
         ("ch_b", "txn_b", "po_1", "charge"), (9000, 291), (9000, 316)),
    _row("missing_at_processor", "refund", "2026-11-12 12:00:00", "EUR", (2, 1, 7),
         ("re_never_sent", "", None, ""), (-1000, 0), None),
    _row("matched", "refund", "2026-11-05 10:00:00", "EUR", (1, 1, 9),
         ("re_j", "txn_j", "po_1", "refund"), (-4500, 0), (-4500, 0)),
    _row("matched", "payment", "2026-11-15 09:00:00", "JPY", (3, 2, 3),
         ("ch_d", "txn_d", "po_2", "charge"), (4500, 161), (4500, 161)),
    _row("pending_payout", "payment", "2026-11-20 18:45:00", "BHD", (4, 3, 4),
         ("ch_e", "txn_e", None, "charge"), (12345, 388), (12345, 388)),
    _row("disputed", "payment", "2026-11-21 07:00:00", "EUR", (5, 1, 5),
         ("ch_f", "txn_f", "po_1", "charge"), (13500, 422), (13500, 422), disputed=True),
    _row("missing_internally", "payment", "2026-11-30 23:59:59.999999", "GBP", (0, 0, 0),
         ("ch_g", "txn_g", "po_3", "charge"), None, (5000, 175)),
    _row("matched", "payment", "2026-12-01 00:00:00", "EUR", (7, 1, 8),
         ("ch_after", "txn_after", "po_4", "charge"), (4500, 161), (4500, 161)),
]  # fmt: skip

NOVEMBER = ["--from", "2026-11-01", "--to", "2026-11-30"]

ITEMS_CSV = """\
status,item_type,occurred_at_utc,currency,expected_gross,actual_gross,expected_fee,actual_fee,\
expected_net,actual_net,variance,order_id,event_id,internal_id,processor_object_id,\
balance_transaction_id,payout_id,reporting_category,disputed
matched,payment,2026-11-01 00:00:00,EUR,90.00,90.00,2.91,2.91,87.09,87.09,0.00,1,1,1,ch_a,txn_a,po_1,charge,false
matched,refund,2026-11-05 10:00:00,EUR,-45.00,-45.00,0.00,0.00,-45.00,-45.00,0.00,1,1,9,re_j,txn_j,po_1,refund,false
amount_mismatch,payment,2026-11-10 08:30:00,EUR,90.00,90.00,2.91,3.16,87.09,86.84,-0.25,2,1,2,ch_b,txn_b,po_1,charge,false
missing_at_processor,refund,2026-11-12 12:00:00,EUR,-10.00,,0.00,,-10.00,,10.00,2,1,7,re_never_sent,,,,false
matched,payment,2026-11-15 09:00:00,JPY,4500,4500,161,161,4339,4339,0,3,2,3,ch_d,txn_d,po_2,charge,false
pending_payout,payment,2026-11-20 18:45:00,BHD,12.345,12.345,0.388,0.388,11.957,11.957,0.000,4,3,4,ch_e,txn_e,,charge,false
disputed,payment,2026-11-21 07:00:00,EUR,135.00,135.00,4.22,4.22,130.78,130.78,0.00,5,1,5,ch_f,txn_f,po_1,charge,true
missing_internally,payment,2026-11-30 23:59:59,GBP,,50.00,,1.75,,48.25,48.25,,,,ch_g,txn_g,po_3,charge,false
"""  # noqa: E501

SUMMARY_CSV = """\
status,currency,items,expected_net,actual_net,variance
pending_payout,BHD,1,11.957,11.957,0.000
matched,EUR,2,42.09,42.09,0.00
amount_mismatch,EUR,1,87.09,86.84,-0.25
disputed,EUR,1,130.78,130.78,0.00
missing_at_processor,EUR,1,-10.00,0.00,10.00
missing_internally,GBP,1,0.00,48.25,48.25
matched,JPY,1,4339,4339,0
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Iterator[Settings]:
    """A warehouse of this module's own, holding the mart (its name is fixed: marts.*)."""
    settings = isolated_settings(tmp_path_factory.mktemp("reconciliation_report"))
    with run_services(settings, [service_named(settings, "warehouse")]):
        client = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_url)
        client.command("CREATE DATABASE marts")
        client.command(MART)
        columns = list(ROWS[0])
        client.insert(
            "marts.rpt_reconciliation",
            [[row[c] for c in columns] for row in ROWS],
            column_names=columns,
        )
        client.close()
        yield settings


def report(settings: Settings, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")}
    environment |= {"CLICKHOUSE_URL": settings.effective_clickhouse_url, **env}
    return subprocess.run(
        [TICKETFLOW, "report", "reconciliation", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8").splitlines()


def test_csv_has_one_row_per_item_in_major_units_and_a_summary_on_request(warehouse, tmp_path):
    done = report(warehouse, *NOVEMBER, "--format", "csv", "--summary", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    items = tmp_path / "reconciliation_2026-11-01_2026-11-30.csv"
    summary = tmp_path / "reconciliation_2026-11-01_2026-11-30_summary.csv"
    assert f"8 item(s) -> {items.name}, {summary.name}" in done.stdout
    assert _lines(items.read_bytes()) == ITEMS_CSV.splitlines()
    assert items.read_bytes().count(b"\r\n") == 9  # RFC 4180 line ends
    assert _lines(summary.read_bytes()) == SUMMARY_CSV.splitlines()
    assert len(list(csv.DictReader(io.StringIO(items.read_text())))) == 8

    alone = report(warehouse, *NOVEMBER, "--output", str(tmp_path / "nov.csv"), cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert (tmp_path / "nov.csv").read_bytes() == items.read_bytes()  # csv from the suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["nov.csv", items.name, summary.name]
    )

    one_day = report(warehouse, "--from", "2026-11-30", "--to", "2026-11-30", cwd=tmp_path)
    assert one_day.returncode == 0, one_day.stderr
    day = _lines((tmp_path / "reconciliation_2026-11-30_2026-11-30.csv").read_bytes())
    assert [line.split(",")[0] for line in day[1:]] == ["missing_internally"]


def _text(value) -> str:
    """A cell as the CSV writes it, to compare the two formats cell by cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def _same(cell, text: str) -> bool:
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return Decimal(str(cell)) == Decimal(text)
    return _text(cell) == text


def test_xlsx_has_a_summary_and_an_items_sheet_with_typed_formatted_cells(warehouse, tmp_path):
    output = tmp_path / "finance" / "november.xlsx"
    output.parent.mkdir()
    done = report(warehouse, *NOVEMBER, "--format", "xlsx", "--output", str(output), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert list(output.parent.iterdir()) == [output]

    book = load_workbook(output)
    assert book.sheetnames == ["Summary", "Items"]
    for name, expected in (("Summary", SUMMARY_CSV), ("Items", ITEMS_CSV)):
        sheet = book[name]
        rows = list(csv.reader(io.StringIO(expected)))
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(rows[0])).column_letter}{len(rows)}"
        assert all(cell.font.b for cell in sheet[1])
        assert [c.value for c in sheet[1]] == rows[0]
        assert sheet.max_row == len(rows)
        for got, want in zip(sheet.iter_rows(min_row=2), rows[1:], strict=True):
            assert all(_same(c.value, w) for c, w in zip(got, want, strict=True)), (
                [c.value for c in got],
                want,
            )

    items = book["Items"]
    header = [c.value for c in items[1]]
    by_currency = {row[header.index("currency")].value: row for row in items.iter_rows(min_row=2)}
    gross = header.index("expected_gross")
    assert by_currency["JPY"][gross].number_format == "#,##0"
    assert by_currency["BHD"][gross].number_format == "#,##0.000"
    assert by_currency["EUR"][gross].number_format == "#,##0.00"
    assert isinstance(by_currency["BHD"][gross].value, float)  # a number, not text
    occurred = by_currency["GBP"][header.index("occurred_at_utc")]
    assert occurred.value == datetime(2026, 11, 30, 23, 59, 59)  # whole seconds: still 30 Nov
    assert occurred.number_format == "yyyy-mm-dd hh:mm:ss"
    assert by_currency["GBP"][header.index("expected_net")].value is None  # no internal record
    summary = book["Summary"]
    assert [c.number_format for c in summary[2][3:]] == ["#,##0.000"] * 3  # BHD
    assert book.properties.title == "Reconciliation 2026-11-01 to 2026-11-30"


NOT_A_DATE = "not a date in the form YYYY-MM-DD"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "argument --format: invalid choice: 'pdf'"),
        (["--from", "2026-12-01", "--to", "2026-11-01"], "2026-12-01 is after --to 2026-11-01"),
        (["--from", "2026-02-30", "--to", "2026-03-01"], f"{NOT_A_DATE}: '2026-02-30'"),
        (["--from", "1/11/2026", "--to", "2026-11-30"], f"{NOT_A_DATE}: '1/11/2026'"),
        (["--from", "20261101", "--to", "2026-11-30"], f"{NOT_A_DATE}: '20261101'"),
        (["--from", "2026-11-01"], "the following arguments are required: --to"),
        ([*NOVEMBER, "--output", "r.xlsx", "--format", "csv"], "a .xlsx file but --format is csv"),
        ([*NOVEMBER, "--format", "xlsx", "--summary"], "--summary is for csv"),
        ([*NOVEMBER, "--output", "r.csv", "--summary", "r.csv"], "a file of its own"),
        ([*NOVEMBER, "--output", "missing/r.csv"], "the folder missing does not exist"),
    ],
)
def test_bad_input_is_refused_with_a_usage_message_and_writes_nothing(
    warehouse, tmp_path, args, message
):
    done = report(warehouse, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "usage: ticketflow report reconciliation" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_warehouse_or_a_missing_mart_is_said_and_nothing_is_written(
    warehouse, tmp_path
):
    nobody = f"http://127.0.0.1:{free_port()}"
    done = report(warehouse, *NOVEMBER, "--summary", cwd=tmp_path, CLICKHOUSE_URL=nobody)
    assert done.returncode == 1
    assert f"error: the warehouse at {nobody} does not answer" in done.stderr
    assert "nothing was written" in done.stderr and "Traceback" not in done.stderr

    client = clickhouse_connect.get_client(dsn=warehouse.effective_clickhouse_url)
    client.command("RENAME TABLE marts.rpt_reconciliation TO marts.rpt_reconciliation_aside")
    try:
        done = report(warehouse, *NOVEMBER, "--format", "xlsx", cwd=tmp_path)
    finally:
        client.command("RENAME TABLE marts.rpt_reconciliation_aside TO marts.rpt_reconciliation")
    assert done.returncode == 1
    assert "marts.rpt_reconciliation does not exist yet" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []

    # A row whose currency is no ISO 4217 code cannot be put in major units: said, not a crash.
    odd = {**ROWS[0], "currency": "EURO", "occurred_at": datetime(2030, 1, 1, tzinfo=UTC)}
    client.insert("marts.rpt_reconciliation", [list(odd.values())], column_names=list(odd))
    try:
        done = report(warehouse, "--from", "2030-01-01", "--to", "2030-01-01", cwd=tmp_path)
    finally:
        client.command("DELETE FROM marts.rpt_reconciliation WHERE currency = 'EURO'")
    assert done.returncode == 1
    assert "not an ISO 4217 currency code: 'EURO'" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
