"""Placing orders (which hold tickets while pending) and releasing expired holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
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


# Under the capacities' locks, one statement counts what each capacity has taken and, if the
# order fits them all, writes it and its items; it returns the counts either way (for the
# "sold out" answer). So the locks are held for this statement and the commit.
_HOLD_IF_IT_FITS = text(
    f"""
    WITH wanted AS (
        SELECT *
        FROM unnest(CAST(:ids AS bigint[]), CAST(:quantities AS bigint[]),
                    CAST(:unit_prices AS bigint[]))
            WITH ORDINALITY AS line(ticket_type_id, quantity, unit_price_minor, n)
    ),
    {inventory.COUNTED_FOR_ORDER},
    fits AS (
        SELECT NOT EXISTS (
            SELECT 1 FROM counted c
            WHERE (SELECT sum(w.quantity) FROM wanted w WHERE w.ticket_type_id = ANY(c.members))
                  > c.total - c.used
        ) AS ok
    ),
    new_order AS (
        INSERT INTO orders (id, user_id, event_id, status, currency, subtotal_minor,
                            discount_minor, total_minor, promo_code_id, expires_at, created_at)
        SELECT CAST(:id AS bigint), CAST(:user_id AS bigint), CAST(:event_id AS bigint),
               CAST('pending' AS order_status), CAST(:currency AS varchar),
               CAST(:subtotal_minor AS bigint), CAST(:discount_minor AS bigint),
               CAST(:total_minor AS bigint), CAST(:promo_code_id AS bigint),
               CAST(:expires_at AS timestamptz), CAST(:created_at AS timestamptz)
        WHERE (SELECT ok FROM fits)
        RETURNING id
    ),
    new_items AS (
        INSERT INTO order_items (order_id, ticket_type_id, quantity, unit_price_minor)
        SELECT new_order.id, w.ticket_type_id, w.quantity, w.unit_price_minor
        FROM new_order, wanted w
        ORDER BY w.n
    )
    SELECT kind, id, total, members, used, (SELECT count(*) FROM new_order) AS placed
    FROM counted
    ORDER BY kind, id
    """
)
_ORDER_COLUMNS = (
    "id",
    "user_id",
    "event_id",
    "currency",
    "subtotal_minor",
    "discount_minor",
    "total_minor",
    "promo_code_id",
    "expires_at",
    "created_at",
)
_NEXT_ORDER_ID = text("SELECT nextval(pg_get_serial_sequence('orders', 'id'))")


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
    """Called under the promo code's lock, so two buyers cannot both take the last use."""
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
    before_hold: Callable[[PlacedOrder], None] | None = None,
) -> PlacedOrder:
    """Create a pending order that holds its tickets until `now + hold`.

    `before_hold` sees the order as it will be written, before the capacities are locked: what
    it writes in the session commits with the order, or not at all, without lengthening the
    time other buyers of the same tickets wait.

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

    subtotal = sum(types[t].price_minor * q for t, q in wanted.items())
    discount = _discount(promo, subtotal)
    placed = PlacedOrder(
        id=session.scalar(_NEXT_ORDER_ID),
        user_id=user_id,
        event_id=event_id,
        status=OrderStatus.PENDING,
        currency=currencies.pop(),
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=subtotal - discount,
        promo_code_id=promo.id if promo else None,
        expires_at=now + hold,
        paid_at=None,
        created_at=now,
        items=[
            PlacedItem(type_id, quantity, types[type_id].price_minor)
            for type_id, quantity in sorted(wanted.items())
        ],
    )
    if before_hold is not None:
        before_hold(placed)

    write_if_it_fits = (
        _HOLD_IF_IT_FITS,
        {
            **inventory.counted_parameters(wanted, now),
            **{name: getattr(placed, name) for name in _ORDER_COLUMNS},
            "quantities": [item.quantity for item in placed.items],
            "unit_prices": [item.unit_price_minor for item in placed.items],
        },
    )
    if promo is not None and promo.max_uses is not None:
        locked = inventory.lock_capacities(session, wanted, promo_code_ids=[promo.id])
        _check_promo_uses(session, promo, now)
        rows = session.execute(*write_if_it_fits).all()
    else:  # the usual case: the order is written the moment the locks are had
        locked, rows = inventory.lock_capacities_then(session, wanted, *write_if_it_fits)
    caps = [inventory.capacity_of(row) for row in rows]
    inventory.check_all_locked(caps, locked)  # (raising rolls the order back)
    placed_count = rows[0][5]
    if not placed_count:
        left = inventory.left_per_ticket_type(caps, wanted)
        raise SoldOut("not enough tickets left", available=left)
    return placed


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
