"""Tickets at the door: the QR code and the check-in scan."""

from __future__ import annotations

import io

import segno
from fastapi import APIRouter, Response

from api.deps import CallerDep, NowDep, SessionDep
from api.schemas.common import AUTH_ERRORS, CONFLICT, NOT_FOUND, TicketCode
from api.schemas.sales import CheckInCreate, CheckInRead
from api.services import tickets
from api.telemetry import metrics

router = APIRouter(tags=["tickets"])


@router.get(
    "/tickets/{code}/qr.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **NOT_FOUND},
)
def ticket_qr(code: TicketCode, session: SessionDep) -> Response:
    """The ticket's QR code. The code itself is the secret (128 random bits), so the image is
    served to whoever has it, as a printed ticket would be."""
    ticket = tickets.by_code(session, code)
    buffer = io.BytesIO()
    segno.make(ticket.code, error="m").save(buffer, kind="svg", scale=8, border=2)
    return Response(
        buffer.getvalue(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=86400"},
    )


@router.post(
    "/check-ins",
    status_code=201,
    response_model=CheckInRead,
    responses={**AUTH_ERRORS, **NOT_FOUND, **CONFLICT},
)
def check_in(body: CheckInCreate, caller: CallerDep, session: SessionDep, now: NowDep) -> dict:
    """Scan a ticket at the door (organizer staff of its event). A second scan answers 409
    `already_checked_in` with the first scan's time; refunded or unpaid tickets 409
    `ticket_not_valid`."""
    try:
        entry = tickets.check_in(session, caller, code=body.code, now=now)
    except tickets.CHECK_IN_REFUSALS as refusal:
        metrics.record_check_in(refusal.code)
        raise
    metrics.record_check_in("admitted")
    ticket = tickets.by_code(session, body.code)
    return {
        "code": ticket.code,
        "ticket_type_id": ticket.ticket_type_id,
        "order_id": ticket.order_id,
        "checked_in_at": entry.checked_in_at,
    }
