"""Organizers build their events: venues, events, ticket types, shared quotas, promo codes.

Every function takes the caller and answers NotFound for anything outside the organizers the
caller manages, so one organizer can never see or change another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from api.errors import Conflict, InvalidInput, InvalidState, NotFound
from api.models import (
    Event,
    EventStatus,
    Order,
    PromoCode,
    Quota,
    Role,
    TicketType,
    User,
    Venue,
)
from api.models import quota_ticket_types as qtt
from api.services import inventory
from api.services.access import Caller, managed_event

EDITABLE = (EventStatus.DRAFT, EventStatus.PUBLISHED)


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput("unknown time zone", field="timezone", value=name) from exc


def _check_event_times(event: Event) -> None:
    if event.ends_at <= event.starts_at:
        raise InvalidInput("an event must end after it starts", field="ends_at")
    if event.sales_end_at <= event.sales_start_at:
        raise InvalidInput("sales must end after they start", field="sales_end_at")
    if event.sales_end_at > event.ends_at:
        raise InvalidInput("sales cannot end after the event", field="sales_end_at")


def _managed_organizer(caller: Caller, organizer_id: int | None) -> int:
    """The organizer to act for: the given one if managed, else the caller's only one."""
    caller.require(Role.ORGANIZER)
    if organizer_id is None:
        if len(caller.organizer_ids) != 1:
            raise InvalidInput("say which organizer this is for", field="organizer_id")
        organizer_id = next(iter(caller.organizer_ids))
    if not caller.manages(organizer_id):
        raise NotFound("organizer not found")
    return organizer_id


def _check_venue(session: Session, venue_id: int | None, organizer_id: int) -> None:
    if venue_id is None:
        return
    venue = session.get(Venue, venue_id)
    if venue is None or venue.organizer_id != organizer_id:
        raise NotFound("venue not found", field="venue_id")


def create_venue(session: Session, caller: Caller, data: Mapping[str, Any]) -> Venue:
    organizer_id = _managed_organizer(caller, data.get("organizer_id"))
    venue = Venue(
        organizer_id=organizer_id, **{k: v for k, v in data.items() if k != "organizer_id"}
    )
    session.add(venue)
    session.flush()
    return venue


def venues(session: Session, caller: Caller) -> list[Venue]:
    caller.require(Role.ORGANIZER)
    query = select(Venue).order_by(Venue.id)
    if not caller.is_admin:
        query = query.where(Venue.organizer_id.in_(caller.organizer_ids))
    return list(session.scalars(query))


def create_event(session: Session, caller: Caller, data: Mapping[str, Any]) -> Event:
    organizer_id = _managed_organizer(caller, data.get("organizer_id"))
    _check_timezone(data["timezone"])
    _check_venue(session, data.get("venue_id"), organizer_id)
    event = Event(
        organizer_id=organizer_id,
        status=EventStatus.DRAFT,
        **{k: v for k, v in data.items() if k != "organizer_id"},
    )
    _check_event_times(event)
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, caller: Caller, *, status: EventStatus | None, page: int, size: int
) -> tuple[list[Event], int]:
    caller.require(Role.ORGANIZER)
    query = select(Event)
    if not caller.is_admin:
        query = query.where(Event.organizer_id.in_(caller.organizer_ids))
    if status:
        query = query.where(Event.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(Event.starts_at, Event.id).offset((page - 1) * size).limit(size)
    )
    return list(rows), total


def get_event(session: Session, caller: Caller, event_id: int) -> Event:
    return managed_event(session, caller, event_id)


def update_event(
    session: Session, caller: Caller, event_id: int, changes: Mapping[str, Any]
) -> Event:
    event = managed_event(session, caller, event_id, lock=True)
    if event.status not in EDITABLE:
        raise InvalidState(f"a {event.status.value} event cannot be changed")
    if "timezone" in changes:
        _check_timezone(changes["timezone"])
    if "venue_id" in changes:
        _check_venue(session, changes["venue_id"], event.organizer_id)
    for name, value in changes.items():
        setattr(event, name, value)
    _check_event_times(event)
    session.flush()
    return event


def publish(session: Session, caller: Caller, event_id: int, *, now: datetime) -> Event:
    event = managed_event(session, caller, event_id, lock=True)
    if event.status == EventStatus.PUBLISHED:
        return event
    if event.status != EventStatus.DRAFT:
        raise InvalidState(f"a {event.status.value} event cannot be published")
    has_tickets = session.scalar(select(func.count()).where(TicketType.event_id == event_id))
    if not has_tickets:
        raise InvalidState("add at least one ticket type before publishing")
    if event.ends_at <= now:
        raise InvalidState("the event is over")
    event.status = EventStatus.PUBLISHED
    event.published_at = now
    session.flush()
    return event


