"""FastAPI dependencies, as `Annotated` aliases routes can declare."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.db import get_engine, unit_of_work


def engine() -> Engine:
    """The database engine (tests override this one dependency to use their own)."""
    return get_engine()


EngineDep = Annotated[Engine, Depends(engine)]


def _session(engine: EngineDep) -> Iterator[Session]:
    with unit_of_work(engine) as session:
        yield session


def current_time() -> datetime:
    return datetime.now(UTC)


SessionDep = Annotated[Session, Depends(_session)]
NowDep = Annotated[datetime, Depends(current_time)]
