"""Stripe ingestion against the embedded processor and warehouse: the raw tables hold what the
stripe SDK lists, a run again changes nothing, and the next run brings what is new."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import stripe
from clickhouse_connect.driver.client import Client

from pipelines.stripe_ingest import ingest as stripe_ingest
from pipelines.stripe_ingest import ingest_stripe, stripe_client
from ticketflow.embedded.payments.fake_stripe import DISPUTE_FEE, card_fee
from ticketflow.settings import Settings

KINDS = ("balance_transactions", "charges", "refunds", "disputes", "payouts")


def _pay(
    client: stripe.StripeClient, amount: int, currency: str, order_id: int, card="pm_card_visa"
):
    """A payment whose metadata names no TicketFlow order: the session's processor may still
    send its webhooks to a live API (tests/api), which would claim a payment naming one of its
    orders and refund it in full if that order can no longer be paid (a lapsed hold), moving
    this test's balances between its payouts. The API takes only digits as an order id."""
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "payment_method": card,
            "confirm": True,
            "metadata": {"ticketflow_order_id": f"ingest-{order_id}"},
        }
    )


def _refund(client: stripe.StripeClient, intent, amount: int):
    return client.v1.refunds.create(params={"payment_intent": intent.id, "amount": amount})


def _run_payouts(settings: Settings) -> list[dict]:
    response = httpx.post(f"{settings.stripe_api_base}/_config/payouts/run")
    assert response.status_code == 200
    return response.json()["data"]


