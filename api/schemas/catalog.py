"""The catalog's bodies: public event pages, and what organizers send to build events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.models import DiscountKind, EventStatus
from api.schemas.common import AwareDatetime, Currency, Id, MinorUnits, Name, Patch, RequestBody


class TicketTypeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    price_minor: int
    currency: str
    max_per_order: int
    available: int


class EventSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    category: str
    city: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    min_price_minor: int | None
    currency: str | None


class EventDetail(EventSummary):
    description: str
    sales_start_at: datetime
    sales_end_at: datetime
    ticket_types: list[TicketTypeRead]


class EventPage(BaseModel):
    items: list[EventSummary]
    page: int
    size: int
    total: int


# --- what organizers send and read -----------------------------------------------------------

ShortName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


class VenueCreate(RequestBody):
    organizer_id: Id | None = Field(None, description="needed when you act for several")
    name: Name
    address: Annotated[str, StringConstraints(max_length=400)] = ""
    city: ShortName
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(
        description="ISO 3166-1 alpha-2"
    )


class VenueRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organizer_id: int
    name: str
    address: str
    city: str
    country: str


Category = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EventCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    organizer_id: Id | None = Field(None, description="needed when you act for several")
    venue_id: Id | None = None
    title: Name
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    category: Category
    timezone: Timezone = Field(description="IANA name, e.g. Europe/Berlin")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    sales_start_at: AwareDatetime
    sales_end_at: AwareDatetime


class EventUpdate(Patch):
    model_config = ConfigDict(extra="forbid")
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"venue_id"})

    venue_id: Id | None = None
    title: Name | None = None
    description: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    category: Category | None = None
    timezone: Timezone | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    sales_start_at: AwareDatetime | None = None
    sales_end_at: AwareDatetime | None = None


class ManagedEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organizer_id: int
    venue_id: int | None
    title: str
    description: str
    category: str
    status: EventStatus
    timezone: str
    starts_at: datetime
    ends_at: datetime
    sales_start_at: datetime
    sales_end_at: datetime
    published_at: datetime | None


class ManagedEventPage(BaseModel):
    items: list[ManagedEventRead]
    page: int
    size: int
    total: int


class TicketTypeCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    name: ShortName
    price_minor: MinorUnits
    currency: Currency
    capacity: Annotated[int, Field(ge=0, le=10_000_000)]
    max_per_order: Annotated[int, Field(ge=1, le=100)] = 10
    sales_start_at: AwareDatetime | None = None
    sales_end_at: AwareDatetime | None = None


class TicketTypeUpdate(Patch):
    model_config = ConfigDict(extra="forbid")
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"sales_start_at", "sales_end_at"})

    name: ShortName | None = None
    price_minor: MinorUnits | None = None
    capacity: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    max_per_order: Annotated[int, Field(ge=1, le=100)] | None = None
    sales_start_at: AwareDatetime | None = None
    sales_end_at: AwareDatetime | None = None


class ManagedTicketTypeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int
    name: str
    price_minor: int
    currency: str
    capacity: int
    max_per_order: int
    sales_start_at: datetime | None
    sales_end_at: datetime | None


class QuotaCreate(RequestBody):
    name: ShortName
    capacity: Annotated[int, Field(ge=0, le=10_000_000)]
    ticket_type_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]


class QuotaRead(BaseModel):
    id: int
    event_id: int
    name: str
    capacity: int
    ticket_type_ids: list[int]


class PromoCodeCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,40}$")]
    kind: DiscountKind
    value: Annotated[int, Field(ge=1, le=10**12, description="percent, or minor units off")]
    max_uses: Annotated[int, Field(ge=1, le=10**9)] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _percent_at_most_100(self) -> PromoCodeCreate:
        if self.kind == DiscountKind.PERCENT and self.value > 100:
            raise ValueError("a percentage discount is at most 100")
        return self


class PromoCodeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int
    code: str
    kind: DiscountKind
    value: int
    max_uses: int | None
    valid_from: datetime | None
    valid_until: datetime | None


class MediaRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int
    content_type: str
    size_bytes: int
    url: str
