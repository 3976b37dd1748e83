"""Organizer back office: venues, events, ticket types, quotas, promo codes, images, orders.

Everything here is scoped to the organizers the caller is a member of; another organizer's
objects answer 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, UploadFile

from api.deps import CallerDep, NowDep, SessionDep, SettingsDep
from api.models import Event, EventStatus, PromoCode, TicketType, Venue
from api.schemas.catalog import (
    EventCreate,
    EventUpdate,
    ManagedEventPage,
    ManagedEventRead,
    ManagedTicketTypeRead,
    MediaRead,
    PromoCodeCreate,
    PromoCodeRead,
    QuotaCreate,
    QuotaRead,
    TicketTypeCreate,
    TicketTypeUpdate,
    VenueCreate,
    VenueRead,
)
from api.schemas.common import AUTH_ERRORS, CONFLICT, NOT_FOUND, ErrorResponse, PathId
from api.schemas.sales import AttendeeOrderPage
from api.services import events, media

router = APIRouter(prefix="/organizer", tags=["organizer"], responses={**AUTH_ERRORS, **NOT_FOUND})
Page = Annotated[int, Query(ge=1, le=10_000)]
Size = Annotated[int, Query(ge=1, le=100)]


@router.post("/venues", status_code=201, response_model=VenueRead)
def create_venue(body: VenueCreate, caller: CallerDep, session: SessionDep) -> Venue:
    return events.create_venue(session, caller, body.model_dump())


@router.get("/venues", response_model=list[VenueRead])
def list_venues(caller: CallerDep, session: SessionDep) -> list[Venue]:
    return events.venues(session, caller)


@router.post("/events", status_code=201, response_model=ManagedEventRead)
def create_event(body: EventCreate, caller: CallerDep, session: SessionDep) -> Event:
    """A draft event: add ticket types, then publish it."""
    return events.create_event(session, caller, body.model_dump())


@router.get("/events", response_model=ManagedEventPage)
def list_events(
    caller: CallerDep,
    session: SessionDep,
    status: EventStatus | None = None,
    page: Page = 1,
    size: Size = 20,
) -> dict:
    items, total = events.list_events(session, caller, status=status, page=page, size=size)
    return {"items": items, "page": page, "size": size, "total": total}


@router.get("/events/{event_id}", response_model=ManagedEventRead)
def get_event(event_id: PathId, caller: CallerDep, session: SessionDep) -> Event:
    return events.get_event(session, caller, event_id)


@router.patch("/events/{event_id}", response_model=ManagedEventRead, responses=CONFLICT)
def update_event(
    event_id: PathId, body: EventUpdate, caller: CallerDep, session: SessionDep
) -> Event:
    return events.update_event(session, caller, event_id, body.model_dump(exclude_unset=True))


@router.post("/events/{event_id}/publish", response_model=ManagedEventRead, responses=CONFLICT)
def publish_event(event_id: PathId, caller: CallerDep, session: SessionDep, now: NowDep) -> Event:
    return events.publish(session, caller, event_id, now=now)


@router.post("/events/{event_id}/cancel", response_model=ManagedEventRead, responses=CONFLICT)
def cancel_event(event_id: PathId, caller: CallerDep, session: SessionDep) -> Event:
    """Stop sales and entry. Paid orders are not refunded automatically."""
    return events.cancel(session, caller, event_id)


@router.get("/events/{event_id}/ticket-types", response_model=list[ManagedTicketTypeRead])
def list_ticket_types(event_id: PathId, caller: CallerDep, session: SessionDep) -> list[TicketType]:
    return events.ticket_types(session, caller, event_id)


@router.post(
    "/events/{event_id}/ticket-types",
    status_code=201,
    response_model=ManagedTicketTypeRead,
    responses=CONFLICT,
)
def add_ticket_type(
    event_id: PathId, body: TicketTypeCreate, caller: CallerDep, session: SessionDep
) -> TicketType:
    return events.add_ticket_type(session, caller, event_id, body.model_dump())


@router.patch(
    "/events/{event_id}/ticket-types/{ticket_type_id}",
    response_model=ManagedTicketTypeRead,
    responses=CONFLICT,
)
def update_ticket_type(
    event_id: PathId,
    ticket_type_id: PathId,
    body: TicketTypeUpdate,
    caller: CallerDep,
    session: SessionDep,
    now: NowDep,
) -> TicketType:
    changes = body.model_dump(exclude_unset=True)
    return events.update_ticket_type(session, caller, event_id, ticket_type_id, changes, now=now)


@router.get("/events/{event_id}/quotas", response_model=list[QuotaRead])
def list_quotas(event_id: PathId, caller: CallerDep, session: SessionDep) -> list[dict]:
    return [
        _quota_read(quota, members) for quota, members in events.quotas(session, caller, event_id)
    ]


@router.post(
    "/events/{event_id}/quotas", status_code=201, response_model=QuotaRead, responses=CONFLICT
)
def add_quota(event_id: PathId, body: QuotaCreate, caller: CallerDep, session: SessionDep) -> dict:
    """A capacity shared by several ticket types (say, 500 seats for adults and children)."""
    quota = events.add_quota(
        session, caller, event_id, name=body.name, capacity=body.capacity, ids=body.ticket_type_ids
    )
    return _quota_read(quota, sorted(set(body.ticket_type_ids)))


def _quota_read(quota, members: list[int]) -> dict:
    return {
        "id": quota.id,
        "event_id": quota.event_id,
        "name": quota.name,
        "capacity": quota.capacity,
        "ticket_type_ids": members,
    }


@router.get("/events/{event_id}/promo-codes", response_model=list[PromoCodeRead])
def list_promo_codes(event_id: PathId, caller: CallerDep, session: SessionDep) -> list[PromoCode]:
    return events.promo_codes(session, caller, event_id)


@router.post(
    "/events/{event_id}/promo-codes",
    status_code=201,
    response_model=PromoCodeRead,
    responses=CONFLICT,
)
def add_promo_code(
    event_id: PathId, body: PromoCodeCreate, caller: CallerDep, session: SessionDep
) -> PromoCode:
    return events.add_promo_code(session, caller, event_id, body.model_dump())


@router.post(
    "/events/{event_id}/media",
    status_code=201,
    response_model=MediaRead,
    responses={413: {"model": ErrorResponse}},
)
def upload_image(
    event_id: PathId,
    file: UploadFile,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    """A JPEG, PNG or WebP image, at most `media_max_bytes` (5 MiB by default)."""
    data = file.file.read(settings.media_max_bytes + 1)
    image = media.add_image(
        session,
        caller,
        event_id,
        data,
        root=settings.media_path,
        max_bytes=settings.media_max_bytes,
    )
    return {
        "id": image.id,
        "event_id": image.event_id,
        "content_type": image.content_type,
        "size_bytes": image.size_bytes,
        "url": f"/events/{event_id}/media/{image.id}",
    }


@router.get("/events/{event_id}/orders", response_model=AttendeeOrderPage)
def list_orders(
    event_id: PathId, caller: CallerDep, session: SessionDep, page: Page = 1, size: Size = 50
) -> dict:
    """The event's orders and who placed them."""
    rows, total = events.orders(session, caller, event_id, page=page, size=size)
    items = [
        {
            "id": o.id,
            "event_id": o.event_id,
            "status": o.status,
            "currency": o.currency,
            "total_minor": o.total_minor,
            "created_at": o.created_at,
            "paid_at": o.paid_at,
            "buyer_email": email,
        }
        for o, email in rows
    ]
    return {"items": items, "page": page, "size": size, "total": total}
