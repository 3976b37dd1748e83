"""Placing orders (which hold tickets while pending) and releasing expired holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from api.errors import (
    InvalidInput,
    InvalidState,
    NotFound,
    OverOrderLimit,
    SalesClosed,
    SoldOut,
)
from api.models import (
    DiscountKind,
    Event,
    EventStatus,
    Order,
    OrderItem,
    OrderStatus,
    PromoCode,
    Role,
    TicketType,
)
from api.services import inventory
from api.services.access import Caller
from api.services.locking import lock_order


@dataclass(frozen=True)
class LineRequest:
    ticket_type_id: int
    quantity: int


@dataclass(frozen=True)
class PlacedItem:
    ticket_type_id: int
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True)
class PlacedOrder:
    """A new pending order as written (the fields of `OrderRead`)."""

    id: int
    user_id: int
    event_id: int
    status: OrderStatus
    currency: str
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    promo_code_id: int | None
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    items: list[PlacedItem]


# The order and its items in one statement (checkout runs it holding the capacities' locks).
_INSERT_ORDER = text(
    """
    WITH new_order AS (
        INSERT INTO orders (user_id, event_id, status, currency, subtotal_minor,
                            discount_minor, total_minor, promo_code_id, expires_at)
        VALUES (:user_id, :event_id, 'pending', :currency, :subtotal_minor,
                :discount_minor, :total_minor, :promo_code_id, :expires_at)
        RETURNING id, created_at
    ), new_items AS (
        INSERT INTO order_items (order_id, ticket_type_id, quantity, unit_price_minor)
        SELECT new_order.id, line.ticket_type_id, line.quantity, line.unit_price_minor
        FROM new_order,
             unnest(CAST(:ticket_type_ids AS bigint[]), CAST(:quantities AS bigint[]),
                    CAST(:unit_prices AS bigint[]))
                 WITH ORDINALITY AS line(ticket_type_id, quantity, unit_price_minor, n)
        ORDER BY line.n
    )
    SELECT id, created_at FROM new_order
    """
)


def _sales_open(event: Event, ticket_type: TicketType, now: datetime) -> bool:
    start = ticket_type.sales_start_at or event.sales_start_at
    end = ticket_type.sales_end_at or event.sales_end_at
    return start <= now < end


def _discount(promo: PromoCode | None, subtotal: int) -> int:
    if promo is None:
        return 0
    if promo.kind == DiscountKind.PERCENT:
        return subtotal * promo.value // 100  # rounds in the buyer's disfavour by < 1 minor unit
    return min(promo.value, subtotal)


def _promo(session: Session, event_id: int, code: str, now: datetime) -> PromoCode:
    promo = session.scalar(
        select(PromoCode).where(PromoCode.event_id == event_id, PromoCode.code == code.upper())
    )
    if promo is None:
        raise InvalidInput("unknown promo code", field="promo_code")
    if (promo.valid_from and now < promo.valid_from) or (
        promo.valid_until and now >= promo.valid_until
    ):
        raise InvalidInput("this promo code is not valid now", field="promo_code")
    return promo


def _check_promo_uses(session: Session, promo: PromoCode, now: datetime) -> None:
    """Called under the inventory locks, so two buyers cannot both take the last use."""
    if promo.max_uses is None:
        return
    used = session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.promo_code_id == promo.id, inventory.holding(now))
    )
    if used >= promo.max_uses:
        raise InvalidInput("this promo code has been used up", field="promo_code")


def place_order(
    session: Session,
    *,
    user_id: int,
    event_id: int,
    lines: list[LineRequest],
    now: datetime,
    hold: timedelta,
    promo_code: str | None = None,
) -> PlacedOrder:
    """Create a pending order that holds its tickets until `now + hold`.

    Raises NotFound (unknown or unpublished event or ticket type), SalesClosed, OverOrderLimit,
    SoldOut (with what is left), InvalidInput (bad promo code, empty order) or Busy.
    """
    wanted = Counter()
    for line in lines:
        if line.quantity <= 0:
            raise InvalidInput("quantities must be positive", field="items")
        wanted[line.ticket_type_id] += line.quantity
    if not wanted:
        raise InvalidInput("an order needs at least one ticket", field="items")

    event = session.get(Event, event_id)
    if event is None or event.status != EventStatus.PUBLISHED:
        raise NotFound("event not found")
    types = {
        t.id: t
        for t in session.scalars(
            select(TicketType).where(TicketType.id.in_(wanted), TicketType.event_id == event_id)
        )
    }
    missing = sorted(set(wanted) - set(types))
    if missing:
        raise NotFound("ticket type not found", ticket_type_ids=missing)
    currencies = {t.currency for t in types.values()}
    if len(currencies) != 1:
        raise InvalidInput("all tickets of one order must share a currency", field="items")
    for type_id, quantity in wanted.items():
        ticket_type = types[type_id]
        if not _sales_open(event, ticket_type, now):
            raise SalesClosed("sales are not open for this ticket type", ticket_type_id=type_id)
        if quantity > ticket_type.max_per_order:
            raise OverOrderLimit(
                f"at most {ticket_type.max_per_order} per order",
                ticket_type_id=type_id,
                max_per_order=ticket_type.max_per_order,
            )
    promo = _promo(session, event_id, promo_code, now) if promo_code else None

    caps = inventory.lock_and_count(session, wanted, now)
    if inventory.shortfalls(caps, wanted):
        left = inventory.left_per_ticket_type(caps, wanted)
        raise SoldOut("not enough tickets left", available=left)
    if promo is not None:
        _check_promo_uses(session, promo, now)

    subtotal = sum(types[t].price_minor * q for t, q in wanted.items())
    discount = _discount(promo, subtotal)
    lines_in_order = sorted(wanted.items())
    items = [
        PlacedItem(type_id, quantity, types[type_id].price_minor)
        for type_id, quantity in lines_in_order
    ]
    values = {
        "user_id": user_id,
        "event_id": event_id,
        "currency": currencies.pop(),
        "subtotal_minor": subtotal,
        "discount_minor": discount,
        "total_minor": subtotal - discount,
        "promo_code_id": promo.id if promo else None,
        "expires_at": now + hold,
    }
    order_id, created_at = session.execute(
        _INSERT_ORDER,
        {
            **values,
            "ticket_type_ids": [item.ticket_type_id for item in items],
            "quantities": [item.quantity for item in items],
            "unit_prices": [item.unit_price_minor for item in items],
        },
    ).one()
    return PlacedOrder(
        id=order_id,
        status=OrderStatus.PENDING,
        paid_at=None,
        created_at=created_at,
        items=items,
        **values,
    )


def expire_holds(session: Session, *, now: datetime) -> int:
    """Mark pending orders past their hold as expired; return how many.

    Expired holds stop counting at `expires_at` whether or not this ran: the sweeper only
    makes the state visible.
    """
    result = session.execute(
        update(Order)
        .where(Order.status == OrderStatus.PENDING, Order.expires_at <= now)
        .values(status=OrderStatus.EXPIRED)
    )
    return result.rowcount


def visible_order(session: Session, caller: Caller, order_id: int) -> Order:
    """The buyer's own order (finance and admins see all); NotFound for anyone else."""
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound("order not found")
    if order.user_id != caller.user_id and caller.role not in (Role.FINANCE, Role.ADMIN):
        raise NotFound("order not found")
    return order


def items_of(session: Session, order_id: int) -> list[OrderItem]:
    return list(
        session.scalars(
            select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.id)
        )
    )


def my_orders(session: Session, caller: Caller, *, page: int, size: int) -> tuple[list[Order], int]:
    where = Order.user_id == caller.user_id
    total = session.scalar(select(func.count()).select_from(Order).where(where))
    rows = session.scalars(
        select(Order).where(where).order_by(Order.id.desc()).offset((page - 1) * size).limit(size)
    )
    return list(rows), total


def cancel_order(session: Session, caller: Caller, order_id: int) -> Order:
    """The buyer (or an admin) gives up a pending order: its hold ends at once."""
    order = lock_order(session, order_id)
    if order is None or (order.user_id != caller.user_id and not caller.is_admin):
        raise NotFound("order not found")
    if order.status == OrderStatus.CANCELLED:
        return order
    if order.status != OrderStatus.PENDING:
        raise InvalidState(f"a {order.status.value} order cannot be cancelled")
    order.status = OrderStatus.CANCELLED
    session.flush()
    return order
