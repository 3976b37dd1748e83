"""Who uses the platform: users with a role, and organizer accounts with their members."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, created_at, id_column, pg_enum


class Role(enum.StrEnum):
    ATTENDEE = "attendee"
    ORGANIZER = "organizer"
    FINANCE = "finance"
    ADMIN = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = id_column()
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str]
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(pg_enum(Role, "user_role"), default=Role.ATTENDEE)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at()


Index("uq_users_email_lower", func.lower(User.email), unique=True)


class Organizer(Base):
    __tablename__ = "organizers"

    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at()


class OrganizerMember(Base):
    """A user who acts for an organizer account (role `organizer`)."""

    __tablename__ = "organizer_members"

    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = created_at()
