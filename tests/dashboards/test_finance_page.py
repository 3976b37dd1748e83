"""The finance dashboard in a real browser (Chromium through Playwright) against real services:
PostgreSQL, the warehouse, the API and the dashboards as `ticketflow up` starts them.

An attendee signs in and is refused; a finance user signs in, picks a period, sees the summary
of the known rows in `marts.rpt_reconciliation` (only those dated in the period), narrows it by
currency, and downloads the CSV and the XLSX, which must be what the export module (and so
`ticketflow report reconciliation`) makes for that period.
"""

from __future__ import annotations

import io
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime

import clickhouse_connect
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.db import engine_for, unit_of_work
from api.models import Role
from api.services.accounts import sign_up
from dashboards.exports import reconciliation
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

pytestmark = pytest.mark.slow

PASSWORD = "long enough password"
FINANCE = "finance@example.com"
ATTENDEE = "attendee@example.com"
PERIOD = reconciliation.Period(date(2026, 3, 2), date(2026, 3, 4))
# Chromium from the system (`make browser` installs it); Playwright's own download is not used.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

# The mart's columns and types as `dbt build` makes them (DESCRIBE marts.rpt_reconciliation
# after building dbt_project/models/marts/finance/rpt_reconciliation.sql, 2026-12-06).
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


BUILT_AT = datetime(2026, 3, 5, 6, 0, 12, tzinfo=UTC)  # the mart's last build


def _item(status, item_type, at, currency, internal_id, processor, expected, actual):
    """A mart row as the model computes it: `expected` and `actual` are (gross, fee) in minor
    units, or None for the side with no record (where the mart holds zeros and '')."""
    object_id, transaction_id, payout_id = processor
    expected_gross, expected_fee = expected or (0, 0)
    actual_gross, actual_fee = actual or (0, 0)
    expected_net, actual_net = expected_gross - expected_fee, actual_gross - actual_fee
    return {
        "item_type": item_type,
        "internal_id": internal_id,
        "order_id": internal_id and 100 + internal_id,
        "event_id": internal_id and 7,
        "processor_object_id": object_id,
        "balance_transaction_id": transaction_id,
        "payout_id": payout_id,
        "reporting_category": item_type.replace("payment", "charge") if actual else "",
        "currency": currency,
        "expected_gross_minor": expected_gross,
        "actual_gross_minor": actual_gross,
        "expected_fee_minor": expected_fee,
        "actual_fee_minor": actual_fee,
        "expected_net_minor": expected_net,
        "actual_net_minor": actual_net,
        "disputed": status == "disputed",
        "found_at_processor": int(actual is not None),
        "occurred_at": datetime.fromisoformat(at).replace(tzinfo=UTC),
        "variance_minor": actual_net - expected_net,
        "status": status,
        "built_at": BUILT_AT,
    }


ITEMS = [
    # Outside the period, by a microsecond on each side.
    _item("matched", "payment", "2026-03-01 23:59:59.999999", "EUR", 1,
          ("ch_1", "txn_1", "po_1"), (1000, 59), (1000, 59)),
    _item("disputed", "payment", "2026-03-05 00:00:00", "EUR", 2,
          ("ch_2", "txn_2", "po_2"), (7000, 233), (7000, 233)),
    # In the period.
    _item("matched", "payment", "2026-03-02 10:00:00", "EUR", 3,
          ("ch_3", "txn_3", "po_1"), (9000, 291), (9000, 291)),
    _item("amount_mismatch", "payment", "2026-03-03 11:00:00", "EUR", 4,
          ("ch_4", "txn_4", ""), (4500, 161), (4500, 186)),
    _item("matched", "refund", "2026-03-03 12:30:00", "EUR", 5,
          ("re_5", "txn_5", "po_1"), (-4500, 0), (-4500, 0)),
    _item("matched", "payment", "2026-03-03 08:00:00", "JPY", 6,
          ("ch_6", "txn_6", "po_3"), (5000, 175), (5000, 175)),
    _item("missing_at_processor", "payment", "2026-03-04 09:15:00", "GBP", 7,
          ("ch_7", "", None), (120000, 3510), None),
    _item("missing_internally", "payment", "2026-03-04 18:00:00", "EUR", 0,
          ("ch_8", "txn_8", "po_2"), None, (2000, 88)),
    _item("pending_payout", "payment", "2026-03-04 23:59:59.999999", "GBP", 9,
          ("ch_9", "txn_9", ""), (5000, 175), (5000, 175)),
]  # fmt: skip

# The summary for PERIOD, worked out by hand: status, currency, items, expected net, actual
# net, variance (currencies A-Z, statuses in the report's order; JPY has no decimals).
SUMMARY = [
    ["matched", "EUR", "2", "42.09", "42.09", "0.00"],
    ["amount_mismatch", "EUR", "1", "43.39", "43.14", "-0.25"],
    ["missing_internally", "EUR", "1", "0.00", "19.12", "19.12"],
    ["pending_payout", "GBP", "1", "48.25", "48.25", "0.00"],
    ["missing_at_processor", "GBP", "1", "1,164.90", "0.00", "-1,164.90"],
    ["matched", "JPY", "1", "4,825", "4,825", "0"],
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Settings]:
    settings = isolated_settings(tmp_path_factory.mktemp("dashboards"))
    names = ("postgres", "warehouse", "api", "dashboards")
    with run_services(settings, [service_named(settings, name) for name in names]):
        api = f"http://127.0.0.1:{settings.api_port}"
        signup = {"email": ATTENDEE, "password": PASSWORD, "full_name": "Ann Attendee"}
        httpx.post(f"{api}/auth/signup", json=signup).raise_for_status()
        # Finance accounts are made by an operator (`ticketflow users add --role finance`).
        with unit_of_work(engine_for(settings.sqlalchemy_url)) as session:
            sign_up(session, email=FINANCE, password=PASSWORD, full_name="Fin", role=Role.FINANCE)
        yield settings


