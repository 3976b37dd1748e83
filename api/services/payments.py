"""Paying for an order: start a payment at the processor, then record what it says.

The processor call happens between two short transactions, never inside one that holds locks
(pretix's rule: side effects after commit). Recording is idempotent: the synchronous answer,
a webhook and a replayed webhook all end in the same single set of rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.db import unit_of_work
from api.errors import HoldExpired, NotFound, OrderNotPayable
from api.models import (
    LedgerKind,
    Order,
    OrderItem,
    OrderStatus,
    Payment,
    PaymentStatus,
)
from api.payments.provider import PaymentProvider, ProviderPayment, ProviderStatus
from api.services import inventory, ledger, refunds, tickets
from api.services.access import Caller
from api.services.locking import lock_order, locked


@dataclass(frozen=True)
class PaymentOutcome:
    payment_id: int
    order_id: int
    order_status: OrderStatus
    payment_status: PaymentStatus
    provider_payment_id: str
    client_secret: str | None
    failure_code: str | None
    refund_owed: int | None  # paid, but the tickets were gone: the refund reserved to send


def _own_order(session: Session, caller: Caller, order_id: int) -> Order:
    order = lock_order(session, order_id)
    if order is None or order.user_id != caller.user_id:
        raise NotFound("order not found")
    return order


def _check_payable(session: Session, order: Order, now: datetime) -> int:
    """Raise unless the order can be paid now; return this attempt's number."""
    if order.status != OrderStatus.PENDING:
        raise OrderNotPayable(f"the order is {order.status.value}", status=order.status.value)
    if order.expires_at <= now:
        raise HoldExpired(
            "the hold on these tickets has expired; place a new order",
            expired_at=order.expires_at.isoformat(),
        )
    attempts = session.scalar(
        select(func.count()).select_from(Payment).where(Payment.order_id == order.id)
    )
    return attempts + 1


def _processor_key(
    order_id: int, attempt: int, client_key: str | None, payment_method: str | None
) -> str:
    """The processor's idempotency key: the same attempt retried after a crash finds the same
    processor payment; a different payment method is a different attempt (the processor
    refuses a key reused with other parameters)."""
    if client_key:
        return f"order-{order_id}-client-{client_key}"
    method = hashlib.sha256((payment_method or "").encode()).hexdigest()[:16]
    return f"order-{order_id}-{attempt}-{method}"


def start_payment(
    engine: Engine,
    provider: PaymentProvider,
    caller: Caller,
    *,
    order_id: int,
    payment_method: str | None,
    now: datetime,
    attempt_key: str | None = None,
) -> PaymentOutcome:
    """Charge the order's total. Returns at once with the outcome the processor gave.

    `attempt_key` (the client's Idempotency-Key) makes the processor call itself idempotent:
    a retry after a crash finds the same processor payment instead of charging twice.
    """
    with unit_of_work(engine) as session:
        order = _own_order(session, caller, order_id)
        attempt = _check_payable(session, order, now)
        amount, currency = order.total_minor, order.currency
    if amount == 0:
        raise OrderNotPayable("free orders need no payment", total_minor=0)
    result = provider.create_payment(
        order_id=order_id,
        amount_minor=amount,
        currency=currency,
        payment_method=payment_method,
        idempotency_key=_processor_key(order_id, attempt, attempt_key, payment_method),
    )
    with unit_of_work(engine) as session:
        return record(session, provider.name, result, now=now)


def _lock_payment(
    session: Session, provider_payment_id: str, *, new_for_order: int | None = None
) -> tuple[Order | None, Payment | None]:
    """Lock the payment's order (or, for a payment not recorded yet, `new_for_order`), then
    read the payment under that lock, seeing whatever another command recorded meanwhile."""
    by_processor_id = select(Payment).where(Payment.provider_payment_id == provider_payment_id)
    known = session.scalar(by_processor_id)
    order_id = known.order_id if known else new_for_order
    if order_id is None:
        return None, None
    order = lock_order(session, order_id)
    return order, session.scalar(locked(by_processor_id))


