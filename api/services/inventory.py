"""Availability of ticket types, counted in the database under a lock.

Used capacity = tickets in paid or partially refunded orders + tickets in pending orders whose
hold has not expired. The first term is kept per ticket type by a database trigger
(`ticket_type_sales`, changed in the same transaction as each order's status, so it cannot
drift); the second is counted live, over the few unexpired holds. A ticket type may also draw
on shared quotas; an order fits only if it fits every capacity it touches. `lock_capacities`
serialises writers per capacity with transaction-scoped advisory locks taken in a fixed order
(no deadlocks), so "count, then insert" cannot oversell under any concurrency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.errors import Busy
from api.models import (
    HOLDING_STATUSES,
    Order,
    OrderItem,
    OrderStatus,
    Quota,
    TicketType,
    TicketTypeSales,
)
from api.models import quota_ticket_types as qtt

# Advisory-lock namespaces (the first key of pg_advisory_xact_lock(int, int)).
TICKET_TYPE_LOCK = 1
QUOTA_LOCK = 2
LOCK_TIMEOUT = "3s"


@dataclass(frozen=True)
class Capacity:
    """One capacity an order draws on: a ticket type's own, or a shared quota."""

    kind: int  # TICKET_TYPE_LOCK or QUOTA_LOCK
    id: int
    total: int
    used: int
    ticket_type_ids: frozenset[int]

    @property
    def left(self) -> int:
        return max(self.total - self.used, 0)


def live_hold(now: datetime):
    """Pending orders whose hold has not lapsed at `now`."""
    return and_(Order.status == OrderStatus.PENDING, Order.expires_at > now)


def holding(now: datetime):
    """Orders whose tickets take capacity at `now`."""
    return or_(Order.status.in_(HOLDING_STATUSES), live_hold(now))


def used(session: Session, ids: Iterable[int], now: datetime) -> dict[int, int]:
    """Tickets sold (kept per ticket type by a trigger) plus tickets in unexpired holds."""
    ids = list(ids)
    counts: dict[int, int] = dict(
        session.execute(
            select(TicketTypeSales.ticket_type_id, TicketTypeSales.tickets_sold).where(
                TicketTypeSales.ticket_type_id.in_(ids)
            )
        ).all()
    )
    held = session.execute(
        select(OrderItem.ticket_type_id, func.sum(OrderItem.quantity))
        .join(Order, Order.id == OrderItem.order_id)
        .where(OrderItem.ticket_type_id.in_(ids), live_hold(now))
        .group_by(OrderItem.ticket_type_id)
    ).all()
    for ticket_type_id, quantity in held:
        counts[ticket_type_id] = counts.get(ticket_type_id, 0) + int(quantity)
    return counts


def capacities(session: Session, ticket_type_ids: Iterable[int], now: datetime) -> list[Capacity]:
    """Every capacity the given ticket types draw on, with what is used of each now."""
    ids = sorted(set(ticket_type_ids))
    types = session.execute(
        select(TicketType.id, TicketType.capacity).where(TicketType.id.in_(ids))
    ).all()
    quota_rows = session.execute(
        select(Quota.id, Quota.capacity, qtt.c.ticket_type_id)
        .join(qtt, qtt.c.quota_id == Quota.id)
        .where(
            Quota.id.in_(
                select(qtt.c.quota_id).where(qtt.c.ticket_type_id.in_(ids)).scalar_subquery()
            )
        )
    ).all()
    members: dict[int, set[int]] = defaultdict(set)
    quota_totals: dict[int, int] = {}
    for quota_id, total, member in quota_rows:
        members[quota_id].add(member)
        quota_totals[quota_id] = total
    all_types = set(ids).union(*members.values()) if members else set(ids)
    used_now = used(session, all_types, now)
    result = [
        Capacity(TICKET_TYPE_LOCK, type_id, total, used_now.get(type_id, 0), frozenset({type_id}))
        for type_id, total in types
    ]
    result += [
        Capacity(
            QUOTA_LOCK,
            quota_id,
            quota_totals[quota_id],
            sum(used_now.get(member, 0) for member in members[quota_id]),
            frozenset(members[quota_id]),
        )
        for quota_id in sorted(members)
    ]
    return result


def lock_capacities(session: Session, ticket_type_ids: Iterable[int]) -> None:
    """Take the transaction's advisory locks on each ticket type and quota involved, in order.

    Raises `Busy` if another transaction holds one for longer than LOCK_TIMEOUT.
    """
    ids = sorted(set(ticket_type_ids))
    quota_ids = session.scalars(
        select(qtt.c.quota_id).where(qtt.c.ticket_type_id.in_(ids)).distinct()
    ).all()
    keys = [(TICKET_TYPE_LOCK, i) for i in ids] + [(QUOTA_LOCK, q) for q in sorted(quota_ids)]
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    try:
        for kind, key in keys:
            session.execute(
                text("SELECT pg_advisory_xact_lock(:kind, :key)"), {"kind": kind, "key": key}
            )
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Busy("tickets are being sold very fast; retry in a moment") from exc
        raise


def shortfalls(capacities_now: list[Capacity], wanted: Mapping[int, int]) -> list[Capacity]:
    """The capacities that cannot take `wanted` (ticket type id -> quantity) on top of use."""
    return [
        cap
        for cap in capacities_now
        if sum(wanted.get(t, 0) for t in cap.ticket_type_ids) > cap.left
    ]


def left_per_ticket_type(caps: list[Capacity], ticket_type_ids: Iterable[int]) -> dict[int, int]:
    """How many of each ticket type fit in every capacity it draws on."""
    requested = set(ticket_type_ids)
    result: dict[int, int] = {}
    for cap in caps:
        for type_id in cap.ticket_type_ids & requested:
            result[type_id] = min(result.get(type_id, cap.left), cap.left)
    return result


def available(session: Session, ticket_type_ids: Iterable[int], now: datetime) -> dict[int, int]:
    """How many of each ticket type could be bought now (not locked: for display only)."""
    requested = set(ticket_type_ids)
    return left_per_ticket_type(capacities(session, requested, now), requested)
