"""Checkout: hold tickets in an order, pay for it, see it; refunds by staff."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import ratelimit
from api.deps import (
    CallerDep,
    EngineDep,
    NowDep,
    ProviderDep,
    SessionDep,
    SettingsDep,
    UserIdDep,
)
from api.errors import DomainError, HoldExpired
from api.models import Order
from api.routes.idempotency import REPLAYED_HEADER, IdempotencyDep, KeyInCommand, Remember
from api.schemas.common import AUTH_ERRORS, CONFLICT, NOT_FOUND, ErrorResponse, PathId
from api.schemas.sales import (
    OrderCreate,
    OrderPage,
    OrderRead,
    PaymentCreate,
    PaymentRead,
    RefundCreate,
    RefundRead,
    TicketRead,
)
from api.services import orders, payments, refunds, tickets
from api.services.orders import LineRequest
from api.telemetry import metrics

router = APIRouter(prefix="/orders", tags=["orders"], responses={**AUTH_ERRORS, **NOT_FOUND})
MONEY_ERRORS = {
    **CONFLICT,
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
    502: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


class PaymentDeclined(DomainError):
    status = 402
    code = "payment_declined"


def _payment_read(outcome: payments.PaymentOutcome) -> PaymentRead:
    return PaymentRead(
        payment_id=outcome.payment_id,
        order_id=outcome.order_id,
        status=outcome.payment_status,
        order_status=outcome.order_status,
        provider_payment_id=outcome.provider_payment_id,
        client_secret=outcome.client_secret,
        failure_code=outcome.failure_code,
    )


def _order_read(session, order: Order) -> OrderRead:
    fields = {name: getattr(order, name) for name in OrderRead.model_fields if name != "items"}
    return OrderRead.model_validate({**fields, "items": orders.items_of(session, order.id)})


@router.post("", status_code=201, response_model=OrderRead, responses=MONEY_ERRORS)
async def place_order(
    body: OrderCreate,
    buyer: UserIdDep,
    settings: SettingsDep,
    now: NowDep,
    idempotent: IdempotencyDep,
):
    """Hold the tickets for `hold_minutes` (15 by default) in a pending order; pay to keep them."""
    ratelimit.check("checkout", str(buyer))

    def place(session: Session, remember: Remember) -> None:
        orders.place_order(
            session,
            user_id=buyer,
            event_id=body.event_id,
            lines=[LineRequest(i.ticket_type_id, i.quantity) for i in body.items],
            now=now,
            hold=timedelta(minutes=settings.hold_minutes),
            promo_code=body.promo_code,
            # Stored with the order, before the tickets' locks are taken.
            before_hold=lambda order: remember(OrderRead.model_validate(order)),
        )

    # The whole command in one worker thread (its database calls block).
    answer = await run_in_threadpool(idempotent.run_in_transaction, 201, place)
    if answer.headers.get(REPLAYED_HEADER) is None:
        metrics.record_order_placed()
    return answer


@router.get("", response_model=OrderPage)
def my_orders(
    caller: CallerDep,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    items, total = orders.my_orders(session, caller, page=page, size=size)
    return {"items": items, "page": page, "size": size, "total": total}


@router.get("/{order_id}", response_model=OrderRead)
def get_order(order_id: PathId, caller: CallerDep, session: SessionDep) -> OrderRead:
    return _order_read(session, orders.visible_order(session, caller, order_id))


@router.post("/{order_id}/cancel", response_model=OrderRead, responses=CONFLICT)
def cancel_order(order_id: PathId, caller: CallerDep, session: SessionDep) -> OrderRead:
    """Give up a pending order; its tickets are released at once."""
    return _order_read(session, orders.cancel_order(session, caller, order_id))


@router.post(
    "/{order_id}/payments",
    status_code=201,
    response_model=PaymentRead,
    responses={**MONEY_ERRORS, 402: {"model": ErrorResponse}},
)
async def pay(
    order_id: PathId,
    body: PaymentCreate,
    payer: UserIdDep,
    engine: EngineDep,
    provider: ProviderDep,
    now: NowDep,
    idempotent: IdempotencyDep,
):
    """Charge the order's total. With a payment method the answer is final (paid, or 402)."""

    def charge(key: KeyInCommand | None) -> PaymentRead:
        outcome = payments.start_payment(
            engine,
            provider,
            payer_id=payer,
            order_id=order_id,
            payment_method=body.payment_method,
            now=now,
            attempt_key=idempotent.key,
            claim=key.claim if key else None,
            answer=(lambda outcome: key.answer(_payment_read(outcome))) if key else None,
        )
        if outcome.payment_status.value in ("succeeded", "failed"):
            metrics.record_payment(outcome.payment_status.value)
        if outcome.refund_owed is not None:
            refunds.send(engine, provider, outcome.refund_owed, now=now)
            raise HoldExpired(
                "the hold expired and the tickets were sold meanwhile; the payment was refunded",
                payment_id=outcome.payment_id,
                refunded=True,
            )
        if outcome.failure_code:
            raise PaymentDeclined(
                "the payment was declined",
                payment_id=outcome.payment_id,
                failure_code=outcome.failure_code,
            )
        return _payment_read(outcome)

    # The whole command in one worker thread (its database and processor calls block).
    return await run_in_threadpool(idempotent.run_in_transactions, 201, charge)


@router.get("/{order_id}/tickets", response_model=list[TicketRead])
def order_tickets(order_id: PathId, caller: CallerDep, session: SessionDep) -> list[dict]:
    order = orders.visible_order(session, caller, order_id)
    return [
        {
            "code": t.code,
            "ticket_type_id": t.ticket_type_id,
            "status": t.status,
            "qr_url": f"/tickets/{t.code}/qr.svg",
        }
        for t in tickets.of_order(session, order.id)
    ]


@router.post(
    "/{order_id}/refunds", status_code=201, response_model=RefundRead, responses=MONEY_ERRORS
)
def refund_order(
    order_id: PathId,
    body: RefundCreate,
    caller: CallerDep,
    engine: EngineDep,
    provider: ProviderDep,
    now: NowDep,
    idempotent: IdempotencyDep,
):
    """Refund all or part of a paid order (its organizer's staff or finance). Never more than
    was paid: 409 `refund_exceeds_paid` says how much is left."""

    def give_back() -> RefundRead:
        refund = refunds.refund(
            engine,
            provider,
            caller,
            order_id=order_id,
            amount_minor=body.amount_minor,
            reason=body.reason,
            now=now,
            request_key=idempotent.request_key,
        )
        metrics.record_refund()
        return RefundRead.model_validate(refund)

    return idempotent.run(201, give_back)
