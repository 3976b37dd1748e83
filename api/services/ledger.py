"""The append-only money ledger: one row per movement, signed (money in is positive)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from api.models import Event, LedgerEntry, LedgerKind, Order


def record(
    session: Session,
    order: Order,
    kind: LedgerKind,
    amount_minor: int,
    *,
    occurred_at: datetime,
    payment_id: int | None = None,
    refund_id: int | None = None,
) -> None:
    if amount_minor == 0:
        return
    organizer_id = session.get(Event, order.event_id).organizer_id
    session.add(
        LedgerEntry(
            order_id=order.id,
            event_id=order.event_id,
            organizer_id=organizer_id,
            payment_id=payment_id,
            refund_id=refund_id,
            kind=kind,
            amount_minor=amount_minor,
            currency=order.currency,
            occurred_at=occurred_at,
        )
    )
