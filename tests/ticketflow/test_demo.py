"""The demo loader against a real platform (PostgreSQL, the payment processor, the API in its
own processes): what it says it created is what the API and the database hold, and loading
again adds nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from api.db import unit_of_work
from api.models import (
    CheckIn,
    Event,
    EventStatus,
    Order,
    OrderItem,
    OrderStatus,
    Organizer,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Role,
    Ticket,
    User,
)
from ticketflow import demo
from ticketflow.services import isolated_settings, service_named
from ticketflow.settings import Settings
from ticketflow.supervisor import run_services

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = isolated_settings(tmp_path_factory.mktemp("demo"))
    services = [service_named(settings, name) for name in ("postgres", "payments", "api")]
    with run_services(settings, services):
        yield settings


@pytest.fixture(scope="module")
def engine(platform: Settings) -> Iterator[Engine]:
    engine = create_engine(platform.sqlalchemy_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _counts(engine: Engine) -> dict[str, int]:
    with unit_of_work(engine) as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (User, Organizer, Event, Order, Payment, Refund, Ticket, CheckIn)
        }


def _log_in(api: httpx.Client, email: str) -> dict[str, str]:
    response = api.post("/auth/login", json={"email": email, "password": demo.DEMO_PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_the_demo_loads_a_working_platform_once(platform: Settings, engine: Engine):
    out = io.StringIO()
    summary = demo.load(platform, out=out)
    report = out.getvalue()
    assert "Demo traffic loaded" in report and demo.DEMO_PASSWORD in report

    paid = summary.orders[demo.Outcome.PAID] + summary.orders[demo.Outcome.DECLINED_THEN_PAID]
    with unit_of_work(engine) as session:
        by_status = dict(
            session.execute(select(Order.status, func.count()).group_by(Order.status)).all()
        )
        # Every order the loader paid is paid (or refunded since), with one ticket per seat.
        settled = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED)
        assert sum(by_status.get(s, 0) for s in settled) == paid >= 200
        assert by_status[OrderStatus.CANCELLED] == summary.orders[demo.Outcome.CANCELLED] > 0
        left_pending = (
            summary.orders[demo.Outcome.ABANDONED] + summary.orders[demo.Outcome.DECLINED]
        )
        assert by_status[OrderStatus.PENDING] == left_pending > 0
        seats = select(func.coalesce(func.sum(OrderItem.quantity), 0)).where(
            OrderItem.order_id == Order.id
        )
        tickets = select(func.count()).where(Ticket.order_id == Order.id)
        mismatched = session.scalar(
            select(func.count())
            .select_from(Order)
            .where(
                Order.status.in_(settled),
                seats.scalar_subquery() != tickets.scalar_subquery(),
            )
        )
        assert mismatched == 0
        assert session.scalar(select(func.count()).select_from(Ticket)) == summary.tickets
        assert (
            session.scalar(
                select(func.count()).where(
                    Order.promo_code_id.is_not(None), Order.status.in_(settled)
                )
            )
            == summary.with_promo
            > 0
        )
        assert set(session.scalars(select(Order.currency).distinct())) == {"EUR", "GBP"}

        declined = session.scalar(
            select(func.count()).where(Payment.status == PaymentStatus.FAILED)
        )
        assert (
            declined
            == summary.orders[demo.Outcome.DECLINED]
            + summary.orders[demo.Outcome.DECLINED_THEN_PAID]
            > 0
        )

        refunds = session.scalar(
            select(func.count()).where(Refund.status == RefundStatus.SUCCEEDED)
        )
        assert refunds == sum(summary.refunds.values()) > 0
        assert by_status[OrderStatus.REFUNDED] == summary.refunds[demo.RefundKind.FULL] > 0
        assert (
            by_status[OrderStatus.PARTIALLY_REFUNDED]
            == summary.refunds[demo.RefundKind.PARTIAL]
            > 0
        )

        # Check-ins happen only at the events on now, for tickets that are still valid.
        scanned = session.execute(
            select(Event.starts_at, Event.ends_at)
            .join(Order, Order.event_id == Event.id)
            .join(Ticket, Ticket.order_id == Order.id)
            .join(CheckIn, CheckIn.ticket_id == Ticket.id)
            .group_by(Event.id)
        ).all()
        assert len(scanned) == summary.events_on_now
        assert all(starts <= datetime.now(UTC) < ends for starts, ends in scanned)
        assert session.scalar(select(func.count()).select_from(CheckIn)) == summary.check_ins > 0
        assert (
            session.scalar(select(func.count()).where(Event.status != EventStatus.PUBLISHED)) == 0
        )
        assert session.scalar(select(func.count()).where(User.role == Role.ATTENDEE)) == 60

    with httpx.Client(base_url=f"http://127.0.0.1:{platform.api_port}", timeout=30) as api:
        events = api.get("/events", params={"size": 100}).json()
        assert events["total"] == summary.events >= 10
        assert len({e["city"] for e in events["items"]}) >= 3

        admin = _log_in(api, demo.ADMIN_EMAIL)
        finance = api.get("/admin/users", params={"role": "finance"}, headers=admin).json()
        assert [u["email"] for u in finance["items"]] == [demo.FINANCE.email]

        owner = demo.ORGANIZERS[0].staff[0]
        organizer = _log_in(api, owner.email)
        managed = api.get("/organizer/events", headers=organizer).json()["items"]
        assert {e["title"] for e in managed} == {e.title for e in demo.ORGANIZERS[0].events}
        orders = api.get(f"/organizer/events/{managed[0]['id']}/orders", headers=organizer)
        assert orders.json()["total"] > 0 and orders.json()["items"][0]["buyer_email"]

    before = _counts(engine)
    again = io.StringIO()
    assert demo.load(platform, out=again).already_loaded
    assert "already loaded" in again.getvalue()
    assert _counts(engine) == before