def _eventually(check: Callable[[], object], timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def _listed(client: stripe.StripeClient, kind: str, **params) -> dict[str, dict]:
    """What the SDK lists, every page, by id."""
    listing = getattr(client.v1, kind).list(params={"limit": 100, **params})
    return {obj.id: obj.to_dict() for obj in listing.auto_paging_iter()}


def _rows(ch: Client, database: str, kind: str) -> dict[str, dict]:
    result = ch.query(f"SELECT * FROM `{database}`.`stripe_{kind}` FINAL")
    return {row[0]: dict(zip(result.column_names, row, strict=True)) for row in result.result_rows}


def _epoch(moment: datetime) -> int:
    """Seconds since 1970 of a ClickHouse UTC time (clickhouse-connect gives it naive)."""
    return int(moment.replace(tzinfo=UTC).timestamp())


def _ref(value):
    return value["id"] if isinstance(value, dict) else value


# The typed columns each table must hold for a Stripe object, written out here independently.
_COLUMNS: dict[str, Callable[[dict], dict]] = {
    "balance_transactions": lambda o: {
        "type": o["type"],
        "reporting_category": o["reporting_category"],
        "source": o["source"],
        "amount": o["amount"],
        "fee": o["fee"],
        "net": o["net"],
        "currency": o["currency"].upper(),
        "fee_details": [
            (f["type"], f["amount"], f["currency"].upper(), f["description"])
            for f in o["fee_details"]
        ],
        "status": o["status"],
        "available_on": o["available_on"],
        "created": o["created"],
        "exchange_rate": o["exchange_rate"],
    },
    "charges": lambda o: {
        "payment_intent": o["payment_intent"],
        "amount": o["amount"],
        "amount_refunded": o["amount_refunded"],
        "currency": o["currency"].upper(),
        "status": o["status"],
        "balance_transaction": o["balance_transaction"],
        "disputed": o["disputed"],
        "created": o["created"],
        "metadata_order_id": o["metadata"].get("ticketflow_order_id"),
    },
    "refunds": lambda o: {
        "charge": o["charge"],
        "payment_intent": o["payment_intent"],
        "amount": o["amount"],
        "currency": o["currency"].upper(),
        "status": o["status"],
        "balance_transaction": o["balance_transaction"],
        "created": o["created"],
    },
    "disputes": lambda o: {
        "charge": o["charge"],
        "payment_intent": o["payment_intent"],
        "amount": o["amount"],
        "currency": o["currency"].upper(),
        "status": o["status"],
        "reason": o["reason"],
        "created": o["created"],
        "balance_transaction_ids": [t["id"] for t in o["balance_transactions"]],
    },
    "payouts": lambda o: {
        "amount": o["amount"],
        "currency": o["currency"].upper(),
        "status": o["status"],
        "automatic": o["automatic"],
        "reconciliation_status": o["reconciliation_status"],
        "arrival_date": o["arrival_date"],
        "created": o["created"],
        "balance_transaction": _ref(o["balance_transaction"]),
    },
}


def _as_listed(row: dict, columns: dict) -> dict:
    """The row's values for these columns, times as epoch seconds and tuples as tuples."""
    values = {}
    for name in columns:
        value = row[name]
        if isinstance(value, datetime):
            value = _epoch(value)
        elif name == "fee_details":
            value = [tuple(fee.values()) for fee in value]
        values[name] = value
    return values


def _assert_mirrors_stripe(client: stripe.StripeClient, ch: Client, database: str) -> None:
    """Each table holds one row per object the SDK lists, with the object's values."""
    for kind in KINDS:
        listed, rows = _listed(client, kind), _rows(ch, database, kind)
        assert rows.keys() == listed.keys(), kind
        for obj_id, obj in listed.items():
            expected = _COLUMNS[kind](obj)
            assert _as_listed(rows[obj_id], expected) == expected, obj_id
            assert json.loads(rows[obj_id]["_raw"]) == obj, obj_id
    # Payout links: what Stripe lists for each automatic payout, on both sides.
    txns = _rows(ch, database, "balance_transactions")
    linked = {}
    for payout_id, row in _rows(ch, database, "payouts").items():
        settled = []
        if row["automatic"]:
            settled = list(_listed(client, "balance_transactions", payout=payout_id))
        assert sorted(row["balance_transaction_ids"]) == sorted(settled), payout_id
        linked.update(dict.fromkeys(settled, payout_id))
    assert {txn_id: row["payout"] for txn_id, row in txns.items()} == {
        txn_id: linked.get(txn_id) for txn_id in txns
    }


def _counts(ch: Client, database: str) -> dict[str, tuple[int, int, int]]:
    """Per table: rows FINAL, distinct ids, rows as stored (the overlap read again included)."""
    counts = {}
    for kind in KINDS:
        table = f"`{database}`.`stripe_{kind}`"
        final = ch.command(f"SELECT count() FROM {table} FINAL")
        distinct, stored = ch.query(f"SELECT uniqExact(id), count() FROM {table}").result_rows[0]
        counts[kind] = (final, distinct, stored)
    return counts


@pytest.fixture
def database(ch: Client):
    name = f"stripe_{uuid.uuid4().hex[:12]}"
    yield name
    ch.command(f"DROP DATABASE IF EXISTS `{name}`")


def test_ingest_mirrors_stripe_then_adds_only_what_is_new(
    payments: Settings, warehouse: Settings, ch: Client, database: str, monkeypatch
):
    client = stripe_client(payments)
    _run_payouts(payments)  # what earlier tests left available goes in a payout of its own

    eur = [_pay(client, amount, "eur", n) for n, amount in enumerate((40_000, 25_000, 30_000))]
    gbp = [_pay(client, amount, "gbp", 10 + n) for n, amount in enumerate((12_000, 8_000))]
    refunds = [_refund(client, eur[0], 5_000), _refund(client, gbp[1], 2_500)]
    disputed = _pay(client, 6_000, "eur", 20, card="pm_card_createDispute")
    _eventually(lambda: client.v1.disputes.list(params={"charge": disputed.latest_charge.id}).data)
    first_payouts = {p["currency"]: p for p in _run_payouts(payments)}
    assert {"eur", "gbp"} <= first_payouts.keys()
    late = _pay(client, 7_000, "eur", 30)  # after the payout: not paid out yet
    time.sleep(1.1)
    newest = _pay(client, 3_000, "gbp", 31)  # a second later: `late` is older than the cursor

    first = ingest_stripe(client, ch, database=database)
    _assert_mirrors_stripe(client, ch, database)
    txns = _rows(ch, database, "balance_transactions")
    charges = _rows(ch, database, "charges")
    for intent in (*eur, *gbp):
        charge = charges[intent.latest_charge.id]
        txn = txns[charge["balance_transaction"]]
        assert (txn["type"], txn["reporting_category"]) == ("charge", "charge")
        assert (txn["fee"], txn["net"]) == (card_fee(intent.amount), intent.amount - txn["fee"])
        assert txn["payout"] == first_payouts[intent.currency]["id"]
        assert charge["metadata_order_id"] == intent.metadata["ticketflow_order_id"]
    assert charges[eur[0].latest_charge.id]["amount_refunded"] == 5_000
    for refund in refunds:
        row = _rows(ch, database, "refunds")[refund.id]
        assert (row["amount"], row["balance_transaction"]) == (
            refund.amount,
            refund.balance_transaction,
        )
        assert txns[refund.balance_transaction]["amount"] == -refund.amount
    [dispute] = [
        d
        for d in _rows(ch, database, "disputes").values()
        if d["charge"] == disputed.latest_charge.id
    ]
    [withdrawal] = dispute["balance_transaction_ids"]
    assert (txns[withdrawal]["reporting_category"], txns[withdrawal]["fee"]) == (
        "dispute",
        DISPUTE_FEE,
    )
    assert charges[disputed.latest_charge.id]["disputed"] is True
    late_txn = charges[late.latest_charge.id]["balance_transaction"]
    assert txns[late_txn]["payout"] is None
    assert first["balance_transactions"].cursor.timestamp() == max(
        obj["created"] for obj in _listed(client, "balance_transactions").values()
    )

    # Again at once: the 5-minute overlap is read again and replaces, never adds.
    before = _counts(ch, database)
    again = ingest_stripe(client, ch, database=database)
    after = _counts(ch, database)
    for kind in KINDS:
        assert after[kind][:2] == before[kind][:2], kind  # FINAL rows, distinct ids
        assert after[kind][0] == after[kind][1], kind  # no id twice
        assert again[kind].cursor == first[kind].cursor
    assert after["charges"][2] > before["charges"][2]  # it did read them again

    # New objects, and a payout that settles `late`, which is now older than the cursor:
    # without an overlap, only the payout can bring it back, with its link.
    monkeypatch.setattr(stripe_ingest, "OVERLAP", timedelta(0))
    time.sleep(1.1)
    added = _pay(client, 9_000, "gbp", 40)
    added_refund = _refund(client, added, 1_000)
    second_payouts = {p["currency"]: p for p in _run_payouts(payments)}
    second = ingest_stripe(client, ch, database=database)

    _assert_mirrors_stripe(client, ch, database)
    txns = _rows(ch, database, "balance_transactions")
    assert txns[late_txn]["payout"] == second_payouts["eur"]["id"]
    assert txns[added.latest_charge.balance_transaction]["payout"] == second_payouts["gbp"]["id"]
    newest_txn = client.v1.charges.retrieve(newest.latest_charge.id).balance_transaction
    assert txns[newest_txn]["payout"] == second_payouts["gbp"]["id"]
    assert added_refund.id in _rows(ch, database, "refunds")
    for kind in ("balance_transactions", "charges", "refunds", "payouts"):
        assert second[kind].cursor > first[kind].cursor, kind
    assert second["disputes"].cursor == first["disputes"].cursor
    final = _counts(ch, database)
    assert all(final[kind][0] == final[kind][1] for kind in KINDS)


def test_every_batch_is_stamped_later_than_the_one_before(
    payments: Settings, ch: Client, database: str, monkeypatch
):
    """A marts build that reads the tables between two batches of a run (a refund's balance
    transaction written, the refund not yet) must see the later batch as news: stamps rise
    from batch to batch, in the order written (transactions, charges, refunds, disputes,
    payouts)."""
    client = stripe_client(payments)
    paid = [_pay(client, 5_000 + n, "eur", 40 + n) for n in range(3)]
    _refund(client, paid[0], 1_000)
    _refund(client, paid[1], 2_000)
    # One row per batch (the real ingestion, with its batch size lowered): a run of a few
    # objects then has as many batches as rows, and their stamps can be compared.
    monkeypatch.setattr(stripe_ingest, "BATCH_ROWS", 1)

    ingest_stripe(client, ch, database=database)
    stamps = []
    for kind in KINDS:
        rows = ch.query(
            f"SELECT _ingested_at FROM `{database}`.`stripe_{kind}` ORDER BY _ingested_at"
        ).result_rows
        stamps += [stamp for (stamp,) in rows]
    assert len(stamps) >= 12  # 5 transactions, 3 charges, 2 refunds at least
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
