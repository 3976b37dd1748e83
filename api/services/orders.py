"""Placing orders (which hold tickets while pending) and releasing expired holds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from sqlalchemy import BigInteger, any_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from api.db import Statement, commit_with, compiled, run_together
from api.errors import (
    Busy,
    InvalidInput,
    InvalidState,
    NotFound,
    OverOrderLimit,
    SalesClosed,
    SoldOut,
    Unauthorized,
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
    TicketTypeSales,
    User,
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


# Refusals raised inside the statement that writes the order (`checkout_refuse()`, migration
# 0007), so that the COMMIT sent with it cannot commit a refused order.
_SOLD_OUT = "TF001"
_CAPACITIES_CHANGED = "TF002"
_PROMO_USED_UP = "TF003"

# Under the capacities' locks, one statement counts what each capacity has taken and, if the
# order fits them all (and a limited promo code has a use left), writes it and its items;
# otherwise it fails with one of the refusals above, the counts in its detail.
_HOLD_OR_REFUSE = compiled(
    text(
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
    promo_uses AS (
        SELECT count(*) AS n FROM orders o
        WHERE o.promo_code_id = CAST(:promo_code_id AS bigint)
          AND (o.status IN ('paid', 'partially_refunded')
               OR (o.status = 'pending' AND o.expires_at > :now))
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
    SELECT CASE
        WHEN CAST(:promo_max_uses AS bigint) IS NOT NULL
             AND (SELECT n FROM promo_uses) >= CAST(:promo_max_uses AS bigint)
            THEN checkout_refuse('{_PROMO_USED_UP}', 'this promo code has been used up', NULL)
        WHEN EXISTS (SELECT 1 FROM counted WHERE kind = CAST(:quota_kind AS integer)
                     AND NOT id = ANY(CAST(:locked_quotas AS bigint[])))
            THEN checkout_refuse('{_CAPACITIES_CHANGED}', 'a quota joined meanwhile', NULL)
        WHEN NOT (SELECT ok FROM fits)
            THEN checkout_refuse(
                '{_SOLD_OUT}', 'not enough tickets left',
                (SELECT jsonb_agg(jsonb_build_array(kind, id, total, members, used)
                                  ORDER BY kind, id)
                 FROM counted))
        ELSE true
    END
    """
    )
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
# What placing an order reads first, in one round trip.
_BUYER = compiled(select(User.is_active).where(User.id == bindparam("user_id")))
_EVENT = compiled(
    select(Event.status, Event.sales_start_at, Event.sales_end_at).where(
        Event.id == bindparam("event_id")
    )
)
_TICKET_TYPES = compiled(
    select(
        TicketType.id,
        TicketType.price_minor,
        TicketType.currency,
        TicketType.max_per_order,
        TicketType.sales_start_at,
        TicketType.sales_end_at,
    ).where(
        TicketType.id == any_(bindparam("ids", type_=ARRAY(BigInteger))),
        TicketType.event_id == bindparam("event_id"),
    )
)
_PROMO = compiled(
    select(
        PromoCode.id,
        PromoCode.kind,
        PromoCode.value,
        PromoCode.max_uses,
        PromoCode.valid_from,
        PromoCode.valid_until,
    ).where(PromoCode.event_id == bindparam("event_id"), PromoCode.code == bindparam("code"))
)
_NEXT_ORDER_ID = compiled(text("SELECT nextval(pg_get_serial_sequence('orders', 'id'))"))


@dataclass(frozen=True)
class _TicketType:
    id: int
    price_minor: int
    currency: str
    max_per_order: int
    sales_start_at: datetime | None
    sales_end_at: datetime | None


@dataclass(frozen=True)
class _Promo:
    id: int
    kind: DiscountKind
    value: int
    max_uses: int | None
    valid_from: datetime | None
    valid_until: datetime | None


def _sales_open(event_window: tuple[datetime, datetime], ticket_type, now: datetime) -> bool:
    start = ticket_type.sales_start_at or event_window[0]
    end = ticket_type.sales_end_at or event_window[1]
    return start <= now < end


def _discount(promo: _Promo | None, subtotal: int) -> int:
    if promo is None:
        return 0
    if promo.kind == DiscountKind.PERCENT:
        return subtotal * promo.value // 100  # rounds in the buyer's disfavour by < 1 minor unit
    return min(promo.value, subtotal)


def _promo(row: tuple | None, now: datetime) -> _Promo:
    if row is None:
        raise InvalidInput("unknown promo code", field="promo_code")
    promo = _Promo(*row)
    if (promo.valid_from and now < promo.valid_from) or (
        promo.valid_until and now >= promo.valid_until
    ):
        raise InvalidInput("this promo code is not valid now", field="promo_code")
    return promo


@contextmanager
def _refusals(wanted: Mapping[int, int]) -> Iterator[None]:
    """The write statement's refusals, as domain errors."""
    try:
        with inventory.busy_on_lock_timeout():
            yield
    except psycopg.Error as exc:
        if exc.sqlstate == _SOLD_OUT:
            caps = [inventory.capacity_of(row) for row in json.loads(exc.diag.message_detail)]
            left = inventory.left_per_ticket_type(caps, wanted)
            raise SoldOut("not enough tickets left", available=left) from exc
        if exc.sqlstate == _CAPACITIES_CHANGED:
            raise Busy("this event's ticket quotas changed a moment ago; retry") from exc
        if exc.sqlstate == _PROMO_USED_UP:
            raise InvalidInput("this promo code has been used up", field="promo_code") from exc
        raise


