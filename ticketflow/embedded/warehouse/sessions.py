"""ClickHouse HTTP sessions mapped onto chdb connections, and the blocking engine calls.

Every chdb connection to the data directory is its own engine session (its own `SET`s, current
database and temporary tables) while sharing the tables, and statements on different
connections run in parallel. So a client's `session_id` gets a connection of its own, kept
until the session times out, and a request without one gets a fresh connection that is closed
after it (opening one costs about 0.3 ms). A session serves one request at a time; a second
one arriving meanwhile is refused with SESSION_IS_LOCKED, as ClickHouse does.

URL settings and `database` apply to one request, as on a server: the session's own values are
put back afterwards. Reading them costs a query, so they are remembered per session and read
again only after the session ran a statement that may change them (SET, USE, ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import chdb

from ticketflow.embedded.warehouse.protocol import (
    READONLY,
    SESSION_IS_LOCKED,
    SESSION_NOT_FOUND,
    SYNTAX_ERROR,
    ClickHouseError,
    RequestParams,
    quote_literal,
    set_statement,
)

# Output formats whose chunks can be concatenated: each chunk is rows only, with no header,
# footer or file framing. Others (JSON, CSVWithNames, Arrow, Parquet, ...) are produced whole.
STREAMABLE_FORMATS = frozenset(
    name.lower()
    for name in (
        "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV", "JSONEachRow", "JSONLines",
        "NDJSON", "JSONCompactEachRow", "JSONStringsEachRow", "RowBinary", "Native", "Values",
        "LineAsString",
    )
)  # fmt: skip
_DATABASE = "__database__"


@dataclass
class QueryStart:
    """A query run up to its first chunk: streaming (`stream` set) or already complete."""

    stream: object | None  # chdb StreamingResult, None when the result came whole
    data: bytes  # the first chunk, or the whole result
    produces_rows: bool  # a SELECT-like statement (ClickHouse then names its format)


@dataclass(eq=False)
class Session:
    connection: chdb.state.sqlitelike.Connection
    session_id: str | None
    timeout_s: float
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)
    # The session's own setting values (and current database under _DATABASE), as read.
    own: dict[str, str] = field(default_factory=dict)
    # What this request changed and must put back.
    to_restore: dict[str, str] = field(default_factory=dict)

    # --- per-request context -----------------------------------------------------------
    def _read_own(self, names: list[str]) -> None:
        missing = [n for n in names if n not in self.own]
        if not missing:
            return
        settings = [n for n in missing if n != _DATABASE]
        sql = f"SELECT '{_DATABASE}', currentDatabase()"
        if settings:
            listed = ", ".join(quote_literal(n) for n in settings)
            sql += f" UNION ALL SELECT name, value FROM system.settings WHERE name IN ({listed})"
        rows = self.connection.query(sql, "TabSeparatedRaw").bytes().decode().splitlines()
        for row in rows:
            name, _, value = row.partition("\t")
            self.own[name] = value

    def enter(self, params: RequestParams) -> None:
        """Apply the request's URL settings and database to the connection (blocking)."""
        wanted = dict(params.settings)
        if params.database is not None:
            wanted[_DATABASE] = params.database
        if not wanted:
            return
        if self.session_id is not None:  # a throw-away connection needs nothing put back
            self._read_own(list(wanted))
        changes = {k: v for k, v in wanted.items() if self.own.get(k) != v}
        try:
            self._apply(changes)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        if self.session_id is not None:
            self.to_restore = {k: self.own[k] for k in changes if k in self.own}

    def _apply(self, values: dict[str, str]) -> None:
        values = dict(values)
        database = values.pop(_DATABASE, None)
        if values:
            self.connection.query(set_statement(values))
        if database is not None:
            self.connection.query(f"USE `{database}`")

    def leave(self) -> None:
        """Put back what `enter` changed (blocking); called when the request is over."""
        if self.to_restore:
            restore, self.to_restore = self.to_restore, {}
            try:
                self._apply(restore)
            except Exception:
                self.own.clear()  # unknown state: read it again next time
                raise

    # --- statements ----------------------------------------------------------------------
    def _check(self, sql: str, params: RequestParams) -> bool:
        """Refuse what this request may not run; return whether it produces rows."""
        kind = self.connection._conn.classify_query(sql)
        if kind["statement_count"] > 1:
            raise ClickHouseError.of(SYNTAX_ERROR, "Multi-statements are not allowed")
        read_only = kind["query_class"].name == "READ_ONLY"
        if params.readonly and not read_only:
            raise ClickHouseError.of(
                READONLY, "Cannot execute query in readonly mode", http_status=403
            )
        if kind["query_class"].name == "CONTROL":
            self.own.clear()  # SET, USE and the like may change the session's own values
        return read_only

    def start_query(self, params: RequestParams, sql: str, fmt: str) -> QueryStart:
        """Apply the request's context and run `sql` up to its first chunk (blocking)."""
        produces_rows = self._check(sql, params)
        self.enter(params)
        conn = self.connection
        try:
            if produces_rows and fmt.lower() in STREAMABLE_FORMATS:
                try:
                    stream = conn.send_query(sql, fmt, params.query_params)
                except Exception as exc:
                    if "Streaming query is not supported" not in str(exc):
                        raise
                else:
                    first = stream.fetch()
                    if first is not None:
                        return QueryStart(stream, first.bytes(), produces_rows)
                    # Empty: run it whole so that formats with a header still get one.
            # chdb streams only SELECT; DDL, SHOW, DESCRIBE and the like run whole.
            result = conn.query(sql, fmt, params.query_params)
            data = result.bytes() if hasattr(result, "bytes") else bytes(result)
            return QueryStart(None, data, produces_rows)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc

    def start_insert(self, params: RequestParams, statement: str, fmt: str):
        """Apply the request's context and open a chdb streaming inserter (blocking)."""
        if params.readonly:
            raise ClickHouseError.of(
                READONLY, "Cannot execute query in readonly mode", http_status=403
            )
        self.enter(params)
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

    def checkout(self, session_id: str | None, timeout_s: float, check: bool) -> Session:
        """The session to run a request in, marked busy. Pair with `checkin`."""
        if session_id is None:
            session = Session(chdb.connect(self.path), None, timeout_s)
        else:
            session = self._sessions.get(session_id)
            if session is None:
                if check:
                    raise ClickHouseError.of(
                        SESSION_NOT_FOUND, f"Session {session_id} not found", 404
                    )
                session = Session(chdb.connect(self.path), session_id, timeout_s)
                self._sessions[session_id] = session
            elif session.busy:
                raise ClickHouseError.of(
                    SESSION_IS_LOCKED, f"Session {session_id} is locked by a concurrent client", 409
                )
            session.timeout_s = timeout_s
        session.busy = True
        return session

    async def checkin(self, session: Session, run) -> None:
        """End the session's request: put its context back (via `run`, off the event loop)."""
        try:
            if session.to_restore:
                await run(session.leave)
        finally:
            session.last_used = time.monotonic()
            session.busy = False
            if session.session_id is None:
                session.connection.close()

    def expire_idle(self) -> int:
        """Close sessions idle past their timeout; return how many were closed."""
        now = time.monotonic()
        expired = [
            s for s in self._sessions.values() if not s.busy and now - s.last_used > s.timeout_s
        ]
        for session in expired:
            del self._sessions[session.session_id]
            session.connection.close()
        return len(expired)

    def close(self) -> None:
        for session in self._sessions.values():
            session.connection.close()
        self._sessions.clear()
        self.engine.close()
