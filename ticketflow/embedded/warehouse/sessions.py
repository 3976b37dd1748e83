"""ClickHouse HTTP sessions mapped onto chdb connections.

Every chdb connection to the data directory is its own engine session (its own `SET`s, current
database and temporary tables) while sharing the tables, and statements on different
connections run in parallel. So a client's `session_id` gets a connection of its own, kept
until the session times out, and a request without one gets a fresh connection that is closed
after it (opening one costs about 0.3 ms). Requests in one session run one at a time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import chdb

from ticketflow.embedded.warehouse.protocol import (
    SESSION_NOT_FOUND,
    SYNTAX_ERROR,
    ClickHouseError,
    RequestParams,
    set_statement,
)


@dataclass
class QueryStart:
    """A query run up to its first chunk: streaming (`stream` set) or already complete."""

    stream: object | None  # chdb StreamingResult, None when the result came buffered
    data: bytes  # the first chunk, or the whole result when buffered
    produces_rows: bool  # a SELECT-like statement (ClickHouse then names its format)


@dataclass(eq=False)
class Session:
    connection: chdb.state.sqlitelike.Connection
    session_id: str | None
    timeout_s: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    # Settings that came as URL parameters and are applied on the connection now.
    url_settings: dict[str, str] = field(default_factory=dict)

    def apply(self, database: str | None, settings: dict[str, str]) -> None:
        """Make the connection's database and URL settings those of this request (blocking).

        ClickHouse applies URL settings to one query only. Clients send the same settings with
        every request of a session, so instead of setting and restoring them around each query
        we change only what differs from the previous request and reset what it no longer
        sends; a request that sends no settings runs with the session's own.
        """
        changes: dict[str, str | None] = {
            name: value for name, value in settings.items() if self.url_settings.get(name) != value
        }
        changes.update({name: None for name in self.url_settings if name not in settings})
        try:
            if changes:
                self.connection.query(set_statement(changes))
                self.url_settings = dict(settings)
            if database is not None:
                self.connection.query(f"USE `{database}`")
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc

    def start_query(self, params: RequestParams, sql: str, fmt: str) -> QueryStart:
        """Apply the request's context and run `sql` up to its first chunk (blocking)."""
        self.apply(params.database, params.settings)
        conn = self.connection
        query_params = params.query_params
        try:
            kind = conn._conn.classify_query(sql)
            if kind["statement_count"] > 1:
                raise ClickHouseError.of(SYNTAX_ERROR, "Multi-statements are not allowed")
            produces_rows = kind["query_class"].name == "READ_ONLY"
            try:
                stream = conn.send_query(sql, fmt, query_params)
            except Exception as exc:
                if "Streaming query is not supported" not in str(exc):
                    raise
                # chdb streams only SELECT; DDL, SHOW, DESCRIBE and the like run buffered.
                result = conn.query(sql, fmt, query_params)
                data = result.bytes() if hasattr(result, "bytes") else bytes(result)
                return QueryStart(None, data, produces_rows)
            first = stream.fetch()
            return QueryStart(stream, first.bytes() if first is not None else b"", produces_rows)
        except ClickHouseError:
            raise
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc

    def start_insert(self, params: RequestParams, statement: str, fmt: str):
        """Apply the request's context and open a chdb streaming inserter (blocking)."""
        self.apply(params.database, params.settings)
        try:
            return self.connection.send_insert(statement, fmt)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc


class SessionRegistry:
    """Owns the data directory's chdb connections; one instance per warehouse process."""

    def __init__(self, path: str):
        self.path = path
        # Held for the life of the process: it keeps the engine (and the directory) open.
        self.engine = chdb.connect(path)
        self._sessions: dict[str, Session] = {}

    def _connect(self) -> chdb.state.sqlitelike.Connection:
        return chdb.connect(self.path)

    async def checkout(self, session_id: str | None, timeout_s: float, check: bool) -> Session:
        """The session to run a request in, locked for it. Pair with `checkin`."""
        if session_id is None:
            session = Session(self._connect(), None, timeout_s)
        else:
            session = self._sessions.get(session_id)
            if session is None:
                if check:
                    raise ClickHouseError.of(
                        SESSION_NOT_FOUND, f"Session {session_id} not found", 404
                    )
                session = Session(self._connect(), session_id, timeout_s)
                self._sessions[session_id] = session
            session.timeout_s = timeout_s
        await session.lock.acquire()
        return session

    def checkin(self, session: Session) -> None:
        session.last_used = time.monotonic()
        session.lock.release()
        if session.session_id is None:
            session.connection.close()

    def expire_idle(self) -> int:
        """Close sessions idle past their timeout; return how many were closed."""
        now = time.monotonic()
        expired = [
            s
            for s in self._sessions.values()
            if not s.lock.locked() and now - s.last_used > s.timeout_s
        ]
        for session in expired:
            del self._sessions[session.session_id]
            session.connection.close()
        return len(expired)

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        for session in self._sessions.values():
            session.connection.close()
        self._sessions.clear()
        self.engine.close()
