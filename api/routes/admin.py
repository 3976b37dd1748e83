"""Admin: user management."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CallerDep, SessionDep
from api.models import Role, User
from api.schemas.accounts import UserPage, UserRead, UserUpdate
from api.schemas.common import AUTH_ERRORS, NO_NUL, NOT_FOUND, PathId
from api.services import accounts

router = APIRouter(prefix="/admin", tags=["admin"], responses=AUTH_ERRORS)


@router.get("/users", response_model=UserPage)
def list_users(
    caller: CallerDep,
    session: SessionDep,
    email: Annotated[str | None, Query(max_length=320, pattern=NO_NUL)] = None,
    role: Role | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    users, total = accounts.list_users(
        session, caller, email=email, role=role, page=page, size=size
    )
    return {"items": users, "page": page, "size": size, "total": total}


@router.patch("/users/{user_id}", response_model=UserRead, responses=NOT_FOUND)
def update_user(user_id: PathId, body: UserUpdate, caller: CallerDep, session: SessionDep) -> User:
    """Give a role (organizer, finance, admin) or disable an account."""
    return accounts.update_user(session, caller, user_id, **body.model_dump(exclude_unset=True))
