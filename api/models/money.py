"""Money rows: payments and refunds (with states), the append-only ledger, webhook events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, created_at, id_column, pg_enum


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)

    id: Mapped[int] = id_column()
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_payment_id: Mapped[str] = mapped_column(String(100), unique=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PaymentStatus] = mapped_column(
        pg_enum(PaymentStatus, "payment_status"), default=PaymentStatus.PENDING
    )
    fee_minor: Mapped[int | None]  # the processor's fee, from its balance transaction
    provider_charge_id: Mapped[str | None] = mapped_column(String(100))
    provider_balance_transaction_id: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(100))
    disputed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = created_at()
    succeeded_at: Mapped[datetime | None]


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        Index(
            "uq_refunds_order_request_key",
            "order_id",
            "request_key",
            unique=True,
            postgresql_where=text("request_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = id_column()
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[RefundStatus] = mapped_column(
        pg_enum(RefundStatus, "refund_status"), default=RefundStatus.PENDING
    )
    provider_refund_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    # None: made by the system or at the processor, not by a person here
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The caller's Idempotency-Key, scoped to the caller: a retried request finds its refund.
    request_key: Mapped[str | None] = mapped_column(String(260))
    created_at: Mapped[datetime] = created_at()


class LedgerKind(enum.StrEnum):
    SALE = "sale"  # + the amount paid
    FEE = "fee"  # - the processor's fee
    REFUND = "refund"  # - the amount refunded
    ADJUSTMENT = "adjustment"  # +/- anything else (a lost dispute, say)


class LedgerEntry(Base):
    """One monetary movement; rows are only ever inserted (a trigger refuses the rest)."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = id_column()
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    kind: Mapped[LedgerKind] = mapped_column(pg_enum(LedgerKind, "ledger_kind"))
    amount_minor: Mapped[int]  # signed: money in is positive
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at()


class ProcessedWebhook(Base):
    """A processor event already handled; a replay of the same id changes nothing."""

    __tablename__ = "processed_webhooks"

    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = created_at()


class IdempotencyKey(Base):
    """A stored response for an `Idempotency-Key`, per caller; a retry replays it."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    response_body = mapped_column(JSONB, nullable=True)
    created_at: Mapped[datetime] = created_at()
