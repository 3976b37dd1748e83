"""Who may do what: the signed-in caller and the organizer accounts they act for.

Roles: attendees buy; organizers manage their own organizers' events (never anyone else's:
another organizer's objects answer 404, as if they did not exist); finance reads money and
refunds on every event; admins may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Forbidden, NotFound, Unauthorized
from api.models import Event, OrganizerMember, Role, User


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: Role
    organizer_ids: frozenset[int]

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def manages(self, organizer_id: int) -> bool:
        """Organizer staff of this organizer, or an admin."""
        return self.is_admin or (self.role == Role.ORGANIZER and organizer_id in self.organizer_ids)

    def may_refund(self, organizer_id: int) -> bool:
        return self.role == Role.FINANCE or self.manages(organizer_id)

    def require(self, *roles: Role) -> None:
        if self.role not in roles and not self.is_admin:
            raise Forbidden(
                "your role may not do this", role=self.role.value, allowed=[r.value for r in roles]
            )


def load_caller(session: Session, user_id: int) -> Caller:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("the account does not exist or is disabled")
    organizer_ids = session.scalars(
        select(OrganizerMember.organizer_id).where(OrganizerMember.user_id == user_id)
    ).all()
    return Caller(user.id, user.role, frozenset(organizer_ids))


def managed_event(session: Session, caller: Caller, event_id: int, *, lock: bool = False) -> Event:
    """The event if the caller manages its organizer; NotFound if another organizer's.

    Forbidden first for roles that never manage events (attendees, finance), whoever's it is.
    """
    caller.require(Role.ORGANIZER)
    query = select(Event).where(Event.id == event_id)
    if lock:
        query = query.with_for_update(key_share=True)  # checkouts may still reference it
    event = session.scalar(query)
    if event is None or not caller.manages(event.organizer_id):
        raise NotFound("event not found")
    return event
