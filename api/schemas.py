"""Request and response bodies (Pydantic v2). Money is integer minor units plus a currency."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict = {}


class ErrorResponse(BaseModel):
    error: ErrorBody


class TicketTypeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    price_minor: int
    currency: str
    max_per_order: int
    available: int


class EventSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    category: str
    city: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    min_price_minor: int | None
    currency: str | None


class EventDetail(EventSummary):
    description: str
    sales_start_at: datetime
    sales_end_at: datetime
    ticket_types: list[TicketTypeRead]


class EventPage(BaseModel):
    items: list[EventSummary]
    page: int
    size: int
    total: int
