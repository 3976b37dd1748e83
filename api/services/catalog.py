"""Reading the public catalog: published events, searchable and filterable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.models import Event, EventStatus, TicketType, Venue
from api.services import inventory


@dataclass(frozen=True)
class EventFilter:
    text: str | None = None
    category: str | None = None
    city: str | None = None
    starts_from: datetime | None = None
    starts_until: datetime | None = None
    max_price_minor: int | None = None
    min_price_minor: int | None = None


def _min_price():
    return (
        select(
            TicketType.event_id,
            func.min(TicketType.price_minor).label("min_price"),
            func.min(TicketType.currency).label("currency"),
        )
        .group_by(TicketType.event_id)
        .subquery()
    )


def _published(filters: EventFilter) -> Select:
    prices = _min_price()
    query = (
        select(Event, Venue.city, prices.c.min_price, prices.c.currency)
        .outerjoin(Venue, Venue.id == Event.venue_id)
        .outerjoin(prices, prices.c.event_id == Event.id)
        .where(Event.status == EventStatus.PUBLISHED)
    )
    if filters.text:
        query = query.where(
            Event.search.op("@@")(func.websearch_to_tsquery("simple", filters.text))
        )
    if filters.category:
        query = query.where(Event.category == filters.category)
    if filters.city:
        query = query.where(func.lower(Venue.city) == filters.city.lower())
    if filters.starts_from:
        query = query.where(Event.starts_at >= filters.starts_from)
    if filters.starts_until:
        query = query.where(Event.starts_at < filters.starts_until)
    if filters.min_price_minor is not None:
        query = query.where(prices.c.min_price >= filters.min_price_minor)
    if filters.max_price_minor is not None:
        query = query.where(prices.c.min_price <= filters.max_price_minor)
    return query


def _summary(event: Event, city, min_price, currency) -> dict:
    return {
        "id": event.id,
        "title": event.title,
        "category": event.category,
        "city": city,
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
        "timezone": event.timezone,
        "min_price_minor": min_price,
        "currency": currency,
    }


def browse(session: Session, filters: EventFilter, *, page: int, size: int) -> tuple[list, int]:
    query = _published(filters)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.execute(
        query.order_by(Event.starts_at, Event.id).offset((page - 1) * size).limit(size)
    ).all()
    return [_summary(*row) for row in rows], total


def event_detail(session: Session, event_id: int, *, now: datetime) -> dict:
    row = session.execute(_published(EventFilter()).where(Event.id == event_id)).first()
    if row is None:
        raise NotFound("event not found")
    event = row[0]
    types = session.scalars(
        select(TicketType).where(TicketType.event_id == event_id).order_by(TicketType.id)
    ).all()
    left = inventory.available(session, [t.id for t in types], now) if types else {}
    return {
        **_summary(*row),
        "description": event.description,
        "sales_start_at": event.sales_start_at,
        "sales_end_at": event.sales_end_at,
        "ticket_types": [
            {
                "id": t.id,
                "name": t.name,
                "price_minor": t.price_minor,
                "currency": t.currency,
                "max_per_order": t.max_per_order,
                "available": left.get(t.id, 0),
            }
            for t in types
        ],
    }
