"""Shapes every route shares: the error body, pages, money and time fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from fastapi import Path
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class RequestBody(BaseModel):
    """What clients send. PostgreSQL text cannot hold NUL characters: refuse them as input."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: object) -> object:
        if _has_nul(data):
            raise ValueError("text may not contain NUL (\\u0000) characters")
        return data


class Patch(RequestBody):
    """A partial update: omitted fields stay as they are; `null` only where it means
    something (listed in NULLABLE), never to blank a required column."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Patch:
        nulled = sorted(
            name for name in self.model_fields_set - self.NULLABLE if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"these fields cannot be null: {', '.join(nulled)}")
        return self


# A ticket's code as issued (`secrets.token_urlsafe(16)`), to refuse anything else early.
TICKET_CODE = r"^[A-Za-z0-9_-]{1,40}$"
TicketCode = Annotated[str, Path(pattern=TICKET_CODE)]

# For query and path text: anything but NUL.
NO_NUL = r"^[^\x00]*$"


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable, stable: branch on this")
    message: str
    details: dict = {}


class ErrorResponse(BaseModel):
    error: ErrorBody


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("give a time zone offset (UTC: append Z)")
    return value


# Ids are PostgreSQL bigints: anything outside 1..2^63-1 is refused as input, not looked up.
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]

# Times are stored in UTC; clients must say which instant they mean.
AwareDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217, upper case")
]
MinorUnits = Annotated[int, Field(ge=0, le=10**12, description="integer minor units (cents)")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

# Errors documented on routes that need a signed-in caller.
AUTH_ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}}
NOT_FOUND = {404: {"model": ErrorResponse}}
CONFLICT = {409: {"model": ErrorResponse}}
