"""Organizer accounts and their members."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CallerDep, SessionDep
from api.models import Organizer, User
from api.schemas.accounts import MemberAdd, OrganizerCreate, OrganizerRead, UserRead
from api.schemas.common import AUTH_ERRORS, NOT_FOUND, PathId
from api.services import accounts

router = APIRouter(prefix="/organizers", tags=["organizers"], responses=AUTH_ERRORS)


@router.post("", status_code=201, response_model=OrganizerRead)
def create_organizer(body: OrganizerCreate, caller: CallerDep, session: SessionDep) -> Organizer:
    """Open an organizer account; you become its first member (and an organizer)."""
    return accounts.create_organizer(session, caller, name=body.name)


@router.get("", response_model=list[OrganizerRead])
def my_organizers(caller: CallerDep, session: SessionDep) -> list[Organizer]:
    return accounts.organizers_of(session, caller)


@router.post(
    "/{organizer_id}/members", status_code=201, response_model=UserRead, responses=NOT_FOUND
)
def add_member(
    organizer_id: PathId, body: MemberAdd, caller: CallerDep, session: SessionDep
) -> User:
    return accounts.add_member(session, caller, organizer_id=organizer_id, email=body.email)
