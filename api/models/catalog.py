"""What is for sale: venues, events, ticket types, shared quotas, promo codes, event media."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    Computed,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, created_at, id_column, pg_enum


class Venue(Base):
    __tablename__ = "venues"

    id: Mapped[int] = id_column()
    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(400), default="")
    city: Mapped[str] = mapped_column(String(120))
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    created_at: Mapped[datetime] = created_at()


class EventStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"
    ENDED = "ended"


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("sales_end_at > sales_start_at", name="sales_window_order"),
        Index("ix_events_search", "search", postgresql_using="gin"),
        Index("ix_events_status_starts_at", "status", "starts_at"),
    )

    id: Mapped[int] = id_column()
    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id"), index=True)
    venue_id: Mapped[int | None] = mapped_column(ForeignKey("venues.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(60))
    status: Mapped[EventStatus] = mapped_column(
        pg_enum(EventStatus, "event_status"), default=EventStatus.DRAFT
    )
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name, for display
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    sales_start_at: Mapped[datetime]
    sales_end_at: Mapped[datetime]
    search = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(category, '') || ' ' "
            "|| coalesce(description, ''))",
            persisted=True,
        ),
    )
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class EventMedia(Base):
    """An uploaded image, stored on disk under the media directory."""

    __tablename__ = "event_media"

    id: Mapped[int] = id_column()
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    path: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(60))
    size_bytes: Mapped[int]
    created_at: Mapped[datetime] = created_at()


class TicketType(Base):
    __tablename__ = "ticket_types"
    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("max_per_order >= 1", name="max_per_order_positive"),
    )

    id: Mapped[int] = id_column()
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    price_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))  # ISO 4217
    capacity: Mapped[int]
    max_per_order: Mapped[int] = mapped_column(default=10)
    sales_start_at: Mapped[datetime | None]  # None: the event's sales window
    sales_end_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()


quota_ticket_types = Table(
    "quota_ticket_types",
    Base.metadata,
    Column("quota_id", ForeignKey("quotas.id"), primary_key=True),
    Column("ticket_type_id", ForeignKey("ticket_types.id"), primary_key=True, index=True),
)


class Quota(Base):
    """A capacity several ticket types draw on (say, 500 seats shared by adult and child)."""

    __tablename__ = "quotas"
    __table_args__ = (CheckConstraint("capacity >= 0", name="capacity_not_negative"),)

    id: Mapped[int] = id_column()
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    capacity: Mapped[int]
    created_at: Mapped[datetime] = created_at()


class DiscountKind(enum.StrEnum):
    PERCENT = "percent"
    FIXED = "fixed"


class PromoCode(Base):
    __tablename__ = "promo_codes"
    __table_args__ = (
        UniqueConstraint("event_id", "code"),
        CheckConstraint(
            "(kind = 'percent' AND value BETWEEN 1 AND 100) OR (kind = 'fixed' AND value > 0)",
            name="value_in_range",
        ),
    )

    id: Mapped[int] = id_column()
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    code: Mapped[str] = mapped_column(String(40))  # stored upper-case
    kind: Mapped[DiscountKind] = mapped_column(pg_enum(DiscountKind, "discount_kind"))
    value: Mapped[int]  # percent, or minor units off the order
    max_uses: Mapped[int | None]
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
