"""Public catalog: browse and search published events, see one with what is left to buy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import NowDep, SessionDep, SettingsDep
from api.schemas import ErrorResponse
from api.schemas.catalog import EventDetail, EventPage
from api.schemas.common import NO_NUL, PathId
from api.services import catalog, media

router = APIRouter(prefix="/events", tags=["events"])


@router.get("", response_model=EventPage)
def browse_events(
    session: SessionDep,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="words to search for")
    ] = None,
    category: Annotated[str | None, Query(max_length=60, pattern=NO_NUL)] = None,
    city: Annotated[str | None, Query(max_length=120, pattern=NO_NUL)] = None,
    starts_from: datetime | None = None,
    starts_until: datetime | None = None,
    min_price_minor: Annotated[int | None, Query(ge=0, le=10**12)] = None,
    max_price_minor: Annotated[int | None, Query(ge=0, le=10**12)] = None,
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
def get_event(event_id: PathId, session: SessionDep, now: NowDep) -> dict:
    return catalog.event_detail(session, event_id, now=now)


@router.get(
    "/{event_id}/media/{media_id}",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, 404: {"model": ErrorResponse}},
)
def get_image(
    event_id: PathId, media_id: PathId, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """An image of a published event."""
    path, content_type = media.public_image(session, event_id, media_id, root=settings.media_path)
    return FileResponse(path, media_type=content_type)