def cancel(session: Session, caller: Caller, event_id: int) -> Event:
    """Stop sales and entry. Paid orders stay as they are: refund them explicitly."""
    event = managed_event(session, caller, event_id, lock=True)
    if event.status == EventStatus.CANCELLED:
        return event
    if event.status == EventStatus.ENDED:
        raise InvalidState("an ended event cannot be cancelled")
    event.status = EventStatus.CANCELLED
    session.flush()
    return event


def _editable_event(session: Session, caller: Caller, event_id: int) -> Event:
    event = managed_event(session, caller, event_id, lock=True)
    if event.status not in EDITABLE:
        raise InvalidState(f"a {event.status.value} event cannot be changed")
    return event


def ticket_types(session: Session, caller: Caller, event_id: int) -> list[TicketType]:
    managed_event(session, caller, event_id)
    return list(
        session.scalars(
            select(TicketType).where(TicketType.event_id == event_id).order_by(TicketType.id)
        )
    )


def add_ticket_type(
    session: Session, caller: Caller, event_id: int, data: Mapping[str, Any]
) -> TicketType:
    _editable_event(session, caller, event_id)
    ticket_type = TicketType(event_id=event_id, **data)
    session.add(ticket_type)
    session.flush()
    return ticket_type


def update_ticket_type(
    session: Session,
    caller: Caller,
    event_id: int,
    ticket_type_id: int,
    changes: Mapping[str, Any],
    *,
    now: datetime,
) -> TicketType:
    _editable_event(session, caller, event_id)
    ticket_type = session.get(TicketType, ticket_type_id)
    if ticket_type is None or ticket_type.event_id != event_id:
        raise NotFound("ticket type not found")
    if "capacity" in changes:
        inventory.lock_capacities(session, [ticket_type_id])
        taken = inventory.used(session, [ticket_type_id], now).get(ticket_type_id, 0)
        if changes["capacity"] < taken:
            raise Conflict(
                "capacity cannot go below the tickets already sold or held",
                field="capacity",
                taken=taken,
            )
    # A new price applies to new orders only: each order item keeps the price it was sold at.
    for name, value in changes.items():
        setattr(ticket_type, name, value)
    session.flush()
    return ticket_type


def add_quota(
    session: Session, caller: Caller, event_id: int, *, name: str, capacity: int, ids: list[int]
) -> Quota:
    _editable_event(session, caller, event_id)
    found = set(
        session.scalars(
            select(TicketType.id).where(TicketType.id.in_(ids), TicketType.event_id == event_id)
        )
    )
    missing = sorted(set(ids) - found)
    if missing:
        raise NotFound("ticket type not found", ticket_type_ids=missing)
    quota = Quota(event_id=event_id, name=name, capacity=capacity)
    session.add(quota)
    session.flush()
    session.execute(
        insert(qtt), [{"quota_id": quota.id, "ticket_type_id": t} for t in sorted(found)]
    )
    return quota


def quotas(session: Session, caller: Caller, event_id: int) -> list[tuple[Quota, list[int]]]:
    managed_event(session, caller, event_id)
    rows = session.scalars(select(Quota).where(Quota.event_id == event_id).order_by(Quota.id))
    result = []
    for quota in rows:
        members = session.scalars(
            select(qtt.c.ticket_type_id)
            .where(qtt.c.quota_id == quota.id)
            .order_by("ticket_type_id")
        )
        result.append((quota, list(members)))
    return result


def add_promo_code(
    session: Session, caller: Caller, event_id: int, data: Mapping[str, Any]
) -> PromoCode:
    _editable_event(session, caller, event_id)
    code = data["code"].strip().upper()
    exists = session.scalar(
        select(PromoCode.id).where(PromoCode.event_id == event_id, PromoCode.code == code)
    )
    if exists:
        raise Conflict("this event already has that promo code", field="code")
    promo = PromoCode(event_id=event_id, **{**data, "code": code})
    session.add(promo)
    session.flush()
    return promo


def promo_codes(session: Session, caller: Caller, event_id: int) -> list[PromoCode]:
    managed_event(session, caller, event_id)
    return list(
        session.scalars(
            select(PromoCode).where(PromoCode.event_id == event_id).order_by(PromoCode.id)
        )
    )


def orders(
    session: Session, caller: Caller, event_id: int, *, page: int, size: int
) -> tuple[list[tuple[Order, str]], int]:
    """The event's orders with each buyer's e-mail (the organizer's attendee list)."""
    managed_event(session, caller, event_id)
    query = (
        select(Order, User.email)
        .join(User, User.id == Order.user_id)
        .where(Order.event_id == event_id)
    )
    total = session.scalar(select(func.count()).where(Order.event_id == event_id))
    rows = session.execute(query.order_by(Order.id).offset((page - 1) * size).limit(size))
    return [(order, email) for order, email in rows], total
