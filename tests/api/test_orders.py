"""Placing orders: holds, limits, sales windows, promo codes, and no oversell under load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from api.db import unit_of_work
from api.errors import DomainError, NotFound, OverOrderLimit, SalesClosed, SoldOut
from api.models import (
    HOLDING_STATUSES,
    DiscountKind,
    EventStatus,
    Order,
    OrderItem,
    OrderStatus,
    PromoCode,
    Quota,
    quota_ticket_types,
)
from api.services import inventory
from api.services.orders import LineRequest, expire_holds
from tests.api.factories import HOLD, NOW, place


def test_order_holds_tickets_until_it_expires(engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[5], price_minor=2500)
    order_id, total, status = place(engine, buyer, event_id, [LineRequest(tier, 3)])
    assert (total, status) == (7500, OrderStatus.PENDING)
    with unit_of_work(engine) as session:
        assert inventory.available(session, [tier], NOW) == {tier: 2}
        # Past the hold the tickets are free again, even before the sweeper runs.
        assert inventory.available(session, [tier], NOW + HOLD) == {tier: 5}
        assert expire_holds(session, now=NOW + HOLD) >= 1
        assert session.get(Order, order_id).status == OrderStatus.EXPIRED


def test_bad_orders_are_refused_and_write_nothing(engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[2], max_per_order=3)
    cases = [
        ([LineRequest(tier, 3)], SoldOut, NOW),
        ([LineRequest(tier, 4)], OverOrderLimit, NOW),
        ([LineRequest(tier, 1)], SalesClosed, NOW + timedelta(days=29)),
        ([LineRequest(tier + 10_000, 1)], NotFound, NOW),
    ]
    for lines, error, now in cases:
        with pytest.raises(error) as caught:
            place(engine, buyer, event_id, lines, now=now)
        assert caught.value.code == error.code
    with unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).where(Order.event_id == event_id)) == 0


def test_sold_out_tells_what_is_left(engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[3])
    place(engine, buyer, event_id, [LineRequest(tier, 2)])
    with pytest.raises(SoldOut) as caught:
        place(engine, buyer, event_id, [LineRequest(tier, 2)])
    assert caught.value.details == {"available": {tier: 1}}


def test_draft_event_is_not_for_sale(engine, make_event):
    event_id, (tier,), buyer = make_event(status=EventStatus.DRAFT)
    with pytest.raises(NotFound):
        place(engine, buyer, event_id, [LineRequest(tier, 1)])


def test_promo_codes_discount_and_run_out(engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[50], price_minor=1999)
    with unit_of_work(engine) as session:
        session.add(
            PromoCode(
                event_id=event_id, code="EARLY", kind=DiscountKind.PERCENT, value=15, max_uses=1
            )
        )
    _, total, _ = place(engine, buyer, event_id, [LineRequest(tier, 3)], promo="early")
    assert total == 5997 - 899  # 15 % of 5997 = 899.55, rounded down
    with pytest.raises(DomainError, match="used up"):
        place(engine, buyer, event_id, [LineRequest(tier, 1)], promo="EARLY")


def _attempt(engine, buyer, event_id, lines) -> str:
    try:
        place(engine, buyer, event_id, lines)
        return "sold"
    except SoldOut:
        return "sold_out"


def _held(engine, ticket_type_ids) -> int:
    with unit_of_work(engine) as session:
        return session.scalar(
            select(func.coalesce(func.sum(OrderItem.quantity), 0))
            .join(Order, Order.id == OrderItem.order_id)
            .where(OrderItem.ticket_type_id.in_(ticket_type_ids), inventory.holding(NOW))
        )


def test_500_concurrent_checkouts_sell_exactly_the_capacity(engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[100], max_per_order=1)
    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(
            pool.map(
                lambda _: _attempt(engine, buyer, event_id, [LineRequest(tier, 1)]), range(500)
            )
        )
    assert outcomes.count("sold") == 100
    assert outcomes.count("sold_out") == 400
    assert _held(engine, [tier]) == 100


def test_a_shared_quota_is_never_oversold_by_its_ticket_types(engine, make_event):
    event_id, (adult, child), buyer = make_event(capacities=[80, 80], max_per_order=2)
    with unit_of_work(engine) as session:
        quota = Quota(event_id=event_id, name="Seats", capacity=100)
        session.add(quota)
        session.flush()
        session.execute(
            quota_ticket_types.insert(),
            [
                {"quota_id": quota.id, "ticket_type_id": adult},
                {"quota_id": quota.id, "ticket_type_id": child},
            ],
        )

    def attempt(i: int) -> str:
        lines = [LineRequest(adult if i % 2 else child, 1 + i % 2)]
        return _attempt(engine, buyer, event_id, lines)

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(attempt, range(300)))
    assert _held(engine, [adult, child]) == 100
    assert outcomes.count("sold") >= 50
    with unit_of_work(engine) as session:
        paid_or_pending = session.scalar(
            select(func.count())
            .select_from(Order)
            .where(
                Order.event_id == event_id,
                Order.status.in_([*HOLDING_STATUSES, OrderStatus.PENDING]),
            )
        )
    assert paid_or_pending == outcomes.count("sold")