def place_order(
    session: Session,
    *,
    user_id: int,
    event_id: int,
    lines: list[LineRequest],
    now: datetime,
    hold: timedelta,
    promo_code: str | None = None,
    before_hold: Callable[[PlacedOrder], Statement | None] | None = None,
) -> PlacedOrder:
    """Create a pending order that holds its tickets until `now + hold`; commits.

    Two round trips: one reads what the checks need (the buyer, the event, its ticket types,
    the quotas they draw on, the promo code) and draws the order's id; the other takes the
    capacities' locks, writes the order if it fits, and commits, so that other buyers of the
    same tickets wait for server time only. `before_hold` sees the order as it will be
    written and may return a statement to write with it, before the locks (the
    Idempotency-Key's answer): it commits with the order, or not at all.

    Raises Unauthorized (the buyer's account is gone or disabled), NotFound (unknown or
    unpublished event or ticket type), SalesClosed, OverOrderLimit, SoldOut (with what is
    left), InvalidInput (bad promo code, empty order) or Busy.
    """
    wanted = Counter()
    for line in lines:
        if line.quantity <= 0:
            raise InvalidInput("quantities must be positive", field="items")
        wanted[line.ticket_type_id] += line.quantity
    if not wanted:
        raise InvalidInput("an order needs at least one ticket", field="items")
    ids = sorted(wanted)

    reads = [
        (_BUYER, {"user_id": user_id}),
        (_EVENT, {"event_id": event_id}),
        (_TICKET_TYPES, {"ids": ids, "event_id": event_id}),
        (inventory.QUOTAS_OF, {"ids": ids}),
        (_NEXT_ORDER_ID, None),
    ]
    if promo_code:
        reads.append((_PROMO, {"event_id": event_id, "code": promo_code.upper()}))
    buyer, event, found, quotas, next_id, *promo_row = run_together(session, reads)

    buyer = buyer.fetchone()
    if buyer is None or not buyer[0]:
        raise Unauthorized("the account does not exist or is disabled")
    event = event.fetchone()
    if event is None or event[0] != EventStatus.PUBLISHED:
        raise NotFound("event not found")
    event_window = (event[1], event[2])
    types = {row[0]: _TicketType(*row) for row in found.fetchall()}
    missing = sorted(set(wanted) - set(types))
    if missing:
        raise NotFound("ticket type not found", ticket_type_ids=missing)
    currencies = {t.currency for t in types.values()}
    if len(currencies) != 1:
        raise InvalidInput("all tickets of one order must share a currency", field="items")
    for type_id, quantity in wanted.items():
        ticket_type = types[type_id]
        if not _sales_open(event_window, ticket_type, now):
            raise SalesClosed("sales are not open for this ticket type", ticket_type_id=type_id)
        if quantity > ticket_type.max_per_order:
            raise OverOrderLimit(
                f"at most {ticket_type.max_per_order} per order",
                ticket_type_id=type_id,
                max_per_order=ticket_type.max_per_order,
            )
    promo = _promo(promo_row[0].fetchone(), now) if promo_code else None

    subtotal = sum(types[t].price_minor * q for t, q in wanted.items())
    discount = _discount(promo, subtotal)
    placed = PlacedOrder(
        id=next_id.fetchone()[0],
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
        items=[PlacedItem(type_id, wanted[type_id], types[type_id].price_minor) for type_id in ids],
    )
    writes = []
    if before_hold is not None and (statement := before_hold(placed)) is not None:
        writes.append(statement)

    limited = promo is not None and promo.max_uses is not None
    quota_ids = quotas.fetchone()[0]
    _, locking = inventory.lock_statement(ids, quota_ids, [promo.id] if limited else [])
    write_if_it_fits = {
        **inventory.counted_parameters(ids, now),
        **{name: getattr(placed, name) for name in _ORDER_COLUMNS},
        "quantities": [item.quantity for item in placed.items],
        "unit_prices": [item.unit_price_minor for item in placed.items],
        "promo_max_uses": promo.max_uses if limited else None,
        "locked_quotas": quota_ids,
    }
    with _refusals(wanted):
        commit_with(session, [*writes, locking, (_HOLD_OR_REFUSE, write_if_it_fits)])
    return placed


SWEEP_BATCH = 500


def expire_holds(session: Session, *, now: datetime, limit: int = SWEEP_BATCH) -> int:
    """Mark up to `limit` pending orders past their hold as expired; return how many.

    Expired holds stop counting at `expires_at` whether or not this ran: the sweeper only
    makes the state visible. The orders a payment is writing are skipped (it decides them),
    and the ticket types' count rows, which each expired order's trigger updates at the
    commit, are locked first in id order, as every payment's trigger takes them: a payment
    never waits on the sweeper in a circle, and at most for one batch.
    """
    lapsed = list(
        session.scalars(
            select(Order.id)
            .where(Order.status == OrderStatus.PENDING, Order.expires_at <= now)
            .order_by(Order.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not lapsed:
        return 0
    session.execute(
        select(TicketTypeSales.ticket_type_id)
        .where(
            TicketTypeSales.ticket_type_id.in_(
                select(OrderItem.ticket_type_id).where(OrderItem.order_id.in_(lapsed))
            )
        )
        .order_by(TicketTypeSales.ticket_type_id)
        .with_for_update()
    ).all()
    session.execute(update(Order).where(Order.id.in_(lapsed)).values(status=OrderStatus.EXPIRED))
    return len(lapsed)


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
