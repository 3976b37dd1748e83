"""Shapes every route shares: the error body, pages, money and time fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints


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
