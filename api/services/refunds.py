"""Refunds: asked for by organizer staff or finance, capped at what was paid, sent to the processor.

Three steps, as for payments: reserve the refund under the order's lock (so two refunds can
never together exceed the payment), call the processor outside any transaction, then record
its answer. A refund the processor reports on its own (webhook) is recorded the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.db import unit_of_work
from api.errors import InvalidInput, NotFound, OrderNotPayable, PaymentProviderError, RefundTooLarge
from api.models import (
    HOLDING_STATUSES,
    Event,
    LedgerKind,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Role,
)
from api.payments.provider import (
    PaymentProvider,
    ProcessorRefused,
    ProviderRefund,
    ProviderStatus,
)
from api.services import ledger, tickets
from api.services.access import Caller
from api.services.locking import lock_order, locked

REFUNDABLE_STATUSES = HOLDING_STATUSES


def _refunded_or_reserved(session: Session, payment_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.payment_id == payment_id,
                Refund.status.in_([RefundStatus.PENDING, RefundStatus.SUCCEEDED]),
            )
        )
    )


def _settled_payment(session: Session, order_id: int) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED)
        .order_by(Payment.id)
        .limit(1)
    )


def reserve(
    session: Session,
    caller: Caller | None,
    *,
    order_id: int,
    amount_minor: int | None,
    reason: str,
    payment: Payment | None = None,
    request_key: str | None = None,
) -> Refund:
    """A pending refund of `amount_minor` (None: all that is left). `caller=None`: the system.

    `request_key` (the caller's Idempotency-Key): a refund already reserved under it is
    returned as it is, so a retry of a request that died after reserving cannot refund twice.
    """
    if caller is not None:  # before the lookup, so a refusal says nothing about the order
        caller.require(Role.ORGANIZER, Role.FINANCE)
    order = lock_order(session, order_id)
    if order is None:
        raise NotFound("order not found")
    if caller is not None:
        organizer_id = session.scalar(select(Event.organizer_id).where(Event.id == order.event_id))
        if not caller.may_refund(organizer_id):
            raise NotFound("order not found")
    if request_key is not None:
        earlier = session.scalar(
            select(Refund).where(Refund.order_id == order.id, Refund.request_key == request_key)
        )
        if earlier is not None:
            return earlier
    if caller is not None and order.status not in REFUNDABLE_STATUSES:
        raise OrderNotPayable(
            f"a {order.status.value} order cannot be refunded", status=order.status.value
        )
    payment = payment or _settled_payment(session, order_id)
    if payment is None:
        raise OrderNotPayable("the order has no settled payment to refund")
    left = payment.amount_minor - _refunded_or_reserved(session, payment.id)
    amount = left if amount_minor is None else amount_minor
    if amount <= 0 and amount_minor is None:
        raise RefundTooLarge("the order has been refunded in full already", refundable_minor=0)
    if amount <= 0:
        raise InvalidInput("a refund must be positive", field="amount_minor")
    if amount > left:
        raise RefundTooLarge(
            f"at most {left} can still be refunded", refundable_minor=left, asked_minor=amount
        )
    refund = Refund(
        order_id=order.id,
        payment_id=payment.id,
        amount_minor=amount,
        currency=payment.currency,
        reason=reason,
        status=RefundStatus.PENDING,
        created_by=caller.user_id if caller else None,
        request_key=request_key,
    )
    session.add(refund)
    session.flush()
    return refund


def _order_status_after_refunds(session: Session, payment: Payment) -> OrderStatus:
    """From the payment that paid the order: refunds of a duplicate payment leave it alone."""
    refunded = session.scalar(
        select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
            Refund.payment_id == payment.id, Refund.status == RefundStatus.SUCCEEDED
        )
    )
    if refunded >= payment.amount_minor:
        return OrderStatus.REFUNDED
    return OrderStatus.PARTIALLY_REFUNDED


def settle(session: Session, refund_id: int, result: ProviderRefund | None, *, now: datetime):
    """Record the processor's answer (None: it refused). Idempotent."""
    order_id = session.scalar(select(Refund.order_id).where(Refund.id == refund_id))
    order = lock_order(session, order_id)
    refund = session.scalar(locked(select(Refund).where(Refund.id == refund_id)))
    if refund.status != RefundStatus.PENDING:
        return refund
    if result is None or result.status == ProviderStatus.FAILED:
        refund.status = RefundStatus.FAILED
        return refund
    refund.provider_refund_id = result.id
    if result.status == ProviderStatus.PENDING:
        return refund  # still reserved; its charge.refunded webhook settles it
    refund.status = RefundStatus.SUCCEEDED
    session.flush()
    ledger.record(
        session,
        order,
        LedgerKind.REFUND,
        -refund.amount_minor,
        occurred_at=now,
        payment_id=refund.payment_id,
        refund_id=refund.id,
    )
    paying = _settled_payment(session, order.id)
    if (
        order.status in REFUNDABLE_STATUSES
        and paying is not None
        and paying.id == refund.payment_id
    ):
        order.status = _order_status_after_refunds(session, paying)
        if order.status == OrderStatus.REFUNDED:
            tickets.void_all(session, order.id)
    return refund


def refund(
    engine: Engine,
    provider: PaymentProvider,
    caller: Caller | None,
    *,
    order_id: int,
    amount_minor: int | None,
    reason: str,
    now: datetime,
    request_key: str | None = None,
) -> Refund:
    with unit_of_work(engine) as session:
        reserved = reserve(
            session,
            caller,
            order_id=order_id,
            amount_minor=amount_minor,
            reason=reason,
            request_key=request_key,
        )
    # A refusal settles it FAILED. Any other error leaves it reserved (PENDING): the processor
    # may have made it, and its charge.refunded webhook will settle it; releasing it could
    # refund twice.
    try:
        return _send(engine, provider, reserved.id, now=now)
    except ProcessorRefused as exc:
        raise PaymentProviderError(str(exc)) from exc


OWED_REASON = "paid after the hold lapsed and the tickets were gone"
# A reserved refund nobody has sent after this long was left by a crash: send it again.
UNSENT_AFTER = timedelta(minutes=1)


def reserve_owed(session: Session, payment: Payment) -> Refund:
    """Reserve, in the transaction that recorded it, the full refund of a payment whose
    tickets could no longer be had: if sending it fails, `send_unsent` finds it."""
    return reserve(
        session,
        None,
        order_id=payment.order_id,
        amount_minor=None,
        reason=OWED_REASON,
        payment=payment,
    )


def _send(engine: Engine, provider: PaymentProvider, refund_id: int, *, now: datetime) -> Refund:
    """Send a reserved refund to the processor; its key makes a second send harmless. A refusal
    is final (nothing happened there): the refund is settled FAILED and the refusal raised."""
    with unit_of_work(engine) as session:
        refund = session.get(Refund, refund_id)
        provider_payment_id = session.get(Payment, refund.payment_id).provider_payment_id
        amount = refund.amount_minor
    try:
        result = provider.refund(
            payment_id=provider_payment_id,
            amount_minor=amount,
            idempotency_key=f"refund-{refund_id}",
        )
    except ProcessorRefused:
        with unit_of_work(engine) as session:
            settle(session, refund_id, None, now=now)
        raise
    with unit_of_work(engine) as session:
        return settle(session, refund_id, result, now=now)


def send(engine: Engine, provider: PaymentProvider, refund_id: int, *, now: datetime) -> Refund:
    """`_send` for refunds the system owes: a refusal leaves the refund FAILED, on record."""
    try:
        return _send(engine, provider, refund_id, now=now)
    except ProcessorRefused:
        with unit_of_work(engine) as session:
            return session.get(Refund, refund_id)


def send_unsent(engine: Engine, provider: PaymentProvider, *, now: datetime) -> int:
    """Send the reserved refunds a crash left unsent; how many were sent."""
    with unit_of_work(engine) as session:
        unsent = session.scalars(
            select(Refund.id).where(
                Refund.status == RefundStatus.PENDING,
                Refund.provider_refund_id.is_(None),
                Refund.created_at < now - UNSENT_AFTER,
            )
        ).all()
    for refund_id in unsent:
        send(engine, provider, refund_id, now=now)
    return len(unsent)


def record_from_processor(
    session: Session, result: ProviderRefund, *, now: datetime
) -> Refund | None:
    """A refund the processor told us about. Known ones settle; unknown ones (made in the
    processor's dashboard) are added. None if its payment is not ours."""
    known = session.scalar(select(Refund).where(Refund.provider_refund_id == result.id))
    if known is not None:
        return settle(session, known.id, result, now=now)
    payment = session.scalar(
        select(Payment).where(Payment.provider_payment_id == result.payment_id)
    )
    if payment is None:
        return None
    # Ours, reserved but its answer not yet recorded (a crash between the steps): match it.
    pending = session.scalar(
        select(Refund).where(
            Refund.payment_id == payment.id,
            Refund.status == RefundStatus.PENDING,
            Refund.amount_minor == result.amount_minor,
            Refund.provider_refund_id.is_(None),
        )
    )
    if pending is None:
        pending = reserve(
            session,
            None,
            order_id=payment.order_id,
            amount_minor=result.amount_minor,
            reason="refunded at the payment processor",
            payment=payment,
        )
    return settle(session, pending.id, result, now=now)
