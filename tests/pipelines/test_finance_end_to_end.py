"""Orders, payments, partial refunds and a dispute through the API -> CDC -> processor
ingestion -> `dbt build` all green -> the reconciliation lists every payment as it should,
and injected mismatches show up with the right status and variance."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import psycopg
import pytest

from pipelines.cdc.__main__ import sync as cdc_sync
from pipelines.orchestration import checks
from pipelines.orchestration.warehouse_env import dbt_environment
from pipelines.stripe_ingest.ingest import ingest_from_settings
from tests.api.organizing import publish_event
from ticketflow.embedded.payments import PAYOUTS_RUN_PATH
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "long enough password"


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Settings]:
    settings = isolated_settings(tmp_path_factory.mktemp("finance"))
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


def _buy(buyer: httpx.Client, event_id: int, tier: int, quantity: int, card: str) -> dict:
    order = buyer.post(
        "/orders",
        json={"event_id": event_id, "items": [{"ticket_type_id": tier, "quantity": quantity}]},
    )
    order.raise_for_status()
    paid = buyer.post(f"/orders/{order.json()['id']}/payments", json={"payment_method": card})
    paid.raise_for_status()
    return {**order.json(), **paid.json()}


def _dbt_build(settings: Settings) -> subprocess.CompletedProcess:
    dbt = Path(sys.executable).with_name("dbt")
    project = str(ROOT / "dbt_project")
    return subprocess.run(
        [str(dbt), "build", "--project-dir", project, "--profiles-dir", project],
        env={**os.environ, **dbt_environment(settings)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _reconciliation(ch) -> dict[tuple[str, str], dict]:
    result = ch.query(
        "SELECT item_type, processor_object_id, status, variance_minor, expected_fee_minor, "
        "actual_fee_minor, reporting_category FROM marts.rpt_reconciliation"
    )
    return {
        (row[0], row[1]): dict(zip(result.column_names, row, strict=True))
        for row in result.result_rows
    }


def test_the_books_reconcile_and_mismatches_are_caught(platform: Settings):
    api = f"http://127.0.0.1:{platform.api_port}"
    organizer = _user(api, "organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (4_500, 100), "VIP": (12_000, 20)})
    ann, bob = _user(api, "ann"), _user(api, "bob")
    orders = [
        _buy(ann, event_id, tiers["GA"], 2, "pm_card_visa"),
        _buy(bob, event_id, tiers["VIP"], 1, "pm_card_visa"),
        _buy(ann, event_id, tiers["GA"], 1, "pm_card_visa"),
        _buy(bob, event_id, tiers["GA"], 3, "pm_card_createDispute"),
    ]
    refund = organizer.post(f"/orders/{orders[0]['id']}/refunds", json={"amount_minor": 4_500})
    refund.raise_for_status()
    processor = platform.stripe_api_base
    time.sleep(2.5)  # the dispute opens, and its webhook arrives, about a second later
    httpx.post(f"{processor}{PAYOUTS_RUN_PATH}").raise_for_status()

    cdc_sync(platform)
    ingest_from_settings(platform)
    build = _dbt_build(platform)
    assert build.returncode == 0, build.stdout[-4000:]
    ch = clickhouse_connect.get_client(dsn=platform.effective_clickhouse_url)
    rows = _reconciliation(ch)
    by_status = {key: row["status"] for key, row in rows.items()}
    disputed_charge = next(
        key for key, row in rows.items() if key[0] == "payment" and row["status"] == "disputed"
    )
    assert list(by_status.values()).count("matched") == 4  # 3 payments and the refund
    assert by_status[disputed_charge] == "disputed" and len(rows) == 5
    assert checks.books_balance(platform).passed

    # Inject two mismatches: the processor charged a fee we did not agree to, and a refund we
    # recorded never reached the processor.
    paid_charge = next(
        key[1] for key, row in rows.items() if key[0] == "payment" and row["status"] == "matched"
    )
    fee = rows[("payment", paid_charge)]["actual_fee_minor"]
    ch.command(
        "INSERT INTO raw.stripe_balance_transactions SELECT * REPLACE (fee + 25 AS fee, "
        "net - 25 AS net, now64(6) AS _ingested_at) FROM raw.stripe_balance_transactions FINAL "
        "WHERE source = {charge:String}",
        parameters={"charge": paid_charge},
    )
    with psycopg.connect(platform.effective_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO refunds (order_id, payment_id, amount_minor, currency, reason, status, "
            "provider_refund_id, created_at) SELECT order_id, id, 1000, currency, 'injected', "
            "'succeeded', 're_never_sent', now() FROM payments WHERE order_id = %s",
            (orders[2]["id"],),
        )
    cdc_sync(platform)
    build = _dbt_build(platform)
    assert build.returncode == 0, build.stdout[-4000:]
    rows = _reconciliation(ch)
    mismatch = rows[("payment", paid_charge)]
    assert (mismatch["status"], mismatch["variance_minor"]) == ("amount_mismatch", -25)
    assert (mismatch["actual_fee_minor"], mismatch["expected_fee_minor"]) == (fee + 25, fee)
    missing = rows[("refund", "re_never_sent")]
    assert (missing["status"], missing["variance_minor"]) == ("missing_at_processor", 1_000)
