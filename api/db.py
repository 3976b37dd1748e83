"""The database engine and the unit of work: one transaction per business command.

Services take a `Session` and never commit; `unit_of_work()` commits once when the command
returns and rolls back when it raises, so nothing is ever half-written. One exception, for
statements run under locks that every buyer of a ticket type waits for: `commit_with()`
sends a command's last statements and the commit in one round trip, so the locks are held
for server time only; the unit of work's own commit then finds nothing left to do.

The checkout's hot paths speak to psycopg directly (`driver()`), in the session's
transaction, with SQL compiled once from the models (`compiled()`): the ORM's work per
statement costs more CPU than the statement itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement

from ticketflow.settings import get_settings

Statement = tuple[str, Any]  # SQL with psycopg's %(name)s or %s placeholders, and its parameters
_DIALECT = psycopg_dialect.dialect()


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


def compiled(statement: ClauseElement) -> str:
    """A Core statement or `text()` as SQL for psycopg (`%(name)s` placeholders): compile once,
    at import, and run it with `driver()`.

    Lines lose their indentation: psycopg re-parses the placeholders of a statement longer
    than 4 KB on every run (it caches shorter ones), and the checkout statement's indented
    text was 4.5 KB.
    """
    sql = str(statement.compile(dialect=_DIALECT))
    return "\n".join(line.strip() for line in sql.splitlines() if line.strip())


def driver(session: Session) -> psycopg.Connection:
    """The session's psycopg connection, inside the session's transaction."""
    return session.connection().connection.driver_connection


def run_together(session: Session, statements: Sequence[Statement]) -> list[psycopg.Cursor]:
    """Send `statements` in one round trip (psycopg's pipeline mode), in the session's
    transaction; their cursors, to read after. The first error raises, and what followed it
    did not run."""
    connection = driver(session)
    with connection.pipeline():
        cursors = [connection.execute(sql, params) for sql, params in statements]
    return cursors


def commit_with(session: Session, statements: Sequence[Statement]) -> list[psycopg.Cursor]:
    """`run_together`, with the commit in the same round trip: for the last statements of a
    command, above all those run under locks that others wait for, which the commit releases
    (and for a command that is one statement, to save it a round trip). If one fails,
    nothing commits (the transaction is left failed, for the unit of work to roll back)."""
    connection = driver(session)
    with connection.pipeline():
        cursors = [connection.execute(sql, params) for sql, params in statements]
        connection.commit()
    return cursors
