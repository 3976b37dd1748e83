"""Bad input over real HTTP: each gets its status and machine-readable `code`, and changes
nothing in the database (every command is one transaction, so a refusal writes no row)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from api.db import unit_of_work
from api.models import (
    Base,
    LedgerEntry,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    ProcessedWebhook,
    Role,
    Ticket,
)
from tests.api.organizing import iso, publish_event
from tests.api.webhooks import post_webhook, stripe_signature, webhook_event

UNKNOWN = 987_654_321_012  # an id no row has
MAX_PER_ORDER = 4
# Written by other requests' webhooks arriving late, whatever this test does; checked by id.
ASYNC_TABLES = {ProcessedWebhook.__tablename__}


def row_counts(engine) -> dict[str, int]:
    """How many rows every table has (bar ASYNC_TABLES)."""
    with unit_of_work(engine) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
            if table.name not in ASYNC_TABLES
        }


@pytest.fixture
def unchanged(live_api) -> Iterator[None]:
    """Asserts, after the test, that no table gained or lost a row."""
    before = row_counts(live_api.engine)
    yield
    assert row_counts(live_api.engine) == before


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


@dataclass
class Shop:
    organizer: httpx.Client
    buyer: httpx.Client
    admin: httpx.Client
    organizer_id: int
    event_id: int
    tiers: dict[str, int]  # name -> ticket type id

    def order(self, tier: str, quantity: int = 1) -> dict:
        line = {"ticket_type_id": self.tiers[tier], "quantity": quantity}
        response = self.buyer.post("/orders", json={"event_id": self.event_id, "items": [line]})
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="module")
def shop(live_api) -> Iterator[Shop]:
    _, organizer = live_api.user(Role.ATTENDEE, "organizer")
    _, buyer = live_api.user(Role.ATTENDEE, "buyer")
    _, admin = live_api.user(Role.ADMIN, "admin")
    event_id, tiers = publish_event(
        organizer,
        tiers={
            "Last few": (3_000, 3),  # sold out by a test
            "Standing": (4_500, 500),
            "Early bird": (2_000, 100),  # its own sales window is closed by a test
            "Webhooks": (5_000, 100),  # paid for by signed events in the webhook tests
        },
        max_per_order=MAX_PER_ORDER,
    )
    (organizer_account,) = organizer.get("/organizers").json()
    yield Shop(organizer, buyer, admin, organizer_account["id"], event_id, tiers)
    for client in (organizer, buyer, admin):
        client.close()


# --- unknown ids: 404 -----------------------------------------------------------------------------


def _order_line(shop: Shop) -> dict:
    return {"ticket_type_id": shop.tiers["Standing"], "quantity": 1}


UNKNOWN_IDS: dict[str, tuple[str, str, Callable[[Shop], str], Callable[[Shop], dict | None]]] = {
    # name: (who, method, url, body)
    "event": ("buyer", "GET", lambda s: f"/events/{UNKNOWN}", lambda s: None),
    "event to order from": (
        "buyer",
        "POST",
        lambda s: "/orders",
        lambda s: {"event_id": UNKNOWN, "items": [_order_line(s)]},
    ),
    "ticket type to order": (
        "buyer",
        "POST",
        lambda s: "/orders",
        lambda s: {
            "event_id": s.event_id,
            "items": [_order_line(s), {"ticket_type_id": UNKNOWN, "quantity": 1}],
        },
    ),
    "order": ("buyer", "GET", lambda s: f"/orders/{UNKNOWN}", lambda s: None),
    "order to pay": (
        "buyer",
        "POST",
        lambda s: f"/orders/{UNKNOWN}/payments",
        lambda s: {"payment_method": "pm_card_visa"},
    ),
    "order to cancel": ("buyer", "POST", lambda s: f"/orders/{UNKNOWN}/cancel", lambda s: None),
    "order's tickets": ("buyer", "GET", lambda s: f"/orders/{UNKNOWN}/tickets", lambda s: None),
    "order to refund": (
        "organizer",
        "POST",
        lambda s: f"/orders/{UNKNOWN}/refunds",
        lambda s: {"amount_minor": 100},
    ),
    "managed event": ("organizer", "GET", lambda s: f"/organizer/events/{UNKNOWN}", lambda s: None),
    "ticket type to change": (
        "organizer",
        "PATCH",
        lambda s: f"/organizer/events/{s.event_id}/ticket-types/{UNKNOWN}",
        lambda s: {"capacity": 10},
    ),
    "ticket code at the door": (
        "organizer",
        "POST",
        lambda s: "/check-ins",
        lambda s: {"code": "no-such-ticket-code"},
    ),
    "ticket code's QR": ("buyer", "GET", lambda s: "/tickets/no-such-code/qr.svg", lambda s: None),
    "organizer to join": (
        "organizer",
        "POST",
        lambda s: f"/organizers/{UNKNOWN}/members",
        lambda s: {"email": "nobody@example.com"},
    ),
    "user to change": (
        "admin",
        "PATCH",
        lambda s: f"/admin/users/{UNKNOWN}",
        lambda s: {"role": "finance"},
    ),
}


@pytest.mark.parametrize("name", list(UNKNOWN_IDS))
def test_an_unknown_id_is_not_found(shop, unchanged, name):
    who, method, url, body = UNKNOWN_IDS[name]
    client = getattr(shop, who)
    error = error_of(client.request(method, url(shop), json=body(shop)), 404)
    assert error["code"] == "not_found"
    if name == "ticket type to order":
        assert error["details"]["ticket_type_ids"] == [UNKNOWN]


# --- invalid bodies: 422 with where each problem is -----------------------------------------------


def _event_body(**changes) -> dict:
    now = datetime.now(UTC)
    return {
        "title": "Dockside Jazz",
        "category": "music",
        "timezone": "Europe/Berlin",
        "starts_at": iso(now + timedelta(days=20)),
        "ends_at": iso(now + timedelta(days=20, hours=3)),
        "sales_start_at": iso(now - timedelta(hours=1)),
        "sales_end_at": iso(now + timedelta(days=19)),
        **changes,
    }


def _order_body(shop: Shop, **changes) -> dict:
    return {"event_id": shop.event_id, "items": [_order_line(shop)], **changes}


INVALID_BODIES: dict[str, tuple[str, Callable[[Shop], str], Callable[[Shop], dict], list]] = {
    # name: (who, url, body, the locations of its problems)
    "negative quantity": (
        "buyer",
        lambda s: "/orders",
        lambda s: _order_body(s, items=[{"ticket_type_id": s.tiers["Standing"], "quantity": -2}]),
        [["body", "items", 0, "quantity"]],
    ),
    "zero quantity": (
        "buyer",
        lambda s: "/orders",
        lambda s: _order_body(s, items=[{"ticket_type_id": s.tiers["Standing"], "quantity": 0}]),
        [["body", "items", 0, "quantity"]],
    ),
    "empty items": (
        "buyer",
        lambda s: "/orders",
        lambda s: _order_body(s, items=[]),
        [["body", "items"]],
    ),
    "unknown field": (
        "buyer",
        lambda s: "/orders",
        lambda s: _order_body(s, coupon="FREE"),
        [["body", "coupon"]],
    ),
    "missing field": (
        "buyer",
        lambda s: "/orders",
        lambda s: {"items": [_order_line(s)]},
        [["body", "event_id"]],
    ),
    "unknown field in payment": (
        "buyer",
        lambda s: f"/orders/{UNKNOWN}/payments",
        lambda s: {"payment_method": "pm_card_visa", "amount_minor": 1},
        [["body", "amount_minor"]],
    ),
    "naive datetime": (
        "organizer",
        lambda s: "/organizer/events",
        lambda s: _event_body(starts_at="2030-06-01T20:00:00"),
        [["body", "starts_at"]],
    ),
    "two naive datetimes": (
        "organizer",
        lambda s: "/organizer/events",
        lambda s: _event_body(sales_start_at="2030-05-01T09:00:00", ends_at="2030-06-01 23:00"),
        [["body", "ends_at"], ["body", "sales_start_at"]],
    ),
    "unknown field in event": (
        "organizer",
        lambda s: "/organizer/events",
        lambda s: _event_body(capacity=100),
        [["body", "capacity"]],
    ),
    "lower-case currency": (
        "organizer",
        lambda s: f"/organizer/events/{s.event_id}/ticket-types",
        lambda s: {"name": "Balcony", "price_minor": 100, "currency": "eur", "capacity": 5},
        [["body", "currency"]],
    ),
    "four-letter currency": (
        "organizer",
        lambda s: f"/organizer/events/{s.event_id}/ticket-types",
        lambda s: {"name": "Balcony", "price_minor": 100, "currency": "EURO", "capacity": 5},
        [["body", "currency"]],
    ),
    "negative price and capacity": (
        "organizer",
        lambda s: f"/organizer/events/{s.event_id}/ticket-types",
        lambda s: {"name": "Balcony", "price_minor": -1, "currency": "EUR", "capacity": -5},
        [["body", "capacity"], ["body", "price_minor"]],
    ),
    "zero refund": (
        "organizer",
        lambda s: f"/orders/{UNKNOWN}/refunds",
        lambda s: {"amount_minor": 0},
        [["body", "amount_minor"]],
    ),
}


@pytest.mark.parametrize("name", list(INVALID_BODIES))
def test_an_invalid_body_names_its_fields(shop, unchanged, name):
    who, url, body, locations = INVALID_BODIES[name]
    error = error_of(getattr(shop, who).post(url(shop), json=body(shop)), 422)
    assert error["code"] == "invalid_input"
    assert sorted(f["location"] for f in error["details"]["fields"]) == locations


def test_a_body_that_is_not_json_is_invalid(shop, unchanged):
    response = shop.buyer.post(
        "/orders", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    error = error_of(response, 422)
    assert error["code"] == "invalid_input"
    assert error["details"]["fields"][0]["location"][0] == "body"


def test_an_event_that_ends_before_it_starts_is_invalid(shop, unchanged):
    now = datetime.now(UTC)
    body = _event_body(ends_at=iso(now + timedelta(days=19)))
    error = error_of(shop.organizer.post("/organizer/events", json=body), 422)
    assert error["code"] == "invalid_input"
    assert error["details"]["field"] == "ends_at"


# --- what cannot be sold: 409 ---------------------------------------------------------------------


def test_more_than_is_left_is_sold_out(shop, live_api):
    tier = shop.tiers["Last few"]
    shop.order("Last few", 2)  # held: 1 of 3 left
    before = row_counts(live_api.engine)
    error = error_of(_ask(shop, tier, 2), 409)
    assert error["code"] == "sold_out"
    assert error["details"]["available"] == {str(tier): 1}
    assert row_counts(live_api.engine) == before


def _ask(shop: Shop, ticket_type_id: int, quantity: int, event_id: int | None = None):
    line = {"ticket_type_id": ticket_type_id, "quantity": quantity}
    return shop.buyer.post("/orders", json={"event_id": event_id or shop.event_id, "items": [line]})


def test_more_than_one_order_may_have_is_refused(shop, unchanged):
    tier = shop.tiers["Standing"]
    error = error_of(_ask(shop, tier, MAX_PER_ORDER + 1), 409)
    assert error["code"] == "over_order_limit"
    assert error["details"] == {"ticket_type_id": tier, "max_per_order": MAX_PER_ORDER}


def test_lines_of_one_ticket_type_count_together_against_the_limit(shop, unchanged):
    tier = shop.tiers["Standing"]
    line = {"ticket_type_id": tier, "quantity": MAX_PER_ORDER}
    response = shop.buyer.post(
        "/orders", json={"event_id": shop.event_id, "items": [line, {**line, "quantity": 1}]}
    )
    assert error_of(response, 409)["code"] == "over_order_limit"


def _event_with_sales(shop: Shop, start: timedelta, end: timedelta) -> tuple[int, int]:
    """A published event of the shop's organizer selling from now+start until now+end."""
    now = datetime.now(UTC)
    body = _event_body(
        organizer_id=shop.organizer_id,
        sales_start_at=iso(now + start),
        sales_end_at=iso(now + end),
    )
    created = shop.organizer.post("/organizer/events", json=body)
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    tier = shop.organizer.post(
        f"/organizer/events/{event_id}/ticket-types",
        json={"name": "Seat", "price_minor": 1_000, "currency": "EUR", "capacity": 10},
    )
    assert tier.status_code == 201, tier.text
    shop.organizer.post(f"/organizer/events/{event_id}/publish").raise_for_status()
    return event_id, tier.json()["id"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(timedelta(days=1), timedelta(days=2), id="not open yet"),
        pytest.param(timedelta(days=-2), timedelta(minutes=-1), id="over"),
    ],
)
def test_outside_the_events_sales_window_sales_are_closed(shop, live_api, start, end):
    event_id, tier = _event_with_sales(shop, start, end)
    before = row_counts(live_api.engine)
    error = error_of(_ask(shop, tier, 1, event_id), 409)
    assert error["code"] == "sales_closed"
    assert error["details"] == {"ticket_type_id": tier}
    assert row_counts(live_api.engine) == before


