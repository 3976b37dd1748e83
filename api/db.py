"""The database engine and the unit of work: one transaction per business command.

Services take a `Session` and never commit; `unit_of_work()` commits once when the command
returns and rolls back when it raises, so nothing is ever half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from ticketflow.settings import get_settings


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    # No pre-ping: it is a round trip on every checkout, three per checkout request. After a
    # database restart the first statement on a stale connection fails once; SQLAlchemy then
    # drops every pooled connection older than that, and the next request reconnects.
    return create_engine(url, pool_size=20, max_overflow=20, pool_recycle=3600)


def get_engine() -> Engine:
    return engine_for(get_settings().sqlalchemy_url)


@lru_cache(maxsize=4)
def _session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose work commits together on success and rolls back on any error."""
    session = _session_factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
