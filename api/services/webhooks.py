"""Processor webhooks: verified, de-duplicated on the event id, applied idempotently.

A forged or stale signature records nothing. A replayed event id changes nothing. Events may
arrive in any order: each handler only moves a row forward from the state it expects
(a `payment_failed` after a success does not undo it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.db import commit_with, compiled, unit_of_work
from api.errors import NotFound
from api.models import ProcessedWebhook
from api.payments.provider import PaymentProvider, WebhookEvent, WebhookKind
from api.services import payments, refunds
from api.services.clock import Elapsing

# The usual `payment_intent.succeeded`: the payment was recorded, with its fee, when it was
# made, so only the event id is left to remember (once).
_SEEN_IF_RECORDED = compiled(
    text(
        """
        WITH known AS (
            SELECT status = 'succeeded' AND fee_minor IS NOT NULL AS complete
            FROM payments WHERE provider_payment_id = :payment_id
        ),
        seen AS (
            INSERT INTO processed_webhooks (event_id, type, received_at)
            SELECT :event_id, :type, :now WHERE (SELECT complete FROM known)
            ON CONFLICT DO NOTHING
            RETURNING event_id
        )
        SELECT coalesce((SELECT complete FROM known), false),
               EXISTS (SELECT 1 FROM seen)
        """
    )
)


def _seen_if_recorded(engine: Engine, event: WebhookEvent, now: datetime) -> str | None:
    """ "processed" or "duplicate" if the payment is recorded as succeeded with its fee (one
    round trip, committed); None if it is not."""
    params = {"payment_id": event.payment.id, "event_id": event.id, "type": event.type, "now": now}
    with unit_of_work(engine) as session:
        (cursor,) = commit_with(session, [(_SEEN_IF_RECORDED, params)])
        recorded, first = cursor.fetchone()
    if not recorded:
        return None
    return "processed" if first else "duplicate"


def _first_time(session: Session, event: WebhookEvent, now: datetime) -> bool:
    """Remember the event id; False if it was seen before."""
    inserted = session.scalar(
        insert(ProcessedWebhook)
        .values(event_id=event.id, type=event.type, received_at=now)
        .on_conflict_do_nothing()
        .returning(ProcessedWebhook.event_id)
    )
    return inserted is not None


def _apply(session: Session, provider: PaymentProvider, event: WebhookEvent, now: datetime):
    """Returns the refund reserved for a payment that came too late, if any."""
    if event.kind in (WebhookKind.PAYMENT_SUCCEEDED, WebhookKind.PAYMENT_FAILED):
        try:
            outcome = payments.record(session, provider.name, event.payment, now=now)
        except NotFound:
            return None  # not one of our orders (another app on the same account)
        return outcome.refund_owed
    if event.kind == WebhookKind.REFUNDED:
        for refund in event.refunds:
            refunds.record_from_processor(session, refund, now=now)
    elif event.kind == WebhookKind.DISPUTE_OPENED:
        dispute = event.dispute
        payments.mark_disputed(
            session,
            dispute.payment_id,
            amount_minor=dispute.amount_minor,
            fee_minor=dispute.fee_minor,
            now=now,
        )
    return None


def handle(
    engine: Engine,
    provider: PaymentProvider,
    payload: bytes,
    headers,
    *,
    now: datetime,
) -> str:
    """Apply one webhook; returns "processed", "duplicate" or "ignored"."""
    clock = Elapsing(now)
    event = provider.parse_webhook(payload, headers)
    if event.kind == WebhookKind.IGNORED:
        return "ignored"
    payment_kinds = (WebhookKind.PAYMENT_SUCCEEDED, WebhookKind.PAYMENT_FAILED)
    if event.kind in payment_kinds and event.payment.order_id is None:
        return "ignored"  # not made by us (another app on the account, Stripe's dashboard)
    if event.kind == WebhookKind.PAYMENT_SUCCEEDED:
        # Usual when the card was confirmed synchronously: nothing left to apply.
        outcome = _seen_if_recorded(engine, event, now)
        if outcome is not None:
            return outcome
        if event.payment.fee_minor is None:  # the fee is only in the balance transaction
            event = WebhookEvent(
                event.id,
                event.type,
                event.kind,
                payment=provider.retrieve_payment(event.payment.id),
            )
    now = clock()  # after the processor's answer: a hold may have lapsed meanwhile
    with unit_of_work(engine) as session:
        if not _first_time(session, event, now):
            return "duplicate"
        refund_owed = _apply(session, provider, event, now)
    if refund_owed is not None:
        refunds.send(engine, provider, refund_owed, now=now)
    return "processed"
