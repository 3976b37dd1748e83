"""Orders, payments, partial refunds and a dispute through the API -> CDC -> processor
ingestion -> `dbt build` all green -> the reconciliation lists every payment as it should,
every settled transaction appears under its payout with the balance rolled forward, and
injected mismatches show up with the right status and variance. The second build is the
frequent incremental one (Dagster's `sales_marts` job), and what it leaves equals a full
refresh."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import psycopg
import pytest

from pipelines.cdc.__main__ import sync as cdc_sync
from pipelines.orchestration import checks
from pipelines.orchestration.dbt_builds import EVERY_ROW, FREQUENT_BUILD_ARGS, NO_UNIT_TESTS
from pipelines.stripe_ingest.ingest import ingest_from_settings
from tests.api.organizing import publish_event
from tests.pipelines.dbt_runs import contents, dbt
from ticketflow.embedded.payments import PAYOUTS_RUN_PATH
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

pytestmark = pytest.mark.slow
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


def _rows(ch, sql: str, key: str, **parameters) -> dict:
    result = ch.query(sql, parameters=parameters)
    rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    return {row[key]: row for row in rows}


def _payouts(ch) -> list[dict]:
    """rpt_payout_reconciliation, payouts in creation order."""
    rows = _rows(ch, "SELECT * FROM marts.rpt_payout_reconciliation", "payout_id")
    return sorted(rows.values(), key=lambda row: (row["created_at"], row["payout_id"]))


def _settled_by(ch, payout_id: str) -> dict[str, tuple]:
    """What the payout settled, its own withdrawal left out: processor object -> (what it
    is, our payment, our refund, our order, net)."""
    rows = _rows(
        ch,
        "SELECT source_id, source_type, payment_id, refund_id, order_id, net_minor "
        "FROM marts.fct_balance_transactions "
        "WHERE payout_id = {payout:String} AND source_id != payout_id",
        "source_id",
        payout=payout_id,
    )
    return {
        source: (
            row["source_type"],
            row["payment_id"],
            row["refund_id"],
            row["order_id"],
            row["net_minor"],
        )
        for source, row in rows.items()
    }


def _ours(database_url: str) -> dict[str, tuple]:
    """Our succeeded payments and refunds by their processor object, as PostgreSQL knows
    them: charge or refund id -> (what it is, payment, refund, order)."""
    with psycopg.connect(database_url) as conn:
        payments = conn.execute(
            "SELECT provider_charge_id, 'charge', id, NULL::bigint, order_id FROM payments "
            "WHERE status = 'succeeded'"
        ).fetchall()
        refunds = conn.execute(
            "SELECT provider_refund_id, 'refund', payment_id, id, order_id FROM refunds "
            "WHERE status = 'succeeded'"
        ).fetchall()
    return {source: tuple(rest) for source, *rest in payments + refunds}


def _without_net(settled: dict[str, tuple]) -> dict[str, tuple]:
    return {source: row[:4] for source, row in settled.items()}


# What the roll-forward and the category breakdown of one payout are checked on.
PAYOUT_FIGURES = (
    "currency",
    "opening_balance_minor",
    "settled_net_minor",
    "amount_minor",
    "closing_balance_minor",
    "settled_count",
    "listed_count",
    "charge_count",
    "charge_net_minor",
    "refund_count",
    "refund_net_minor",
    "dispute_count",
    "dispute_net_minor",
    "other_count",
    "ticketflow_count",
    "settlement_status",
)


def _figures(payout: dict) -> dict:
    return {name: payout[name] for name in PAYOUT_FIGURES}


def _reconciliation(ch) -> dict[tuple[str, str], dict]:
    result = ch.query(
        "SELECT item_type, processor_object_id, status, variance_minor, expected_fee_minor, "
        "actual_fee_minor, reporting_category FROM marts.rpt_reconciliation"
    )
    return {
        (row[0], row[1]): dict(zip(result.column_names, row, strict=True))
        for row in result.result_rows
    }


def test_the_books_reconcile_and_mismatches_are_caught(platform: Settings, tmp_path: Path):
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
    build = dbt(platform, tmp_path, "build")
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

    # One EUR payout swept the balance: every transaction of our payments and refunds is
    # under it with the payment, refund and order it belongs to, and so is the dispute's.
    ours = _ours(platform.effective_database_url)
    (first,) = _payouts(ch)
    settled = _settled_by(ch, first["payout_id"])
    disputes = [row for row in settled.values() if row[0] == "dispute"]
    _, disputed_payment, _, disputed_order = ours[disputed_charge[1]]
    assert disputes == [("dispute", disputed_payment, None, disputed_order, -15_000)]
    assert _without_net({k: v for k, v in settled.items() if v[0] != "dispute"}) == ours
    # Charges of 9,000, 12,000, 4,500 and 13,500 less 2.9 % + 30 each (291, 378, 161, 422),
    # the 4,500 refund, and the 13,500 disputed with its 1,500 fee: 18,248 paid out.
    assert sum(row[4] for row in settled.values()) == first["amount_minor"] == 18_248
    assert _figures(first) == {
        "currency": "EUR",
        "opening_balance_minor": 0,
        "settled_net_minor": 18_248,
        "amount_minor": 18_248,
        "closing_balance_minor": 0,
        "settled_count": 6,
        "listed_count": 6,
        "charge_count": 4,
        "charge_net_minor": 37_748,
        "refund_count": 1,
        "refund_net_minor": -4_500,
        "dispute_count": 1,
        "dispute_net_minor": -15_000,
        "other_count": 0,
        "ticketflow_count": 6,
        "settlement_status": "balanced",
    }

    # Source freshness works against the warehouse front: every table with rows is fresh;
    # check_ins has none yet, which dbt reads as stale, so it only warns.
    freshness = dbt(platform, tmp_path, "source", "freshness")
    assert freshness.returncode == 0, freshness.stdout[-4000:]
    results = json.loads((tmp_path / "target" / "sources.json").read_text())["results"]
    statuses = {result["unique_id"].split(".", 2)[2]: result["status"] for result in results}
    assert statuses.pop("app.check_ins") == "warn"
    assert len(statuses) == 16 and set(statuses.values()) == {"pass"}, statuses

    # A second payout: one more ticket sold and part of an earlier order refunded.
    _buy(ann, event_id, tiers["VIP"], 1, "pm_card_visa")
    organizer.post(
        f"/orders/{orders[1]['id']}/refunds", json={"amount_minor": 2_000}
    ).raise_for_status()
    httpx.post(f"{processor}{PAYOUTS_RUN_PATH}").raise_for_status()
    cdc_sync(platform)
    ingest_from_settings(platform)

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
    build = dbt(platform, tmp_path, *FREQUENT_BUILD_ARGS)
    assert build.returncode == 0, build.stdout[-4000:]
    assert "incremental model" in build.stdout  # the incremental path, not a first build
    rows = _reconciliation(ch)
    mismatch = rows[("payment", paid_charge)]
    assert (mismatch["status"], mismatch["variance_minor"]) == ("amount_mismatch", -25)
    assert (mismatch["actual_fee_minor"], mismatch["expected_fee_minor"]) == (fee + 25, fee)
    missing = rows[("refund", "re_never_sent")]
    assert (missing["status"], missing["variance_minor"]) == ("missing_at_processor", 1_000)

    # The roll-forward: the injected fee leaves the first payout 25 short of what it paid out,
    # and the second opens with that shortfall and, balanced itself, carries it on.
    first_again, second = _payouts(ch)
    assert first_again["payout_id"] == first["payout_id"]
    assert _figures(first_again) == {
        **_figures(first),
        "settled_net_minor": 18_248 - 25,
        "closing_balance_minor": -25,
        "charge_net_minor": 37_748 - 25,
        "settlement_status": "out_of_balance",
    }
    # 12,000 less 378, and the 2,000 refund.
    assert _figures(second) == {
        "currency": "EUR",
        "opening_balance_minor": -25,
        "settled_net_minor": 9_622,
        "amount_minor": 9_622,
        "closing_balance_minor": -25,
        "settled_count": 2,
        "listed_count": 2,
        "charge_count": 1,
        "charge_net_minor": 11_622,
        "refund_count": 1,
        "refund_net_minor": -2_000,
        "dispute_count": 0,
        "dispute_net_minor": 0,
        "other_count": 0,
        "ticketflow_count": 2,
        "settlement_status": "balanced",
    }
    since_first = {
        source: row
        for source, row in _ours(platform.effective_database_url).items()
        if source not in ours and source != "re_never_sent"  # injected, never sent
    }
    assert len(since_first) == 2
    assert _without_net(_settled_by(ch, second["payout_id"])) == since_first

    # The incremental path left what a full refresh computes from scratch, to the row.
    incremental = contents(ch)
    assert len(incremental) == 17 and all(rows for rows, _ in incremental.values())
    rebuilt = dbt(platform, tmp_path, "build", "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-4000:]
    assert contents(ch) == incremental

    # Each build tests the rows it wrote: a duplicate order planted with an earlier build's
    # stamp is not this build's to find, and testing every row (the daily job) finds it.
    ch.command(
        "INSERT INTO marts.fct_orders SELECT * REPLACE (built_at - INTERVAL 1 DAY AS built_at) "
        "FROM marts.fct_orders LIMIT 1"
    )
    scoped = dbt(platform, tmp_path, "test", "--select", "fct_orders")
    assert scoped.returncode == 0, scoped.stdout[-4000:]
    every_row = dbt(platform, tmp_path, "test", "--select", "fct_orders", *EVERY_ROW)
    assert every_row.returncode == 1, every_row.stdout[-4000:]
    assert "FAIL 1 unique_fct_orders_order_id" in every_row.stdout

    # `dbt test` reads the newest build's rows; in a `dbt build`, the tests of a model that ran
    # read what that invocation wrote (its own stamp). Two copies of an order no source holds,
    # stamped later than any build, are the newest rows, and not the next build's.
    for _ in range(2):
        ch.command(
            "INSERT INTO marts.fct_orders SELECT * REPLACE (order_id + 1000000 AS order_id, "
            "toDateTime64('2099-01-01 00:00:00', 6, 'UTC') AS built_at) "
            "FROM marts.fct_orders ORDER BY order_id, built_at LIMIT 1"
        )
    newest = dbt(platform, tmp_path, "test", "--select", "fct_orders")
    assert newest.returncode == 1, newest.stdout[-4000:]
    assert "FAIL 1 unique_fct_orders_order_id" in newest.stdout
    built = dbt(platform, tmp_path, "build", "--select", "fct_orders", *NO_UNIT_TESTS)
    assert built.returncode == 0, built.stdout[-4000:]
    assert "PASS unique_fct_orders_order_id" in built.stdout