@pytest.fixture(scope="module")
def warehouse(platform: Settings):
    client = clickhouse_connect.get_client(dsn=platform.effective_clickhouse_url)
    client.command("CREATE DATABASE IF NOT EXISTS marts")
    client.command(MART)
    client.insert(
        "marts.rpt_reconciliation",
        [list(item.values()) for item in ITEMS],
        column_names=list(ITEMS[0]),
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is not installed: `make browser` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, platform: Settings) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"http://127.0.0.1:{platform.dashboards_port}")
    yield page
    context.close()


def _sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_role("textbox", name="E-mail").fill(email)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _choose_period(page: Page, period: reconciliation.Period) -> None:
    """Type both days into the range field, as a person would, then leave the field."""
    for end, day in (("start", period.first_day), ("end", period.last_day)):
        page.get_by_role("spinbutton", name=f"year, Period (UTC) {end} date").click()
        page.keyboard.type(day.strftime("%Y%m%d"))
    page.keyboard.press("Escape")  # closes the calendar; leaving the field commits the range
    page.get_by_role("heading", name="Reconciliation").click()


def _eventually(read: Callable[[], object], expected: object, timeout_s: float = 20) -> None:
    """Streamlit redraws after each rerun: wait until `read()` gives `expected`."""
    deadline = time.monotonic() + timeout_s
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert value == expected


def _summary(page: Page) -> list[list[str]]:
    return (
        page.get_by_test_id("stTable")
        .locator("tbody tr")
        .evaluate_all(
            "rows => rows.map(row => Array.from(row.cells, cell => cell.innerText.trim()))"
        )
    )


def _metrics(page: Page) -> list[str]:
    return page.get_by_test_id("stMetricValue").all_inner_texts()


def _download(page: Page, fmt: str) -> tuple[str, bytes]:
    with page.expect_download() as started:
        page.get_by_role("button", name=f"Download {fmt.upper()} ({PERIOD})").click()
    download = started.value
    return download.suggested_filename, download.path().read_bytes()


def _xlsx_without_timestamps(data: bytes) -> dict[str, bytes]:
    """Every part of the workbook, with the moment it was written taken out: openpyxl stamps
    it into docProps/core.xml (and the zip entries), so two exports differ in it alone."""
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    parts["docProps/core.xml"] = re.sub(
        rb"<dcterms:(created|modified)[^>]*>[^<]*</dcterms:\1>", b"", parts["docProps/core.xml"]
    )
    return parts


def test_an_attendee_is_refused(page: Page, warehouse):
    _sign_in(page, ATTENDEE, "not the password")
    expect(page.get_by_text("Wrong e-mail or password.")).to_be_visible()

    _sign_in(page, ATTENDEE)
    expect(page.get_by_text("There is no dashboard for your role (attendee)")).to_be_visible()
    expect(page.get_by_text("finance and admin accounts")).to_be_visible()
    expect(page.get_by_role("heading", name="Reconciliation")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Download"))).to_have_count(0)


def test_finance_sees_the_period_and_downloads_what_the_export_makes(page: Page, warehouse):
    _sign_in(page, FINANCE)
    expect(page.get_by_role("heading", name="Reconciliation")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {FINANCE} (finance)")).to_be_visible()
    expect(page.get_by_text("Data as of 2026-03-05 06:00 UTC")).to_be_visible()

    _choose_period(page, PERIOD)
    _eventually(lambda: _summary(page), SUMMARY)
    # items, matched, to look at (not the one waiting for its payout)
    _eventually(lambda: _metrics(page), ["7", "3", "3"])

    page.get_by_label("Remove EUR", exact=True).first.click()  # the currency filter
    _eventually(lambda: _summary(page), [row for row in SUMMARY if row[1] != "EUR"])
    _eventually(lambda: _metrics(page), ["3", "1", "1"])  # the GBP payout is still to come

    # The downloads are the whole period, whatever the filters show.
    expected = {
        fmt: reconciliation.export(warehouse, PERIOD, fmt).report for fmt in ("csv", "xlsx")
    }
    name, csv_file = _download(page, "csv")
    assert name == "reconciliation_2026-03-02_2026-03-04.csv"
    assert csv_file == expected["csv"]
    assert csv_file.count(b"\r\n") == 1 + 7  # the header and the period's items
    name, xlsx_file = _download(page, "xlsx")
    assert name == "reconciliation_2026-03-02_2026-03-04.xlsx"
    assert _xlsx_without_timestamps(xlsx_file) == _xlsx_without_timestamps(expected["xlsx"])


def test_the_dashboards_service_is_private_and_quiet(platform: Settings):
    service = service_named(platform, "dashboards")
    options = dict(zip(service.argv[5::2], service.argv[6::2], strict=True))
    assert service.argv[1:4] == ["-m", "streamlit", "run"]
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == str(platform.dashboards_port)
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert service.port_setting == "TICKETFLOW_DASHBOARDS_PORT"
    assert httpx.get(f"{service.url}/_stcore/health").text == "ok"