def record(session: Session, provider_name: str, result: ProviderPayment, *, now: datetime):
    """Store what the processor said about a payment; idempotent.

    A success pays the order (tickets, ledger rows) when its tickets can still be had.
    """
    order, payment = _lock_payment(session, result.id, new_for_order=result.order_id)
    if order is None:
        raise NotFound("the payment belongs to no order here", provider_payment_id=result.id)
    if payment is None:
        payment = Payment(
            order_id=order.id,
            provider=provider_name,
            provider_payment_id=result.id,
            amount_minor=result.amount_minor,
            currency=result.currency,
            status=PaymentStatus.PENDING,
        )
        session.add(payment)
        session.flush()
    refund_owed = None
    # A decline is not final at the processor (the buyer may confirm the same payment with
    # another card), so a failed payment may still succeed; a success is final.
    if payment.status in (PaymentStatus.PENDING, PaymentStatus.FAILED):
        if result.status == ProviderStatus.SUCCEEDED:
            if not _confirm(session, order, payment, result, now):
                refund_owed = refunds.reserve_owed(session, payment).id
        elif result.status == ProviderStatus.FAILED and payment.status == PaymentStatus.PENDING:
            payment.status = PaymentStatus.FAILED
            payment.failure_code = result.failure_code or "declined"
    session.flush()
    return PaymentOutcome(
        payment_id=payment.id,
        order_id=order.id,
        order_status=order.status,
        payment_status=payment.status,
        provider_payment_id=payment.provider_payment_id,
        client_secret=result.client_secret,
        failure_code=payment.failure_code,
        refund_owed=refund_owed,
    )


def _still_fits(session: Session, order: Order, now: datetime) -> bool:
    """Whether a pending order whose hold lapsed (or was swept) can still have its tickets."""
    wanted = dict(
        session.execute(
            select(OrderItem.ticket_type_id, OrderItem.quantity).where(
                OrderItem.order_id == order.id
            )
        ).all()
    )
    return not inventory.shortfalls(inventory.lock_and_count(session, wanted, now), wanted)


def _confirm(
    session: Session, order: Order, payment: Payment, result: ProviderPayment, now: datetime
) -> bool:
    """Mark the payment succeeded; pay the order if it may still be. False: refund owed."""
    payment.status = PaymentStatus.SUCCEEDED
    payment.succeeded_at = now
    payment.fee_minor = result.fee_minor
    payment.provider_charge_id = result.charge_id
    payment.provider_balance_transaction_id = result.balance_transaction_id
    ledger.record(
        session,
        order,
        LedgerKind.SALE,
        payment.amount_minor,
        occurred_at=now,
        payment_id=payment.id,
    )
    if result.fee_minor:
        ledger.record(
            session,
            order,
            LedgerKind.FEE,
            -result.fee_minor,
            occurred_at=now,
            payment_id=payment.id,
        )
    payable = order.status == OrderStatus.PENDING and order.expires_at > now
    lapsed = order.status == OrderStatus.EXPIRED or (
        order.status == OrderStatus.PENDING and order.expires_at <= now
    )
    if payable or (lapsed and _still_fits(session, order, now)):
        tickets.issue(session, order)
        # Write everything else first: the status change's trigger takes the ticket types'
        # `ticket_type_sales` rows, which every payment for them needs, until the commit.
        session.flush()
        order.status = OrderStatus.PAID
        order.paid_at = now
        return True
    if lapsed:
        order.status = OrderStatus.EXPIRED
    return False


def mark_disputed(
    session: Session, provider_payment_id: str, *, amount_minor: int, fee_minor: int, now: datetime
) -> bool:
    """The buyer's bank took the money back: ledger it once. False if the payment is unknown."""
    order, payment = _lock_payment(session, provider_payment_id)
    if payment is None:
        return False
    if payment.disputed:
        return True
    payment.disputed = True
    ledger.record(
        session,
        order,
        LedgerKind.ADJUSTMENT,
        -amount_minor,
        occurred_at=now,
        payment_id=payment.id,
    )
    ledger.record(
        session, order, LedgerKind.FEE, -fee_minor, occurred_at=now, payment_id=payment.id
    )
    return True