def test_a_ticket_types_own_closed_window_closes_its_sales(shop, live_api):
    tier = shop.tiers["Early bird"]
    assert _ask(shop, tier, 1).status_code == 201
    ended = iso(datetime.now(UTC) - timedelta(seconds=1))
    changed = shop.organizer.patch(
        f"/organizer/events/{shop.event_id}/ticket-types/{tier}", json={"sales_end_at": ended}
    )
    assert changed.status_code == 200, changed.text
    before = row_counts(live_api.engine)
    error = error_of(_ask(shop, tier, 1), 409)
    assert (error["code"], error["details"]) == ("sales_closed", {"ticket_type_id": tier})
    assert row_counts(live_api.engine) == before


def test_paying_after_the_hold_expired_is_refused(shop, live_api):
    order = shop.order("Standing", 2)
    before = row_counts(live_api.engine)
    live_api.clock.offset_seconds = 16 * 60  # the hold is 15 minutes
    try:
        response = shop.buyer.post(
            f"/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"}
        )
    finally:
        live_api.clock.offset_seconds = 0
    error = error_of(response, 409)
    assert error["code"] == "hold_expired"
    assert error["details"]["expired_at"].startswith(order["expires_at"][:19])
    assert row_counts(live_api.engine) == before
    with unit_of_work(live_api.engine) as session:
        assert session.scalar(select(func.count()).where(Payment.order_id == order["id"])) == 0


