"""Placing orders: holds, limits, sales windows, promo codes, and no oversell under load."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy.exc
from sqlalchemy import delete, func, select

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
    TicketTypeHolds,
    TicketTypeSales,
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


def test_a_promo_code_runs_out_once_across_ticket_types_bought_at_once(engine, make_event):
    """Orders for different ticket types take no common capacity lock; the code's own lock
    keeps 40 simultaneous buyers from all taking its last 5 uses."""
    event_id, tiers, buyer = make_event(capacities=[50] * 8, price_minor=1000)
    with unit_of_work(engine) as session:
        five = PromoCode(
            event_id=event_id, code="FIVE", kind=DiscountKind.FIXED, value=100, max_uses=5
        )
        session.add(five)

    def attempt(n: int) -> str:
        try:
            place(engine, buyer, event_id, [LineRequest(tiers[n % len(tiers)], 1)], promo="FIVE")
            return "discounted"
        except DomainError as refused:
            assert "used up" in str(refused)
            return "used up"

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    assert (outcomes.count("discounted"), outcomes.count("used up")) == (5, 35)
    with unit_of_work(engine) as session:
        promo_id = session.scalar(select(PromoCode.id).where(PromoCode.event_id == event_id))
        assert session.scalar(select(func.count()).where(Order.promo_code_id == promo_id)) == 5


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


def _orders_down_random_paths(engine, buyer, event_id, rng, lines_of, paths, count) -> None:
    """Place `count` orders (`lines_of()` each) and take each through a random path of
    status changes, one committed change at a time, as the API would."""
    for _ in range(count):
        order_id, _, _ = place(engine, buyer, event_id, lines_of())
        for status in rng.choice(paths):
            with unit_of_work(engine) as session:
                session.get(Order, order_id).status = OrderStatus(status)


def _tickets_per_type(session, statuses, ticket_type_ids) -> dict[int, int]:
    """Counted the slow way: the tickets in orders of `statuses`, per ticket type."""
    rows = session.execute(
        select(OrderItem.ticket_type_id, func.sum(OrderItem.quantity))
        .join(Order, Order.id == OrderItem.order_id)
        .where(Order.status.in_(statuses), OrderItem.ticket_type_id.in_(ticket_type_ids))
        .group_by(OrderItem.ticket_type_id)
    ).all()
    return {ticket_type_id: int(quantity) for ticket_type_id, quantity in rows}


def test_the_sold_count_follows_every_status_change_and_paid_items_are_fixed(engine, make_event):
    """`ticket_type_sales` (kept by a trigger) equals the count over paid orders, whatever
    path an order takes; the items of a paid order cannot change under it."""
    event_id, (a, b), buyer = make_event(capacities=[500, 500])
    rng = random.Random(7)
    paths = [
        ["paid"],
        ["paid", "partially_refunded"],
        ["paid", "partially_refunded", "refunded"],
        ["paid", "refunded"],
        ["expired", "paid"],
        ["cancelled"],
        ["expired"],
        [],
    ]
    _orders_down_random_paths(
        engine,
        buyer,
        event_id,
        rng,
        lambda: [LineRequest(a, rng.randint(1, 3)), LineRequest(b, rng.randint(0, 2) or 1)],
        paths,
        count=60,
    )

    with unit_of_work(engine) as session:
        counted = _tickets_per_type(session, HOLDING_STATUSES, [a, b])
        kept = dict(
            session.execute(
                select(TicketTypeSales.ticket_type_id, TicketTypeSales.tickets_sold).where(
                    TicketTypeSales.ticket_type_id.in_([a, b])
                )
            ).all()
        )
        paid_order = session.scalar(
            select(Order.id).where(Order.status == OrderStatus.PAID, Order.event_id == event_id)
        )
    assert kept == counted and kept[a] > 0

    late_item = OrderItem(order_id=paid_order, ticket_type_id=a, quantity=1, unit_price_minor=1)
    with (
        pytest.raises(sqlalchemy.exc.DBAPIError, match="items of a paid order"),
        unit_of_work(engine) as session,
    ):
        session.add(late_item)


def test_the_pending_count_follows_every_status_change(engine, make_event):
    """Held - released (kept by triggers in two rows, checkout's O(1) bound) equals the count
    over pending orders, lapsed or not, whatever path an order takes."""
    event_id, (a, b), buyer = make_event(capacities=[500, 500])
    rng = random.Random(11)
    paths = [["paid"], ["paid", "refunded"], ["expired"], ["expired", "paid"], ["cancelled"], []]
    _orders_down_random_paths(
        engine,
        buyer,
        event_id,
        rng,
        lambda: [LineRequest(a, rng.randint(1, 3)), LineRequest(b, rng.randint(1, 2))],
        paths,
        count=40,
    )

    with unit_of_work(engine) as session:
        counted = _tickets_per_type(session, [OrderStatus.PENDING], [a, b])
        kept = dict(
            session.execute(
                select(
                    TicketTypeSales.ticket_type_id,
                    TicketTypeHolds.tickets_held - TicketTypeSales.tickets_released,
                )
                .join(
                    TicketTypeHolds,
                    TicketTypeHolds.ticket_type_id == TicketTypeSales.ticket_type_id,
                )
                .where(TicketTypeSales.ticket_type_id.in_([a, b]))
            ).all()
        )
    assert kept == {t: counted.get(t, 0) for t in (a, b)} and kept[a] > 0


def test_lapsed_holds_the_sweeper_has_not_marked_do_not_block_a_sale(engine, make_event):
    """They still count in the pending bound; near the capacity checkout counts exactly."""
    event_id, (tier,), buyer = make_event(capacities=[5])
    place(engine, buyer, event_id, [LineRequest(tier, 3)])
    with pytest.raises(SoldOut) as caught:
        place(engine, buyer, event_id, [LineRequest(tier, 3)])
    assert caught.value.details == {"available": {tier: 2}}
    _, _, status = place(engine, buyer, event_id, [LineRequest(tier, 5)], now=NOW + HOLD)
    assert status == OrderStatus.PENDING
    with pytest.raises(SoldOut) as caught:
        place(engine, buyer, event_id, [LineRequest(tier, 1)], now=NOW + HOLD)
    assert caught.value.details == {"available": {tier: 0}}


def test_a_ticket_type_missing_its_count_rows_is_counted_exactly(engine, make_event):
    """Rows loaded with the triggers off (a restore) leave the O(1) bound nothing to add up:
    checkout must count, not take the missing rows for zero."""
    event_id, (tier,), buyer = make_event(capacities=[1])
    with unit_of_work(engine) as session:
        session.execute(delete(TicketTypeHolds).where(TicketTypeHolds.ticket_type_id == tier))
    place(engine, buyer, event_id, [LineRequest(tier, 1)])
    with pytest.raises(SoldOut) as caught:
        place(engine, buyer, event_id, [LineRequest(tier, 1)])
    assert caught.value.details == {"available": {tier: 0}}


def test_the_sweeper_expires_in_batches_and_leaves_orders_being_paid(engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[10])
    ids = [place(engine, buyer, event_id, [LineRequest(tier, 1)])[0] for _ in range(3)]

    def sweep_in_batches_of_two() -> None:
        while True:
            with unit_of_work(engine) as session:
                if expire_holds(session, now=NOW + HOLD, limit=2) < 2:
                    return

    def statuses() -> list[OrderStatus]:
        with unit_of_work(engine) as session:
            return [session.get(Order, order_id).status for order_id in ids]

    with unit_of_work(engine) as payment:  # a payment writing the first order holds its row
        payment.execute(select(Order.id).where(Order.id == ids[0]).with_for_update()).all()
        sweep_in_batches_of_two()
        assert statuses() == [OrderStatus.PENDING, OrderStatus.EXPIRED, OrderStatus.EXPIRED]
    sweep_in_batches_of_two()
    assert statuses() == [OrderStatus.EXPIRED] * 3
    with unit_of_work(engine) as session:
        held = session.get(TicketTypeHolds, tier).tickets_held
        released = session.get(TicketTypeSales, tier).tickets_released
    assert (held, released) == (3, 3)
