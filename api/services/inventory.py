"""Availability of ticket types, counted in the database under a lock.

Used capacity = tickets in paid or partially refunded orders + tickets in pending orders whose
hold has not expired. The first term is kept per ticket type by a database trigger
(`ticket_type_sales`, changed in the same transaction as each order's status, so it cannot
drift); the second is counted live. Counting live holds visits every item of the ticket type,
so checkout first reads an upper bound in O(1): the same triggers also keep the tickets in
pending orders, lapsed or not, and an order that fits under sold + pending fits; only near a
sell-out does it count exactly. A ticket type may also draw on shared quotas; an order fits
only if it fits every capacity it touches. `lock_capacities` serialises writers per capacity
with transaction-scoped advisory locks taken in a fixed order (no deadlocks), so "count, then
insert" cannot oversell under any concurrency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from psycopg.errors import LockNotAvailable
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.db import Statement, compiled, run_together
from api.errors import Busy
from api.models import (
    HOLDING_STATUSES,
    Order,
    OrderItem,
    OrderStatus,
    TicketTypeSales,
)

# Advisory-lock namespaces (the first key of pg_advisory_xact_lock(int, int)).
TICKET_TYPE_LOCK = 1
QUOTA_LOCK = 2
PROMO_CODE_LOCK = 3  # a promo code with a use limit, which orders of any ticket type share
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


# Every capacity the given ticket types (:ids) draw on: their own, and each shared quota that
# touches any of them (`caps`), with their ticket types (`member_types`).
_CAPS = """
    caps AS (
        SELECT CAST(:type_kind AS integer) AS kind, t.id, t.capacity AS total,
               ARRAY[t.id] AS members
        FROM ticket_types t
        WHERE t.id = ANY(:ids)
        UNION ALL
        SELECT CAST(:quota_kind AS integer), q.id, q.capacity, array_agg(m.ticket_type_id)
        FROM quotas q
        JOIN quota_ticket_types m ON m.quota_id = q.id
        WHERE q.id IN (SELECT quota_id FROM quota_ticket_types WHERE ticket_type_id = ANY(:ids))
        GROUP BY q.id, q.capacity
    ),
    member_types AS (SELECT DISTINCT unnest(members) AS ticket_type_id FROM caps),
"""
# What the member ticket types have taken at :now, exactly: sold, plus live holds.
_TAKEN = """
    taken AS (
        SELECT s.ticket_type_id, s.tickets_sold AS quantity
        FROM ticket_type_sales s
        WHERE s.ticket_type_id IN (SELECT ticket_type_id FROM member_types)
        UNION ALL
        SELECT i.ticket_type_id, i.quantity
        FROM order_items i
        JOIN orders o ON o.id = i.order_id
        WHERE i.ticket_type_id IN (SELECT ticket_type_id FROM member_types)
          AND o.status = 'pending' AND o.expires_at > :now
    ),
"""
# Each capacity with the tickets it has taken at :now, as the CTE `counted`, counted exactly.
COUNTED_CAPACITIES = f"""{_CAPS}{_TAKEN}
    counted AS (
        SELECT c.kind, c.id, c.total, c.members,
               (SELECT coalesce(sum(t.quantity), 0) FROM taken t
                WHERE t.ticket_type_id = ANY(c.members))::bigint AS used
        FROM caps c
    )
"""
# Checkout's `counted`, for an order given as a CTE `wanted(ticket_type_id, quantity)` defined
# before it. Counting the live holds exactly visits every item of the ticket types, so first
# each capacity is bounded in O(1) from the trigger-kept counts: sold + pending (held -
# released: lapsed holds the sweeper has not marked yet included) is never less than what is
# taken. If the order fits under every bound, `used` is that bound; only if it does not (near
# a sell-out) is every capacity counted exactly, so a refusal reports exact figures. A member
# ticket type without both count rows (rows loaded with the triggers off) has no bound: its
# capacity is counted exactly. Checkout reads it holding the capacities' locks, inside the
# statement that writes the order.
COUNTED_FOR_ORDER = f"""{_CAPS}
    bounded AS (
        SELECT c.kind, c.id, c.total, c.members, k.at_most, k.kept = cardinality(c.members)
               AS kept,
               (SELECT coalesce(sum(w.quantity), 0) FROM wanted w
                WHERE w.ticket_type_id = ANY(c.members))::bigint AS asked
        FROM caps c,
             LATERAL (SELECT coalesce(sum(s.tickets_sold + h.tickets_held
                                          - s.tickets_released), 0)::bigint AS at_most,
                             count(*) AS kept
                      FROM ticket_type_sales s
                      JOIN ticket_type_holds h ON h.ticket_type_id = s.ticket_type_id
                      WHERE s.ticket_type_id = ANY(c.members)) k
    ),
    fits_the_bounds AS (
        SELECT bool_and(kept AND asked <= total - at_most) AS ok FROM bounded
    ),{_TAKEN}
    counted AS (
        SELECT b.kind, b.id, b.total, b.members,
               CASE WHEN (SELECT ok FROM fits_the_bounds) THEN b.at_most
                    ELSE (SELECT coalesce(sum(t.quantity), 0) FROM taken t
                          WHERE t.ticket_type_id = ANY(b.members))::bigint
               END AS used
        FROM bounded b
    )
