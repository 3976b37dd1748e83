"""Checkout, payments, refunds, tickets and check-in."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.models import OrderStatus, PaymentStatus, RefundStatus, TicketStatus
from api.schemas.common import TICKET_CODE, Id, RequestBody


class OrderLine(RequestBody):
    ticket_type_id: Id
    quantity: Annotated[int, Field(ge=1, le=100)]


class OrderCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    event_id: Id
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=20)]
    promo_code: Annotated[str, StringConstraints(max_length=40)] | None = None


class OrderItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ticket_type_id: int
    quantity: int
    unit_price_minor: int


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int
    status: OrderStatus
    currency: str
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    expires_at: datetime = Field(description="a pending order holds its tickets until then")
    paid_at: datetime | None
    created_at: datetime
    items: list[OrderItemRead]


class OrderSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int
    status: OrderStatus
    currency: str
    total_minor: int
    created_at: datetime
    paid_at: datetime | None


class OrderPage(BaseModel):
    items: list[OrderSummary]
    page: int
    size: int
    total: int


class AttendeeOrder(OrderSummary):
    buyer_email: str


class AttendeeOrderPage(BaseModel):
    items: list[AttendeeOrder]
    page: int
    size: int
    total: int


class PaymentCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    payment_method: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None,
        description="a processor payment method to charge now (e.g. `pm_card_visa`); "
        "without one the answer carries a client_secret for the front end to confirm",
    )


class PaymentRead(BaseModel):
    payment_id: int
    order_id: int
    status: PaymentStatus
    order_status: OrderStatus
    provider_payment_id: str
    client_secret: str | None
    failure_code: str | None


class RefundCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    amount_minor: Annotated[int, Field(ge=1, le=10**12)] | None = Field(
        None, description="omit to refund all that is left"
    )
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class RefundRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int
    amount_minor: int
    currency: str
    status: RefundStatus
    reason: str
    provider_refund_id: str | None
    created_at: datetime


class TicketRead(BaseModel):
    code: str
    ticket_type_id: int
    status: TicketStatus
    qr_url: str


class CheckInCreate(RequestBody):
    code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=TICKET_CODE)]


class CheckInRead(BaseModel):
    code: str
    ticket_type_id: int
    order_id: int
    checked_in_at: datetime
