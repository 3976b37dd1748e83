"""Checkout's promises over HTTP: Idempotency-Key replays, payment after a lapsed hold, and
webhooks that arrive late, twice or out of order."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta

import stripe
from sqlalchemy import func, select

from api.db import unit_of_work
from api.models import LedgerEntry, LedgerKind, Order, Payment, Refund, RefundStatus
from api.services import idempotency, refunds
from api.services.access import load_caller
from tests.api.live import wait_for
from tests.api.organizing import publish_event
from tests.api.webhooks import post_webhook, stripe_signature, webhook_event


def _count(api, model, *where) -> int:
    with unit_of_work(api.engine) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def _order_body(event_id: int, tier: int, quantity: int = 1) -> dict:
    return {"event_id": event_id, "items": [{"ticket_type_id": tier, "quantity": quantity}]}


def test_a_retried_order_with_the_same_key_gets_the_first_answer(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    buyer_id, buyer = live_api.user(name="buyer")
    key = {"Idempotency-Key": "checkout-1"}

    first = buyer.post("/orders", json=_order_body(event_id, tiers["GA"], 2), headers=key)
    again = buyer.post("/orders", json=_order_body(event_id, tiers["GA"], 2), headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert _count(live_api, Order, Order.user_id == buyer_id) == 1

    other = buyer.post("/orders", json=_order_body(event_id, tiers["GA"], 3), headers=key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"

    # The same key from another user is a different key.
    _, stranger = live_api.user(name="stranger")
    theirs = stranger.post("/orders", json=_order_body(event_id, tiers["GA"], 2), headers=key)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_concurrent_retries_with_one_key_place_one_order(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    buyer_id, buyer = live_api.user(name="buyer")
    statuses, ids = [], set()

    def attempt() -> None:
        with live_api.client(buyer.headers["Authorization"].split()[1]) as client:
            response = client.post(
                "/orders",
                json=_order_body(event_id, tiers["GA"]),
                headers={"Idempotency-Key": "same-click"},
            )
        statuses.append(response.status_code)
        if response.status_code == 201:
            ids.add(response.json()["id"])

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {201, 409} and 201 in statuses
    assert len(ids) == 1
    assert _count(live_api, Order, Order.user_id == buyer_id) == 1


def test_a_refused_order_stores_no_answer_under_its_key(live_api):
    """The refusal fails the statement sent with the COMMIT: neither an order nor the answer
    under the key commits, so the same key works once tickets are free again."""
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"Last seat": (3_000, 1)})
    _, first = live_api.user(name="first")
    buyer_id, buyer = live_api.user(name="buyer")
    held = first.post("/orders", json=_order_body(event_id, tiers["Last seat"])).json()
    key = {"Idempotency-Key": "late-click"}

    refused = buyer.post("/orders", json=_order_body(event_id, tiers["Last seat"]), headers=key)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "sold_out"
    assert _count(live_api, Order, Order.user_id == buyer_id) == 0
    assert first.post(f"/orders/{held['id']}/cancel").status_code == 200
    again = buyer.post("/orders", json=_order_body(event_id, tiers["Last seat"]), headers=key)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert _count(live_api, Order, Order.user_id == buyer_id) == 1


def test_a_retried_order_gets_its_answer_even_when_its_checks_fail_now(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    _, buyer = live_api.user(name="buyer")
    key = {"Idempotency-Key": "before-the-close"}
    first = buyer.post("/orders", json=_order_body(event_id, tiers["GA"]), headers=key)
    assert first.status_code == 201
    live_api.clock.offset_seconds = 30 * 24 * 3600  # sales have ended
    try:
        again = buyer.post("/orders", json=_order_body(event_id, tiers["GA"]), headers=key)
        late = buyer.post("/orders", json=_order_body(event_id, tiers["GA"]))
    finally:
        live_api.clock.offset_seconds = 0
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert late.status_code == 409 and late.json()["error"]["code"] == "sales_closed"


def test_a_retried_payment_charges_once(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    key = {"Idempotency-Key": "pay-1"}
    body = {"payment_method": "pm_card_visa"}

    first = buyer.post(f"/orders/{order['id']}/payments", json=body, headers=key)
    again = buyer.post(f"/orders/{order['id']}/payments", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert _count(live_api, Payment, Payment.order_id == order["id"]) == 1

    # Without the key, paying a paid order is refused, not charged again.
    twice = buyer.post(f"/orders/{order['id']}/payments", json=body)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "order_not_payable"
    assert _count(live_api, Payment, Payment.order_id == order["id"]) == 1


def _confirm_at_processor(api, provider_payment_id: str) -> None:
    """What a front end does with the client secret: confirm the payment at the processor."""
    client = stripe.StripeClient(
        api.settings.effective_stripe_api_key,
        base_addresses={"api": api.settings.stripe_api_base},
        max_network_retries=0,
    )
    client.v1.payment_intents.confirm(
        provider_payment_id, params={"payment_method": "pm_card_visa"}
    )


def test_a_payment_confirmed_by_the_front_end_pays_the_order_by_webhook(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()

    started = buyer.post(f"/orders/{order['id']}/payments", json={})
    assert started.status_code == 201, started.text
    assert started.json()["status"] == "pending" and started.json()["client_secret"]
    _confirm_at_processor(live_api, started.json()["provider_payment_id"])

    def paid() -> bool:
        return buyer.get(f"/orders/{order['id']}").json()["status"] == "paid"

    assert wait_for(paid)
    assert len(buyer.get(f"/orders/{order['id']}/tickets").json()) == 1
    with unit_of_work(live_api.engine) as session:
        fee = session.scalar(select(Payment.fee_minor).where(Payment.order_id == order["id"]))
    assert fee == 117  # 2.9 % of 3,000 + 30, read from the balance transaction


def test_money_that_arrives_after_the_hold_lapsed_and_the_seat_sold_is_given_back(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"Last seat": (5_000, 1)})
    _, slow = live_api.user(name="slow")
    _, quick = live_api.user(name="quick")
    order = slow.post("/orders", json=_order_body(event_id, tiers["Last seat"])).json()
    started = slow.post(f"/orders/{order['id']}/payments", json={}).json()
    try:
        live_api.clock.offset_seconds = 16 * 60  # the slow buyer's 15 minutes are up
        taken = quick.post("/orders", json=_order_body(event_id, tiers["Last seat"]))
        assert taken.status_code == 201, taken.text
        paid = quick.post(
            f"/orders/{taken.json()['id']}/payments", json={"payment_method": "pm_card_visa"}
        )
        assert paid.status_code == 201

        _confirm_at_processor(live_api, started["provider_payment_id"])

        def refunded() -> bool:  # reserved when the payment is recorded, then sent: wait for both
            sent = Refund.status == RefundStatus.SUCCEEDED
            return _count(live_api, Refund, Refund.order_id == order["id"], sent) == 1

        assert wait_for(refunded)
    finally:
        live_api.clock.offset_seconds = 0
    assert slow.get(f"/orders/{order['id']}").json()["status"] == "expired"
    assert slow.get(f"/orders/{order['id']}/tickets").json() == []
    with unit_of_work(live_api.engine) as session:
        refund = session.scalar(select(Refund).where(Refund.order_id == order["id"]))
        assert (refund.amount_minor, refund.status.value) == (5_000, "succeeded")
        kinds = session.scalars(
            select(LedgerEntry.kind).where(LedgerEntry.order_id == order["id"])
        ).all()
    assert sorted(k.value for k in kinds) == ["fee", "refund", "sale"]


def _hold_ends_in(api, order_id: int, seconds: float) -> None:
    """Move the API's clock so that the order's hold ends `seconds` from now."""
    with unit_of_work(api.engine) as session:
        expires_at = session.scalar(select(Order.expires_at).where(Order.id == order_id))
    now = datetime.now(UTC)
    api.clock.offset_seconds = (expires_at - now).total_seconds() - seconds


def test_a_hold_that_lapses_while_the_processor_answers_is_not_sold_twice(live_api, monkeypatch):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"Last seat": (5_000, 1)})
    _, slow = live_api.user(name="slow")
    _, quick = live_api.user(name="quick")
    order = slow.post("/orders", json=_order_body(event_id, tiers["Last seat"])).json()
    charge = live_api.provider.create_payment
    taken = []

    def slow_network(**kwargs):
        time.sleep(2.5)  # the hold lapses meanwhile, and the seat is taken
        taken.append(quick.post("/orders", json=_order_body(event_id, tiers["Last seat"])))
        return charge(**kwargs)

    monkeypatch.setattr(live_api.provider, "create_payment", slow_network)
    try:
        _hold_ends_in(live_api, order["id"], 2.0)
        paid = slow.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    finally:
        live_api.clock.offset_seconds = 0
    assert taken[0].status_code == 201, taken[0].text
    # Charged after the hold ended and the seat went: the order expires, the money goes back.
    assert paid.status_code == 409, paid.text
    assert paid.json()["error"]["code"] == "hold_expired"
    assert paid.json()["error"]["details"]["refunded"] is True
    assert slow.get(f"/orders/{order['id']}").json()["status"] == "expired"
    assert slow.get(f"/orders/{order['id']}/tickets").json() == []

    def refunded() -> bool:
        sent = Refund.status == RefundStatus.SUCCEEDED
        return _count(live_api, Refund, Refund.order_id == order["id"], sent) == 1

    assert wait_for(refunded)
    bought = quick.post(
        f"/orders/{taken[0].json()['id']}/payments", json={"payment_method": "pm_card_visa"}
    )
    assert bought.status_code == 201 and bought.json()["order_status"] == "paid"


def test_a_payment_in_the_last_seconds_of_its_hold_pays_the_order(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"Last seat": (5_000, 1)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["Last seat"])).json()
    try:
        _hold_ends_in(live_api, order["id"], 3.0)  # decided under the locks, hold running
        paid = buyer.post(
            f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"}
        )
    finally:
        live_api.clock.offset_seconds = 0
    assert paid.status_code == 201 and paid.json()["order_status"] == "paid"
    assert len(buyer.get(f"/orders/{order['id']}/tickets").json()) == 1


def test_a_fee_missing_from_the_processors_answer_is_recorded_from_its_webhook(
    live_api, monkeypatch
):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    charge = live_api.provider.create_payment

    def balance_transaction_not_ready(**kwargs):
        answer = charge(**kwargs)
        return dataclasses.replace(answer, balance_transaction_id=None, fee_minor=None)

    monkeypatch.setattr(live_api.provider, "create_payment", balance_transaction_not_ready)
    paid = buyer.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    assert paid.status_code == 201 and paid.json()["order_status"] == "paid"

    def fee_of_the_payment():
        with unit_of_work(live_api.engine) as session:
            return session.scalar(select(Payment.fee_minor).where(Payment.order_id == order["id"]))

    assert wait_for(lambda: fee_of_the_payment() is not None)  # payment_intent.succeeded
    assert fee_of_the_payment() == 117  # 2.9 % of 3,000 + 30
    with unit_of_work(live_api.engine) as session:
        fees = session.scalars(
            select(LedgerEntry.amount_minor).where(
                LedgerEntry.order_id == order["id"], LedgerEntry.kind == LedgerKind.FEE
            )
        ).all()
    assert fees == [-117]


def test_a_late_failure_event_does_not_undo_a_success(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    paid = buyer.post(
        f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"}
    ).json()
    intent = {
        "id": paid["provider_payment_id"],
        "object": "payment_intent",
        "amount": 3_000,
        "currency": "eur",
        "status": "requires_payment_method",
        "metadata": {"ticketflow_order_id": str(order["id"])},
        "last_payment_error": {"code": "card_declined"},
    }
    payload = webhook_event("evt_late_failure", "payment_intent.payment_failed", intent)
    answer = post_webhook(live_api, payload, stripe_signature(payload))
    assert answer.status_code == 200 and answer.json()["outcome"] == "processed"
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "paid"
    with unit_of_work(live_api.engine) as session:
        payment = session.scalar(select(Payment).where(Payment.order_id == order["id"]))
        assert (payment.status.value, payment.failure_code) == ("succeeded", None)


def test_a_declined_card_leaves_the_order_payable(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 50)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()

    declined = buyer.post(
        f"/orders/{order['id']}/payments",
        json={"payment_method": "pm_card_chargeDeclinedInsufficientFunds"},
    )
    assert declined.status_code == 402
    assert declined.json()["error"]["code"] == "payment_declined"
    assert declined.json()["error"]["details"]["failure_code"] == "card_declined"
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "pending"

    paid = buyer.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    assert paid.status_code == 201 and paid.json()["order_status"] == "paid"
    with unit_of_work(live_api.engine) as session:
        statuses = session.scalars(
            select(Payment.status).where(Payment.order_id == order["id"]).order_by(Payment.id)
        ).all()
    assert [s.value for s in statuses] == ["failed", "succeeded"]


def test_a_dispute_takes_the_money_and_the_dispute_fee_back_in_the_ledger(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (8_000, 50)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    paid = buyer.post(
        f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_createDispute"}
    )
    assert paid.status_code == 201 and paid.json()["order_status"] == "paid"

    def disputed() -> bool:
        with unit_of_work(live_api.engine) as session:
            return session.scalar(select(Payment.disputed).where(Payment.order_id == order["id"]))

    assert wait_for(disputed)
    with unit_of_work(live_api.engine) as session:
        rows = session.execute(
            select(LedgerEntry.kind, LedgerEntry.amount_minor)
            .where(LedgerEntry.order_id == order["id"])
            .order_by(LedgerEntry.id)
        ).all()
    assert [(k.value, a) for k, a in rows] == [
        ("sale", 8_000),
        ("fee", -262),  # 2.9 % of 8,000 + 30
        ("adjustment", -8_000),
        ("fee", -1_500),  # the processor's dispute fee
    ]


def test_refunds_racing_webhooks_of_the_same_payments_neither_fail_nor_double(live_api):
    """A refund and a (late, repeated) success webhook of one payment lock the same rows; they
    must queue, not deadlock."""
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 100)})
    _, buyer = live_api.user(name="buyer")
    paid = []
    for _ in range(12):
        order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
        payment = buyer.post(
            f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"}
        ).json()
        paid.append((order["id"], payment["provider_payment_id"]))
    statuses: list[int] = []

    def refund(order_id: int) -> None:
        with live_api.client(organizer.headers["Authorization"].split()[1]) as client:
            statuses.append(
                client.post(f"/orders/{order_id}/refunds", json={"amount_minor": 1_000}).status_code
            )

    def replay_success(order_id: int, intent_id: str, n: int) -> None:
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": 3_000,
            "currency": "eur",
            "status": "succeeded",
            "metadata": {"ticketflow_order_id": str(order_id)},
            "latest_charge": None,
        }
        payload = webhook_event(f"evt_race_{intent_id}_{n}", "payment_intent.succeeded", intent)
        statuses.append(post_webhook(live_api, payload, stripe_signature(payload)).status_code)

    threads = []
    for order_id, intent_id in paid:
        threads.append(threading.Thread(target=refund, args=(order_id,)))
        threads += [
            threading.Thread(target=replay_success, args=(order_id, intent_id, n)) for n in range(2)
        ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [200, 201], statuses
    with unit_of_work(live_api.engine) as session:
        for order_id, _ in paid:
            kinds = session.scalars(
                select(LedgerEntry.kind).where(LedgerEntry.order_id == order_id)
            ).all()
            assert sorted(k.value for k in kinds) == ["fee", "refund", "sale"]


def test_another_apps_payment_on_the_same_account_is_left_alone(live_api):
    """A payment whose metadata does not carry our key is not ours, whatever ids it names."""
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 10)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    buyer.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    foreign = {
        "id": "pi_another_app",
        "object": "payment_intent",
        "amount": 3_000,
        "currency": "eur",
        "status": "succeeded",
        "metadata": {"order_id": str(order["id"])},  # their order id, not ours
        "latest_charge": None,
    }
    payload = webhook_event("evt_another_app", "payment_intent.succeeded", foreign)
    answer = post_webhook(live_api, payload, stripe_signature(payload))
    assert answer.status_code == 200
    assert _count(live_api, Payment, Payment.provider_payment_id == "pi_another_app") == 0
    assert _count(live_api, Refund, Refund.order_id == order["id"]) == 0
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "paid"


def test_a_declined_payment_that_succeeds_later_at_the_processor_pays_the_order(live_api):
    """After a decline the buyer may confirm the same payment with another card; its success
    arrives by webhook and must not be dropped as a change to a final state."""
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 10)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    declined = buyer.post(
        f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_chargeDeclined"}
    )
    assert declined.status_code == 402
    with unit_of_work(live_api.engine) as session:
        intent_id = session.scalar(
            select(Payment.provider_payment_id).where(Payment.order_id == order["id"])
        )
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 3_000,
        "currency": "eur",
        "status": "succeeded",
        "metadata": {"ticketflow_order_id": str(order["id"])},
        "latest_charge": {
            "id": "ch_second_card",
            "object": "charge",
            "balance_transaction": {"id": "txn_second_card", "fee": 117},
        },
    }
    payload = webhook_event("evt_second_card", "payment_intent.succeeded", intent)
    assert post_webhook(live_api, payload, stripe_signature(payload)).status_code == 200
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "paid"
    assert len(buyer.get(f"/orders/{order['id']}/tickets").json()) == 1


def test_a_reserved_refund_a_crash_left_unsent_is_sent_by_the_sweeper(live_api):
    """The refund of money that came too late is reserved with the payment; if sending it
    dies, the sweeper sends it, once."""
    _, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 10)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    buyer.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    with unit_of_work(live_api.engine) as session:
        payment = session.scalar(select(Payment).where(Payment.order_id == order["id"]))
        reserved = refunds.reserve_owed(session, payment)  # then the process "dies"
        reserved_id = reserved.id
    later = datetime.now(UTC) + refunds.UNSENT_AFTER + timedelta(seconds=1)
    assert refunds.send_unsent(live_api.engine, live_api.provider, now=later) == 1
    assert refunds.send_unsent(live_api.engine, live_api.provider, now=later) == 0
    with unit_of_work(live_api.engine) as session:
        refund = session.get(Refund, reserved_id)
        assert (refund.status.value, refund.amount_minor) == ("succeeded", 3_000)
        assert refund.provider_refund_id
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "refunded"


def test_a_refund_request_retried_after_it_died_midway_refunds_once(live_api):
    """The first attempt claimed its Idempotency-Key, reserved the refund and died before
    sending it. The retry, once the claim is stale, sends that refund: it reserves no second."""
    organizer_id, organizer = live_api.user(name="organizer")
    event_id, tiers = publish_event(organizer, tiers={"GA": (3_000, 10)})
    _, buyer = live_api.user(name="buyer")
    order = buyer.post("/orders", json=_order_body(event_id, tiers["GA"])).json()
    buyer.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    path, body, key = f"/orders/{order['id']}/refunds", b'{"amount_minor":1000}', "refund-1"
    long_ago = datetime.now(UTC) - idempotency.STALE_AFTER - timedelta(minutes=1)
    with unit_of_work(live_api.engine) as session:  # the first attempt, up to its death
        scope = {"caller": f"user:{organizer_id}", "key": key}
        fingerprint = idempotency.fingerprint("POST", path, body)
        assert idempotency.claim(session, **scope, fingerprint=fingerprint, now=long_ago) is None
        reserved = refunds.reserve(
            session,
            load_caller(session, organizer_id),
            order_id=order["id"],
            amount_minor=1_000,
            reason="",
            request_key=f"user:{organizer_id}:{key}",
        ).id

    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    retried = organizer.post(path, content=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert (retried.json()["id"], retried.json()["status"]) == (reserved, "succeeded")
    again = organizer.post(path, content=body, headers=headers)
    assert again.json() == retried.json() and again.headers["Idempotent-Replayed"] == "true"
    with unit_of_work(live_api.engine) as session:
        made = session.scalars(select(Refund).where(Refund.order_id == order["id"])).all()
        assert [(r.id, r.amount_minor, r.status.value) for r in made] == [
            (reserved, 1_000, "succeeded")
        ]
        refund_rows = session.scalars(
            select(LedgerEntry.amount_minor).where(
                LedgerEntry.order_id == order["id"], LedgerEntry.kind == "refund"
            )
        ).all()
    assert refund_rows == [-1_000]
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "partially_refunded"
