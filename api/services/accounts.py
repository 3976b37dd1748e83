"""Accounts: sign-up, sign-in, organizer accounts and their members, admin user management."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from api import security
from api.errors import Conflict, InvalidInput, NotFound, Unauthorized
from api.models import Organizer, OrganizerMember, Role, User
from api.services.access import Caller

MIN_PASSWORD_LENGTH = 10


class EmailTaken(Conflict):
    code = "email_taken"


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


def _by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def sign_up(
    session: Session, *, email: str, password: str, full_name: str, role: Role = Role.ATTENDEE
) -> User:
    """A new account: an attendee through the API (other roles are given by an admin), any
    role from the operator's command line (`ticketflow users add`)."""
    email = email.strip()
    if _by_email(session, email) is not None:
        raise EmailTaken("an account with this e-mail already exists", field="email")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"passwords need at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    user = User(
        email=email,
        password_hash=security.hash_password(password),
        full_name=full_name.strip(),
        role=role,
    )
    session.add(user)
    session.flush()
    return user


def log_in(
    session: Session, *, email: str, password: str, secret: str, now: datetime, lifetime: timedelta
) -> AccessToken:
    user = _by_email(session, email)
    valid = security.verify_password(user.password_hash if user else None, password)
    if not valid or user is None or not user.is_active:
        raise Unauthorized("wrong e-mail or password")
    token = security.issue_token(user.id, secret=secret, now=now, lifetime=lifetime)
    return AccessToken(token, int(lifetime.total_seconds()))


def create_organizer(session: Session, caller: Caller, *, name: str) -> Organizer:
    """An organizer account, with the caller as its first member.

    An attendee who creates one becomes an organizer; finance staff may not (they audit
    organizers and must not act for one).
    """
    caller.require(Role.ATTENDEE, Role.ORGANIZER)
    organizer = Organizer(name=name.strip())
    session.add(organizer)
    session.flush()
    session.execute(
        insert(OrganizerMember).values(organizer_id=organizer.id, user_id=caller.user_id)
    )
    user = session.get(User, caller.user_id)
    if user.role == Role.ATTENDEE:
        user.role = Role.ORGANIZER
    return organizer


def organizers_of(session: Session, caller: Caller) -> list[Organizer]:
    query = select(Organizer).order_by(Organizer.id)
    if not caller.is_admin:
        query = query.where(Organizer.id.in_(caller.organizer_ids))
    return list(session.scalars(query))


def add_member(session: Session, caller: Caller, *, organizer_id: int, email: str) -> User:
    """Let another existing user act for an organizer the caller manages."""
    caller.require(Role.ORGANIZER)
    if session.get(Organizer, organizer_id) is None or not caller.manages(organizer_id):
        raise NotFound("organizer not found")
    user = _by_email(session, email)
    if user is None:
        raise NotFound("no account with this e-mail", field="email")
    if user.role not in (Role.ATTENDEE, Role.ORGANIZER):
        raise InvalidInput("only attendees and organizers can join an organizer", field="email")
    exists = session.get(OrganizerMember, (organizer_id, user.id))
    if exists is None:
        session.add(OrganizerMember(organizer_id=organizer_id, user_id=user.id))
    user.role = Role.ORGANIZER
    session.flush()
    return user


def list_users(
    session: Session, caller: Caller, *, email: str | None, role: Role | None, page: int, size: int
) -> tuple[list[User], int]:
    caller.require(Role.ADMIN)
    query = select(User)
    if email:
        query = query.where(func.lower(User.email).contains(email.lower(), autoescape=True))
    if role:
        query = query.where(User.role == role)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    users = session.scalars(query.order_by(User.id).offset((page - 1) * size).limit(size)).all()
    return list(users), total


def update_user(
    session: Session,
    caller: Caller,
    user_id: int,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
) -> User:
    caller.require(Role.ADMIN)
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("user not found")
    if user.id == caller.user_id and (role not in (None, Role.ADMIN) or is_active is False):
        raise InvalidInput("admins cannot demote or disable themselves", field="role")
    if role is not None:
        user.role = role
    if is_active is not None:
        user.is_active = is_active
    session.flush()
    return user