# --- webhooks: signed with the endpoint's secret, recent, applied once ----------------------------


def payment_succeeded(event_id: str, payment: Payment, fee_minor: int = 159) -> bytes:
    """A `payment_intent.succeeded` event for `payment`, its charge and fee expanded."""
    intent = {
        "id": payment.provider_payment_id,
        "object": "payment_intent",
        "amount": payment.amount_minor,
        "currency": payment.currency.lower(),
        "status": "succeeded",
        "metadata": {"ticketflow_order_id": str(payment.order_id)},
        "latest_charge": {
            "id": f"ch_{uuid.uuid4().hex[:24]}",
            "object": "charge",
            "balance_transaction": {
                "id": f"txn_{uuid.uuid4().hex[:24]}",
                "object": "balance_transaction",
                "fee": fee_minor,
            },
        },
    }
    return webhook_event(event_id, "payment_intent.succeeded", intent)


@pytest.fixture
def awaiting_payment(shop, live_api) -> Payment:
    """An order whose payment was started without a card: the processor will say how it went."""
    order = shop.order("Webhooks")
    started = shop.buyer.post(f"/orders/{order['id']}/payments", json={})
    assert started.status_code == 201, started.text
    assert (started.json()["status"], started.json()["order_status"]) == ("pending", "pending")
    with unit_of_work(live_api.engine) as session:
        return session.get(Payment, started.json()["payment_id"])


