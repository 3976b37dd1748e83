"""Paying for an order: start a payment at the processor, then record what it says.

The processor call happens between two short transactions, never inside one that holds locks
(pretix's rule: side effects after commit). Recording is idempotent: the synchronous answer,
a webhook and a replayed webhook all end in the same single set of rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from sqlalchemy import Engine, bindparam, select, text
from sqlalchemy.orm import Session

from api.db import Statement, commit_with, compiled, unit_of_work
from api.errors import HoldExpired, NotFound, OrderNotPayable, Unauthorized
from api.models import (
    LedgerKind,
    Order,
    OrderItem,
    OrderStatus,
    Payment,
    PaymentStatus,
    User,
)
from api.payments.provider import PaymentProvider, ProviderPayment, ProviderStatus
from api.services import idempotency, inventory, ledger, refunds, tickets
from api.services.clock import Elapsing
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


# What paying reads first, in one round trip: the payer's account, and the order with its
# payments so far and its items (one row per ticket, for the tickets a success issues).
_PAYER = compiled(select(User.is_active).where(User.id == bindparam("user_id")))
_ORDER = compiled(
    text(
        """
        SELECT o.user_id, o.status, o.expires_at, o.total_minor, o.currency,
               (SELECT count(*) FROM payments p WHERE p.order_id = o.id),
               ARRAY(SELECT i.id FROM order_items i, generate_series(1, i.quantity)
                     WHERE i.order_id = o.id ORDER BY i.id),
               ARRAY(SELECT i.ticket_type_id FROM order_items i, generate_series(1, i.quantity)
                     WHERE i.order_id = o.id ORDER BY i.id)
        FROM orders o WHERE o.id = :order_id
        """
    )
)
_NEXT_PAYMENT_ID = compiled(text("SELECT nextval(pg_get_serial_sequence('payments', 'id'))"))
_NOT_USUAL = "TF004"  # checkout_refuse(): the usual success does not apply, record() decides
# The usual success needs this much of the hold left when its statement is sent. A checkout
# counts a hold as lapsed the moment it ends, without waiting for payments on their way:
# closer to the end, record() decides under the capacities' locks, by the time read there.
HOLD_MARGIN = timedelta(seconds=5)
# The usual success, in one statement: a pending order whose hold still runs, with no payment
# recorded for this processor payment yet (a webhook may have been first), is paid: the
# payment (its id drawn before), its sale and fee in the ledger, its tickets. Otherwise it
# fails (so that nothing sent with it commits) and `record()` takes over. The tickets are
# for the items read before (a pending order's items never change; the count checks it).
_RECORD_PAID = compiled(
    text(
        f"""
        WITH paid AS (
            UPDATE orders o SET status = 'paid', paid_at = :now
            WHERE o.id = :order_id AND o.status = 'pending' AND o.expires_at > :hold_needed_until
              AND NOT EXISTS (SELECT 1 FROM payments p
                              WHERE p.provider_payment_id = :provider_payment_id)
              AND (SELECT coalesce(sum(i.quantity), 0) FROM order_items i
                   WHERE i.order_id = o.id) = cardinality(CAST(:codes AS text[]))
            RETURNING o.id, o.event_id, o.currency
        ),
        payment AS (
            INSERT INTO payments (id, order_id, provider, provider_payment_id, amount_minor,
                                  currency, status, fee_minor, provider_charge_id,
                                  provider_balance_transaction_id, disputed, succeeded_at)
            SELECT CAST(:payment_id AS bigint), paid.id, :provider, :provider_payment_id,
                   CAST(:amount_minor AS bigint),
                   :currency, 'succeeded', CAST(:fee_minor AS bigint), :charge_id,
                   :balance_transaction_id, false, :now
            FROM paid
            RETURNING id
        ),
        ledger AS (
            INSERT INTO ledger_entries (order_id, event_id, organizer_id, payment_id, kind,
                                        amount_minor, currency, occurred_at)
            SELECT paid.id, paid.event_id, e.organizer_id, payment.id, k.kind, k.amount,
                   paid.currency, :now
            FROM paid JOIN events e ON e.id = paid.event_id, payment,
                 (VALUES (CAST('sale' AS ledger_kind), CAST(:amount_minor AS bigint), 1),
                         ('fee', -CAST(:fee_minor AS bigint), 2)) AS k(kind, amount, n)
            WHERE k.amount <> 0
            ORDER BY k.n
        ),
        issued AS (
            INSERT INTO tickets (order_id, order_item_id, ticket_type_id, code, status)
            SELECT paid.id, t.item_id, t.ticket_type_id, t.code, 'valid'
            FROM paid, unnest(CAST(:item_ids AS bigint[]), CAST(:ticket_type_ids AS bigint[]),
                              CAST(:codes AS text[])) WITH ORDINALITY
                       AS t(item_id, ticket_type_id, code, n)
            ORDER BY t.n
        )
        SELECT CASE WHEN EXISTS (SELECT 1 FROM payment) THEN true
                    ELSE checkout_refuse('{_NOT_USUAL}', 'not the usual success', NULL) END
        """
    )
)


@dataclass(frozen=True)
class _Payable:
    amount_minor: int
    currency: str
    attempt: int  # this payment attempt's number
    ticket_item_ids: list[int]  # one per ticket a success issues
    ticket_type_ids: list[int]
    payment_id: int  # drawn for the usual success


def _payable(
    session: Session,
    payer_id: int,
    order_id: int,
    now: datetime,
    claim: idempotency.ClaimStatement | None,
) -> _Payable:
    """Raise unless the payer may pay the order now. One round trip, committed: the claim of
    the caller's key (raising KeyTaken if it was not free), and reads (nothing else is
    written before the processor call: its idempotency key makes a concurrent duplicate the
    same processor payment)."""
    reads = [
        (_PAYER, {"user_id": payer_id}),
        (_ORDER, {"order_id": order_id}),
        (_NEXT_PAYMENT_ID, None),
    ]
    *claimed, payer, found, payment_id = commit_with(
        session, [claim.statement, *reads] if claim else reads
    )
    if claim:
        claim.check(claimed[0])
    payer = payer.fetchone()
    if payer is None or not payer[0]:
        raise Unauthorized("the account does not exist or is disabled")
    row = found.fetchone()
    if row is None or row[0] != payer_id:
        raise NotFound("order not found")
    _, status, expires_at, total, currency, attempts, item_ids, type_ids = row
    if status != OrderStatus.PENDING:
        raise OrderNotPayable(f"the order is {status}", status=status)
    if expires_at <= now:
        raise HoldExpired(
            "the hold on these tickets has expired; place a new order",
            expired_at=expires_at.isoformat(),
        )
    return _Payable(total, currency, attempts + 1, item_ids, type_ids, payment_id.fetchone()[0])


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
    *,
    payer_id: int,
    order_id: int,
    payment_method: str | None,
    now: datetime,
    attempt_key: str | None = None,
    claim: idempotency.ClaimStatement | None = None,
    answer: Callable[[PaymentOutcome], Statement] | None = None,
) -> PaymentOutcome:
    """Charge the order's total. Returns at once with the outcome the processor gave.

    `attempt_key` (the client's Idempotency-Key) makes the processor call itself idempotent:
    a retry after a crash finds the same processor payment instead of charging twice. With
    `claim`, the key is claimed in the first transaction (KeyTaken if it was not free); the
    statement `answer` makes of a usual success is committed with it.
    """
    clock = Elapsing(now)
    with unit_of_work(engine) as session:
        order = _payable(session, payer_id, order_id, now, claim)
    if order.amount_minor == 0:
        raise OrderNotPayable("free orders need no payment", total_minor=0)
    result = provider.create_payment(
        order_id=order_id,
        amount_minor=order.amount_minor,
        currency=order.currency,
        payment_method=payment_method,
        idempotency_key=_processor_key(order_id, order.attempt, attempt_key, payment_method),
    )
    if result.status == ProviderStatus.SUCCEEDED and result.fee_minor is not None:
        # The processor took its time: the hold may have lapsed meanwhile.
        paid = _record_paid(engine, provider.name, result, order, now=clock(), answer=answer)
        if paid is not None:
            return paid
    with unit_of_work(engine) as session:
        return record(session, provider.name, result, now=clock())


def _record_paid(
    engine: Engine,
    provider_name: str,
    result: ProviderPayment,
    order: _Payable,
    *,
    now: datetime,
    answer: Callable[[PaymentOutcome], Statement] | None,
) -> PaymentOutcome | None:
    """The usual success, written and committed in one round trip (with `answer`'s
    statement); None if it is not the usual case (the hold lapsed, a webhook was first...),
    for `record()` to sort out."""
    outcome = PaymentOutcome(
        payment_id=order.payment_id,
        order_id=result.order_id,
        order_status=OrderStatus.PAID,
        payment_status=PaymentStatus.SUCCEEDED,
        provider_payment_id=result.id,
        client_secret=result.client_secret,
        failure_code=None,
        refund_owed=None,
    )
    params = {
        "payment_id": order.payment_id,
        "order_id": result.order_id,
        "now": now,
        "hold_needed_until": now + HOLD_MARGIN,
        "provider": provider_name,
        "provider_payment_id": result.id,
        "amount_minor": result.amount_minor,
        "currency": result.currency,
        "fee_minor": result.fee_minor,
        "charge_id": result.charge_id,
        "balance_transaction_id": result.balance_transaction_id,
        "item_ids": order.ticket_item_ids,
        "ticket_type_ids": order.ticket_type_ids,
        "codes": [tickets.new_code() for _ in order.ticket_item_ids],
    }
    statements = [(_RECORD_PAID, params)]
    if answer is not None:
        statements.append(answer(outcome))
    try:
        with unit_of_work(engine) as session:
            commit_with(session, statements)
    except psycopg.errors.UniqueViolation:  # a webhook is recording the same payment
        return None
    except psycopg.Error as error:
        if error.sqlstate == _NOT_USUAL:
            return None
        raise
    return outcome


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
    clock = Elapsing(now)
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
            if not _confirm(session, order, payment, result, clock):
                refund_owed = refunds.reserve_owed(session, payment).id
        elif result.status == ProviderStatus.FAILED and payment.status == PaymentStatus.PENDING:
            payment.status = PaymentStatus.FAILED
            payment.failure_code = result.failure_code or "declined"
    elif (
        payment.status == PaymentStatus.SUCCEEDED
        and payment.fee_minor is None
        and result.fee_minor is not None
    ):
        # Recorded from an answer without its balance transaction: the fee comes now.
        _record_fee(session, order, payment, result)
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


def _takes_its_tickets(session: Session, order: Order, clock: Elapsing) -> bool:
    """Whether a succeeded payment's order may be paid: its hold runs, or its tickets can
    still be had.

    A hold near its end, or past it, is decided under the capacities' locks, by the time
    read once they are held: a checkout that counted the hold as lapsed has committed by
    then, at an earlier time, so the two agree.
    """
    if order.status == OrderStatus.PENDING and order.expires_at > clock() + HOLD_MARGIN:
        return True
    if order.status not in (OrderStatus.PENDING, OrderStatus.EXPIRED):
        return False
    wanted = dict(
        session.execute(
            select(OrderItem.ticket_type_id, OrderItem.quantity).where(
                OrderItem.order_id == order.id
            )
        ).all()
    )
    caps, now = inventory.lock_and_count(session, wanted, clock)
    if order.status == OrderStatus.PENDING and order.expires_at > now:
        return True  # every count so far has counted its hold
    return not inventory.shortfalls(caps, wanted)


def _record_fee(session: Session, order: Order, payment: Payment, result: ProviderPayment):
    """The processor's fee and its balance transaction, once known."""
    payment.fee_minor = result.fee_minor
    payment.provider_charge_id = result.charge_id
    payment.provider_balance_transaction_id = result.balance_transaction_id
    if result.fee_minor:
        ledger.record(
            session,
            order,
            LedgerKind.FEE,
            -result.fee_minor,
            occurred_at=payment.succeeded_at,
            payment_id=payment.id,
        )


def _confirm(
    session: Session, order: Order, payment: Payment, result: ProviderPayment, clock: Elapsing
) -> bool:
    """Mark the payment succeeded; pay the order if it may still be. False: refund owed."""
    now = clock()
    payment.status = PaymentStatus.SUCCEEDED
    payment.succeeded_at = now
    ledger.record(
        session,
        order,
        LedgerKind.SALE,
        payment.amount_minor,
        occurred_at=now,
        payment_id=payment.id,
    )
    _record_fee(session, order, payment, result)
    if _takes_its_tickets(session, order, clock):
        tickets.issue(session, order)
        # Write everything else first: the status change's trigger takes the ticket types'
        # `ticket_type_sales` rows, which every payment for them needs, until the commit.
        session.flush()
        order.status = OrderStatus.PAID
        order.paid_at = now
        return True
    if order.status == OrderStatus.PENDING:
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
