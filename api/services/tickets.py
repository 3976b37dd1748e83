"""Tickets: issued when an order is paid, voided when it is refunded in full, checked in once."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.errors import AlreadyCheckedIn, NotFound, TicketNotValid
from api.models import (
    HOLDING_STATUSES,
    CheckIn,
    Event,
    EventStatus,
    Order,
    OrderItem,
    Role,
    Ticket,
    TicketStatus,
)
from api.services.access import Caller

# Scans refused for a reason the door staff must see (an unknown code is simply NotFound).
CHECK_IN_REFUSALS = (AlreadyCheckedIn, TicketNotValid)


def new_code() -> str:
    """128 random bits, URL-safe: the ticket's secret, printed on its QR code."""
    return secrets.token_urlsafe(16)


def issue(session: Session, order: Order) -> None:
    items = session.scalars(select(OrderItem).where(OrderItem.order_id == order.id)).all()
    session.add_all(
        Ticket(
            order_id=order.id,
            order_item_id=item.id,
            ticket_type_id=item.ticket_type_id,
            code=new_code(),
        )
        for item in items
        for _ in range(item.quantity)
    )


def void_all(session: Session, order_id: int) -> None:
    session.execute(
        update(Ticket).where(Ticket.order_id == order_id).values(status=TicketStatus.VOID)
    )


def of_order(session: Session, order_id: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.order_id == order_id).order_by("id")))


def by_code(session: Session, code: str) -> Ticket:
    ticket = session.scalar(select(Ticket).where(Ticket.code == code))
    if ticket is None:
        raise NotFound("ticket not found")
    return ticket


def check_in(session: Session, caller: Caller, *, code: str, now: datetime) -> CheckIn:
    """Let a ticket in once. A second scan raises AlreadyCheckedIn with the first scan's time.

    The unique ticket_id on check_ins decides a race between two doors scanning at once.
    """
    caller.require(Role.ORGANIZER)
    row = session.execute(
        select(Ticket, Order, Event)
        .join(Order, Order.id == Ticket.order_id)
        .join(Event, Event.id == Order.event_id)
        .where(Ticket.code == code)
    ).first()
    if row is None or not caller.manages(row.Event.organizer_id):
        raise NotFound("ticket not found")
    ticket, order, event = row
    if ticket.status != TicketStatus.VALID or order.status not in HOLDING_STATUSES:
        raise TicketNotValid(
            "this ticket is not valid for entry",
            ticket_status=ticket.status.value,
            order_status=order.status.value,
        )
    if event.status != EventStatus.PUBLISHED:
        raise TicketNotValid("this event is not taking entries", event_status=event.status.value)
    inserted = session.scalar(
        insert(CheckIn)
        .values(ticket_id=ticket.id, checked_in_by=caller.user_id, checked_in_at=now)
        .on_conflict_do_nothing(index_elements=["ticket_id"])
        .returning(CheckIn.id)
    )
    first = session.scalar(select(CheckIn).where(CheckIn.ticket_id == ticket.id))
    if inserted is None:
        raise AlreadyCheckedIn(
            "this ticket was already checked in",
            first_checked_in_at=first.checked_in_at.isoformat(),
        )
    return first