"""
_CAPACITIES = text(
    f"WITH {COUNTED_CAPACITIES} SELECT kind, id, total, members, used FROM counted "
    "ORDER BY kind, id"
)


def counted_parameters(ticket_type_ids: Iterable[int], now: datetime) -> dict:
    """The parameters `COUNTED_CAPACITIES` and `COUNTED_FOR_ORDER` take."""
    return {
        "ids": sorted(set(ticket_type_ids)),
        "now": now,
        "type_kind": TICKET_TYPE_LOCK,
        "quota_kind": QUOTA_LOCK,
    }


def capacity_of(row) -> Capacity:
    """A `Capacity` from a row that starts (kind, id, total, members, used)."""
    kind, cap_id, total, members, used_now = row[:5]
    return Capacity(kind, cap_id, total, used_now, frozenset(members))


def capacities(session: Session, ticket_type_ids: Iterable[int], now: datetime) -> list[Capacity]:
    """Every capacity the given ticket types draw on, with what is used of each now."""
    rows = session.execute(_CAPACITIES, counted_parameters(ticket_type_ids, now))
    return [capacity_of(row) for row in rows]


# The quotas the ticket types (:ids) draw on, as one sorted array.
QUOTAS_OF = compiled(
    text(
        "SELECT ARRAY(SELECT DISTINCT quota_id FROM quota_ticket_types "
        "WHERE ticket_type_id = ANY(CAST(:ids AS bigint[])) ORDER BY quota_id)"
    )
)


def lock_statement(
    ticket_type_ids: Iterable[int],
    quota_ids: Iterable[int] = (),
    promo_code_ids: Iterable[int] = (),
) -> tuple[frozenset[tuple[int, int]], Statement]:
    """The (kind, id) to lock, and one statement that sets the lock timeout and takes them in
    order (kinds, then ids, ascending: every transaction takes them in one order, so none
    waits in a circle).

    It also makes the rest of the transaction run prepared statements on their generic
    plan: PostgreSQL otherwise re-plans checkout's statement on every run (a custom plan
    for each set of parameters), 0.7 ms of planning that every buyer of the ticket type
    would wait for, under the locks.
    """
    keys = [(TICKET_TYPE_LOCK, i) for i in sorted(set(ticket_type_ids))]
    keys += [(QUOTA_LOCK, q) for q in sorted(set(quota_ids))]
    keys += [(PROMO_CODE_LOCK, p) for p in sorted(set(promo_code_ids))]
    # Target-list expressions run left to right: the settings first, then the locks in order.
    calls = ", ".join("pg_advisory_xact_lock(%s, %s)" for _ in keys)
    params = [LOCK_TIMEOUT, *(part for key in keys for part in key)]
    settings = "set_config('lock_timeout', %s, true), "
    settings += "set_config('plan_cache_mode', 'force_generic_plan', true)"
    return frozenset(keys), (f"SELECT {settings}, {calls}", params)


def _lock_statement(
    session: Session, ids: list[int], promo_code_ids: Iterable[int] = ()
) -> tuple[frozenset[tuple[int, int]], Statement]:
    """`lock_statement`, looking up the quotas involved first (one round trip)."""
    (cursor,) = run_together(session, [(QUOTAS_OF, {"ids": ids})])
    return lock_statement(ids, cursor.fetchone()[0], promo_code_ids)


@contextmanager
def busy_on_lock_timeout() -> Iterator[None]:
    try:
        yield
    except (OperationalError, LockNotAvailable) as exc:
        cause = getattr(exc, "orig", exc)
        if getattr(cause, "sqlstate", None) == "55P03":  # lock_not_available
            raise Busy("tickets are being sold very fast; retry in a moment") from exc
        raise


def lock_capacities(
    session: Session, ticket_type_ids: Iterable[int], promo_code_ids: Iterable[int] = ()
) -> frozenset[tuple[int, int]]:
    """Take the transaction's advisory locks on each ticket type and quota involved, in order.

    Two round trips: the quotas involved (and the lock timeout), then every lock in one
    statement. Returns the (kind, id) locked, so that a caller can tell a quota that joined
    in between from one it holds. Raises `Busy` if another transaction holds one for longer
    than LOCK_TIMEOUT.
    """
    keys, locking = _lock_statement(session, sorted(set(ticket_type_ids)), promo_code_ids)
    with busy_on_lock_timeout():
        run_together(session, [locking])
    return keys


def lock_and_count(
    session: Session, ticket_type_ids: Iterable[int], clock: Callable[[], datetime]
) -> tuple[list[Capacity], datetime]:
    """Lock every capacity the ticket types draw on, then count what each has taken at the
    time read once the locks are held; the count and that time.

    What the count sees cannot change until the transaction ends, and a checkout that held
    the locks before counted at an earlier time. Raises `Busy` when a quota joined between
    looking up the locks and counting (retrying takes its lock too).
    """
    ids = set(ticket_type_ids)
    locked = lock_capacities(session, ids)
    now = clock()
    caps = capacities(session, ids, now)
    check_all_locked(caps, locked)
    return caps, now


def check_all_locked(caps: list[Capacity], locked: frozenset[tuple[int, int]]) -> None:
    """Raise `Busy` when a quota joined between taking the locks and counting (a retry takes
    its lock too)."""
    if any((cap.kind, cap.id) not in locked for cap in caps):
        raise Busy("this event's ticket quotas changed a moment ago; retry")


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
