"""The declarative base: naming conventions for constraints, UTC timestamps, enum columns."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Enum, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), int: BigInteger}  # noqa: RUF012


def pg_enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A native PostgreSQL enum storing the members' values (lower-case words)."""
    return Enum(enum_class, name=name, values_callable=lambda members: [m.value for m in members])


def created_at() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


def id_column() -> Mapped[int]:
    return mapped_column(BigInteger, primary_key=True, autoincrement=True)
