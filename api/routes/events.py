"""Public catalog: browse and search published events, see one with what is left to buy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import NowDep, SessionDep
from api.schemas import ErrorResponse, EventDetail, EventPage
from api.services import catalog

router = APIRouter(prefix="/events", tags=["events"])


@router.get("", response_model=EventPage)
def browse_events(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, description="words to search for")] = None,
    category: Annotated[str | None, Query(max_length=60)] = None,
    city: Annotated[str | None, Query(max_length=120)] = None,
    starts_from: datetime | None = None,
    starts_until: datetime | None = None,
    min_price_minor: Annotated[int | None, Query(ge=0)] = None,
    max_price_minor: Annotated[int | None, Query(ge=0)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    filters = catalog.EventFilter(
        text=q,
        category=category,
        city=city,
        starts_from=starts_from,
        starts_until=starts_until,
        min_price_minor=min_price_minor,
        max_price_minor=max_price_minor,
    )
    items, total = catalog.browse(session, filters, page=page, size=size)
    return {"items": items, "page": page, "size": size, "total": total}


@router.get("/{event_id}", response_model=EventDetail, responses={404: {"model": ErrorResponse}})
def get_event(event_id: int, session: SessionDep, now: NowDep) -> dict:
    return catalog.event_detail(session, event_id, now=now)
