"""Sign-up, sign-in, organizer accounts and admin user management."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.models import Role
from api.schemas.common import Name, Patch, RequestBody

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
Password = Annotated[str, StringConstraints(min_length=10, max_length=200)]


class SignUp(RequestBody):
    email: Email
    password: Password = Field(description="at least 10 characters")
    full_name: Name


class LogIn(RequestBody):
    email: Email
    password: Annotated[str, StringConstraints(max_length=200)]


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime


class MeRead(UserRead):
    organizer_ids: list[int]


class UserPage(BaseModel):
    items: list[UserRead]
    page: int
    size: int
    total: int


class UserUpdate(Patch):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None


class OrganizerCreate(RequestBody):
    name: Name


class OrganizerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime


class MemberAdd(RequestBody):
    email: Email
