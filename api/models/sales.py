"""What was bought: orders (which also hold inventory while pending), items, tickets, check-ins."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, created_at, id_column, pg_enum


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# Orders whose items take capacity. A pending order holds only until `expires_at`.
HOLDING_STATUSES = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total_minor = subtotal_minor - discount_minor", name="total_adds_up"),
        CheckConstraint("discount_minor BETWEEN 0 AND subtotal_minor", name="discount_in_range"),
        Index(
            "ix_orders_pending_expiry",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    status: Mapped[OrderStatus] = mapped_column(
        pg_enum(OrderStatus, "order_status"), default=OrderStatus.PENDING
    )
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int]
    discount_minor: Mapped[int] = mapped_column(default=0)
    total_minor: Mapped[int]
    promo_code_id: Mapped[int | None] = mapped_column(ForeignKey("promo_codes.id"))
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = id_column()
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"), index=True)
    quantity: Mapped[int]
    unit_price_minor: Mapped[int]


class TicketStatus(enum.StrEnum):
    VALID = "valid"
    VOID = "void"  # its order was refunded in full


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = id_column()
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    order_item_id: Mapped[int] = mapped_column(ForeignKey("order_items.id"))
    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"))
    code: Mapped[str] = mapped_column(String(40), unique=True)  # unguessable, on the QR code
    status: Mapped[TicketStatus] = mapped_column(
        pg_enum(TicketStatus, "ticket_status"), default=TicketStatus.VALID
    )
    created_at: Mapped[datetime] = created_at()


class CheckIn(Base):
    """A ticket's entry. One per ticket: a second scan is refused with this row's time."""

    __tablename__ = "check_ins"

    id: Mapped[int] = id_column()
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    checked_in_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    checked_in_at: Mapped[datetime] = created_at()


class TicketTypeSales(Base):
    """Per ticket type: tickets in paid or partially refunded orders, and tickets whose hold
    was released (their order left `pending`: paid, expired or cancelled).

    Written only by the `ticket_type_sales_follow_order` trigger (migrations 0003, 0006,
    0008), during the commit of the transaction that changes an order's status (deferred
    since 0005), so both always equal the counts over the orders. The row is made with its
    ticket type.
    """

    __tablename__ = "ticket_type_sales"
    __table_args__ = (
        CheckConstraint("tickets_sold >= 0", name="not_negative"),
        CheckConstraint("tickets_released >= 0", name="released_not_negative"),
    )

    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"), primary_key=True)
    tickets_sold: Mapped[int] = mapped_column(server_default="0")
    tickets_released: Mapped[int] = mapped_column(server_default="0")


class TicketTypeHolds(Base):
    """Per ticket type: tickets ever written into pending orders (`tickets_held`).

    Written only by the `ticket_type_holds_follow_items` trigger (migration 0008), in the
    transaction that writes the items, which checkout does under the ticket type's lock; the
    row is made with its ticket type. tickets_held - `TicketTypeSales.tickets_released` =
    the tickets in pending orders, lapsed holds included: with `tickets_sold`, an upper
    bound of what the ticket type has taken, read in O(1). Apart from the sales row, so
    that checkouts and payments of one ticket type do not queue on each other's row.
    """

    __tablename__ = "ticket_type_holds"
    __table_args__ = (CheckConstraint("tickets_held >= 0", name="not_negative"),)

    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"), primary_key=True)
    tickets_held: Mapped[int] = mapped_column(server_default="0")
