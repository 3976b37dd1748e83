"""Purchase -> pay -> webhook -> tickets -> check-in -> refunds, through the real API over
HTTP, the real stripe SDK and the embedded processor, whose webhooks reach the API."""

from __future__ import annotations

from sqlalchemy import func, select

from api.db import unit_of_work
from api.models import LedgerEntry, Payment, ProcessedWebhook, Refund, Role
from tests.api.live import wait_for
from tests.api.organizing import publish_event


def _webhooks(api, type_: str, *, since: int = 0) -> int:
    with unit_of_work(api.engine) as session:
        return session.scalar(select(func.count()).where(ProcessedWebhook.type == type_)) - since


def _ledger(api, order_id: int) -> list[tuple[str, int]]:
    with unit_of_work(api.engine) as session:
        rows = session.execute(
            select(LedgerEntry.kind, LedgerEntry.amount_minor)
            .where(LedgerEntry.order_id == order_id)
            .order_by(LedgerEntry.id)
        )
        return [(kind.value, amount) for kind, amount in rows]


def test_buy_pay_enter_and_refund(live_api):
    _, organizer = live_api.user(Role.ATTENDEE, "organizer")
    event_id, tiers = publish_event(
        organizer,
        tiers={"Standing": (4_500, 100), "VIP": (12_000, 10)},
        title="Harbour Lights Matinee",
    )
    _, buyer = live_api.user(Role.ATTENDEE, "buyer")

    # Other tests publish "Harbour Lights Festival"s into the same database: two words find
    # this one among them.
    listed = buyer.get("/events", params={"q": "harbour matinee"}).json()
    assert [e["id"] for e in listed["items"]] == [event_id]

    order = buyer.post(
        "/orders",
        json={
            "event_id": event_id,
            "items": [
                {"ticket_type_id": tiers["Standing"], "quantity": 2},
                {"ticket_type_id": tiers["VIP"], "quantity": 1},
            ],
        },
    )
    assert order.status_code == 201, order.text
    order = order.json()
    assert (order["status"], order["total_minor"], order["currency"]) == ("pending", 21_000, "EUR")
    detail = buyer.get(f"/events/{event_id}").json()
    assert {t["name"]: t["available"] for t in detail["ticket_types"]} == {
        "Standing": 98,
        "VIP": 9,
    }

    paid = buyer.post(f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"})
    assert paid.status_code == 201, paid.text
    assert (paid.json()["status"], paid.json()["order_status"]) == ("succeeded", "paid")
    # The processor's card fee (2.9 % + 30) came from the charge's balance transaction.
    assert _ledger(live_api, order["id"]) == [("sale", 21_000), ("fee", -639)]

    # The webhook arrives about a second later and changes nothing twice.
    assert wait_for(lambda: _webhooks(live_api, "payment_intent.succeeded") >= 1)
    assert _ledger(live_api, order["id"]) == [("sale", 21_000), ("fee", -639)]
    with unit_of_work(live_api.engine) as session:
        assert session.scalar(select(func.count()).where(Payment.order_id == order["id"])) == 1

    tickets = buyer.get(f"/orders/{order['id']}/tickets").json()
    assert len(tickets) == 3 and len({t["code"] for t in tickets}) == 3
    qr = buyer.get(tickets[0]["qr_url"])
    assert qr.headers["content-type"] == "image/svg+xml" and b"<svg" in qr.content

    first = organizer.post("/check-ins", json={"code": tickets[0]["code"]})
    assert first.status_code == 201, first.text
    again = organizer.post("/check-ins", json={"code": tickets[0]["code"]})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_checked_in"
    assert again.json()["error"]["details"]["first_checked_in_at"].startswith(
        first.json()["checked_in_at"][:19]
    )

    partial = organizer.post(
        f"/orders/{order['id']}/refunds", json={"amount_minor": 4_500, "reason": "one fewer"}
    )
    assert partial.status_code == 201, partial.text
    assert partial.json()["status"] == "succeeded"
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "partially_refunded"

    too_much = organizer.post(f"/orders/{order['id']}/refunds", json={"amount_minor": 16_501})
    assert too_much.status_code == 409
    assert too_much.json()["error"]["code"] == "refund_exceeds_paid"
    assert too_much.json()["error"]["details"]["refundable_minor"] == 16_500

    rest = organizer.post(f"/orders/{order['id']}/refunds", json={"reason": "cancelled"})
    assert rest.status_code == 201 and rest.json()["amount_minor"] == 16_500
    assert buyer.get(f"/orders/{order['id']}").json()["status"] == "refunded"
    void = organizer.post("/check-ins", json={"code": tickets[1]["code"]})
    assert void.status_code == 409 and void.json()["error"]["code"] == "ticket_not_valid"

    # Both charge.refunded webhooks come back; the refunds are still recorded once each.
    assert wait_for(lambda: _webhooks(live_api, "charge.refunded") >= 2)
    with unit_of_work(live_api.engine) as session:
        refunds = session.scalars(select(Refund.amount_minor).where(Refund.order_id == order["id"]))
        assert sorted(refunds) == [4_500, 16_500]
    assert _ledger(live_api, order["id"]) == [
        ("sale", 21_000),
        ("fee", -639),
        ("refund", -4_500),
        ("refund", -16_500),
    ]
    # The seats are back on sale.
    detail = buyer.get(f"/events/{event_id}").json()
    assert {t["name"]: t["available"] for t in detail["ticket_types"]} == {
        "Standing": 100,
        "VIP": 10,
    }