def _recorded(live_api, event_id: str) -> int:
    with unit_of_work(live_api.engine) as session:
        return session.scalar(select(func.count()).where(ProcessedWebhook.event_id == event_id))


def _order_state(live_api, order_id: int) -> tuple:
    with unit_of_work(live_api.engine) as session:
        return (
            session.scalar(select(Order.status).where(Order.id == order_id)),
            session.scalar(select(Payment.status).where(Payment.order_id == order_id)),
            session.scalar(select(func.count()).where(LedgerEntry.order_id == order_id)),
            session.scalar(select(func.count()).where(Ticket.order_id == order_id)),
        )


def _now() -> int:
    return int(time.time())


BAD_SIGNATURES: dict[str, Callable[[bytes], str | None]] = {
    "signed with another secret": lambda p: stripe_signature(p, secret="whsec_someone_else"),
    "payload changed after signing": lambda p: stripe_signature(
        p.replace(b'"fee": 159', b'"fee": 1')
    ),
    "stale timestamp": lambda p: stripe_signature(p, at=_now() - 10 * 60),
    "no v1 signature": lambda p: stripe_signature(p).split(",")[0],
    "no header": lambda p: None,
}


@pytest.mark.parametrize("name", list(BAD_SIGNATURES))
def test_a_webhook_without_a_valid_signature_changes_nothing(live_api, awaiting_payment, name):
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = payment_succeeded(event_id, awaiting_payment)
    before = row_counts(live_api.engine)
    response = post_webhook(live_api, payload, BAD_SIGNATURES[name](payload))
    assert error_of(response, 400)["code"] == "invalid_signature"
    assert _recorded(live_api, event_id) == 0
    assert row_counts(live_api.engine) == before
    assert _order_state(live_api, awaiting_payment.order_id) == (
        OrderStatus.PENDING,
        PaymentStatus.PENDING,
        0,
        0,
    )


def test_a_signed_webhook_applies_once_and_its_replay_changes_nothing(live_api, awaiting_payment):
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = payment_succeeded(event_id, awaiting_payment)

    first = post_webhook(live_api, payload, stripe_signature(payload))
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "outcome": "processed"}
    paid = _order_state(live_api, awaiting_payment.order_id)
    assert paid == (OrderStatus.PAID, PaymentStatus.SUCCEEDED, 2, 1)  # sale + fee, one ticket
    before = row_counts(live_api.engine)

    replay = post_webhook(live_api, payload, stripe_signature(payload))  # signed anew, same id
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"received": True, "outcome": "duplicate"}
    assert _recorded(live_api, event_id) == 1
    assert row_counts(live_api.engine) == before
    assert _order_state(live_api, awaiting_payment.order_id) == paid
