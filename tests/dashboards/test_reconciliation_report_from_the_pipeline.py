"""`ticketflow report reconciliation` on the mart the real pipeline builds: purchases and a
refund through the API -> CDC -> the processor's ingestion -> `dbt build` -> the report, which
must say what the mart says, in major units."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from openpyxl import load_workbook

from pipelines.cdc.__main__ import sync as cdc_sync
from pipelines.orchestration.dbt_builds import run_dbt
from pipelines.stripe_ingest.ingest import ingest_from_settings
from tests.api.organizing import publish_event
from ticketflow.embedded.payments import PAYOUTS_RUN_PATH
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

pytestmark = pytest.mark.slow
TICKETFLOW = str(Path(sys.executable).with_name("ticketflow"))
PASSWORD = "long enough password"


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Settings]:
    settings = isolated_settings(tmp_path_factory.mktemp("report_pipeline"))
    names = ("postgres", "warehouse", "payments", "api")
    with run_services(settings, [service_named(settings, n) for n in names]):
        yield settings


def _user(api: str, name: str) -> httpx.Client:
    email = f"{name}@example.com"
    with httpx.Client(base_url=api) as anonymous:
        anonymous.post(
            "/auth/signup", json={"email": email, "password": PASSWORD, "full_name": name}
        ).raise_for_status()
        token = anonymous.post("/auth/login", json={"email": email, "password": PASSWORD})
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return httpx.Client(base_url=api, headers=headers, timeout=30)


def _buy(buyer: httpx.Client, event_id: int, tier: int, quantity: int) -> int:
    order = buyer.post(
        "/orders",
        json={"event_id": event_id, "items": [{"ticket_type_id": tier, "quantity": quantity}]},
    )
    order.raise_for_status()
    paid = buyer.post(
        f"/orders/{order.json()['id']}/payments", json={"payment_method": "pm_card_visa"}
    )
    paid.raise_for_status()
    return order.json()["id"]


def _build_reconciliation(settings: Settings, work: Path) -> None:
    """The mart and what it stands on, with a dbt target folder of this test's own."""
    build = run_dbt(
        settings,
        work,
        "build",
        "--select",
        "+rpt_reconciliation",
        "--indirect-selection",
        "cautious",  # leave out tests that also need models outside the selection
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-4000:]


def _major(minor: int) -> str:
    return str(Decimal(minor).scaleb(-2))  # EUR


def test_the_report_says_what_the_mart_says(platform: Settings, tmp_path):
    api = f"http://127.0.0.1:{platform.api_port}"
    organizer = _user(api, "organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (4_500, 100), "VIP": (12_000, 20)})
    ann, bob = _user(api, "ann"), _user(api, "bob")
    refunded = _buy(ann, event_id, tiers["GA"], 2)
    _buy(bob, event_id, tiers["VIP"], 1)
    organizer.post(f"/orders/{refunded}/refunds", json={"amount_minor": 4_500}).raise_for_status()
    httpx.post(f"{platform.stripe_api_base}{PAYOUTS_RUN_PATH}").raise_for_status()
    cdc_sync(platform)
    ingest_from_settings(platform)
    _build_reconciliation(platform, tmp_path)

    ch = clickhouse_connect.get_client(dsn=platform.effective_clickhouse_url)
    mart = ch.query(
        "SELECT processor_object_id, status, expected_gross_minor, actual_fee_minor, "
        "variance_minor FROM marts.rpt_reconciliation"
    ).named_results()
    mart = {row["processor_object_id"]: row for row in mart}
    assert len(mart) == 3  # two payments and the refund

    today = datetime.now(UTC).date()  # a day either side: the test may straddle midnight
    period = ["--from", f"{today - timedelta(days=1)}", "--to", f"{today + timedelta(days=1)}"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TICKETFLOW_")},
        "CLICKHOUSE_URL": platform.effective_clickhouse_url,
    }
    for fmt in ("csv", "xlsx"):
        done = subprocess.run(
            [TICKETFLOW, "report", "reconciliation", *period, "--format", fmt, "--output",
             str(tmp_path / f"report.{fmt}"), *(["--summary"] if fmt == "csv" else [])],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "3 item(s)" in done.stdout

    items = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text())))
    assert {row["processor_object_id"] for row in items} == set(mart)
    for row in items:
        source = mart[row["processor_object_id"]]
        assert row["currency"] == "EUR"
        assert row["status"] == source["status"] == "matched"
        assert row["variance"] == "0.00"
        expected_gross = _major(source["expected_gross_minor"])
        assert row["expected_gross"] == row["actual_gross"] == expected_gross
        assert row["actual_fee"] == _major(source["actual_fee_minor"])
    assert sorted(row["expected_gross"] for row in items) == ["-45.00", "120.00", "90.00"]

    summary = list(csv.reader(io.StringIO((tmp_path / "report_summary.csv").read_text())))
    net = sum(Decimal(row["expected_net"]) for row in items)
    assert summary[1] == ["matched", "EUR", "3", f"{net}", f"{net}", "0.00"]

    book = load_workbook(tmp_path / "report.xlsx")
    assert book.sheetnames == ["Summary", "Items"]
    assert [c.value for c in book["Summary"][2]][:3] == ["matched", "EUR", 3]
    sheet = book["Items"]
    header = [c.value for c in sheet[1]]
    gross = sorted(row[header.index("expected_gross")].value for row in sheet.iter_rows(min_row=2))
    assert gross == [-45, 90, 120]
