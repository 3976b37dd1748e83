"""The warehouse's HTTP front: ClickHouse's HTTP interface over the in-process chdb engine.

chdb cannot start the engine's own HTTP listener ("start_servers_callback is not set"), so this
small ASGI app speaks the protocol instead, for the requests real clients make
(clickhouse-connect, dbt-clickhouse): `GET /ping`; queries as the POST body or the `query`
parameter; `INSERT ... FORMAT X` followed by data, compressed or not, streamed into the engine;
results streamed back chunk by chunk; settings, `param_*` bindings, `database` and sessions;
errors as ClickHouse sends them. Every engine call runs in a worker thread (chdb releases the
GIL), so slow queries never block other clients.

Not served, by choice: responses are never compressed (loopback), multipart requests (external
tables) are refused with NOT_IMPLEMENTED, and `wait_end_of_query` is not needed: a query that
fails before its first chunk gets a plain error response, and one that fails later gets
ClickHouse's in-band exception block, which clients detect.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ticketflow.embedded.warehouse.encodings import BodyDecoder
from ticketflow.embedded.warehouse.protocol import (
    NOT_IMPLEMENTED,
    QUERY_IS_TOO_LARGE,
    SYNTAX_ERROR,
    ClickHouseError,
    InsertHead,
    RequestParams,
    content_type,
    exception_block,
    output_format,
    parse_insert_head,
    parse_params,
    summary_header,
)
from ticketflow.embedded.warehouse.sessions import QueryStart, Session, SessionRegistry

MAX_QUERY_BYTES = 4 * 1024 * 1024  # a non-INSERT query text larger than this is refused
INSERT_BATCH_BYTES = 1024 * 1024  # body bytes handed to the engine per call
INSERT_HEAD_BYTES = 64 * 1024  # an INSERT statement in the body must end within this
EXPIRY_INTERVAL_S = 5.0
SERVER_NAME = "ticketflow-warehouse"


def _run(func, *args):
    return anyio.to_thread.run_sync(func, *args)


class Body:
    """The decoded request body, read as far as needed to find where the statement ends."""

    def __init__(self, request: Request):
        self._chunks = request.stream()
        self._decoder = BodyDecoder(request.headers.get("content-encoding"))
        self.buffer = bytearray()
        self.done = False

    async def read_more(self) -> bool:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._decoder.finish()
            self.done = True
            return False
        self.buffer += self._decoder.decode(chunk)
        return True

    async def read_all(self, limit: int) -> bytes:
        while await self.read_more():
            if len(self.buffer) > limit:
                raise ClickHouseError.of(
                    QUERY_IS_TOO_LARGE, f"Query is too large (more than {limit} bytes)", 413
                )
        return bytes(self.buffer)

    async def batches(self, start: int) -> AsyncIterator[bytes]:
        """The body from byte `start` on, in batches of about INSERT_BATCH_BYTES."""
        del self.buffer[:start]
        while True:
            while not self.done and len(self.buffer) < INSERT_BATCH_BYTES:
                await self.read_more()
            if self.buffer:
                yield bytes(self.buffer)
                self.buffer.clear()
            if self.done:
                return


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body iterator however the response ends (a client hanging up mid-send
    included), so the stream's clean-up runs now rather than whenever it is collected."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def _error_response(error: ClickHouseError, query_id: str) -> Response:
    return PlainTextResponse(
        str(error) + "\n",
        status_code=error.http_status,
        headers={
            "X-ClickHouse-Exception-Code": str(error.code),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
        },
    )


class WarehouseFront:
    def __init__(self, registry: SessionRegistry, timezone: str):
        self.registry = registry
        self.timezone = timezone

    def _headers(self, query_id: str, **extra: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.timezone,
            "X-ClickHouse-Server-Display-Name": SERVER_NAME,
            **extra,
        }

    async def ping(self, _: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(self, request: Request) -> Response:
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        session: Session | None = None
        try:
            params = parse_params(request.query_params.multi_items(), request.method)
            if request.headers.get("content-type", "").startswith("multipart/"):
                raise ClickHouseError.of(
                    NOT_IMPLEMENTED, "Multipart requests (external tables) are not supported", 501
                )
            body = Body(request)
            insert = await self._find_insert(params, body)
            session = self.registry.checkout(
                params.session_id, params.session_timeout, params.session_check
            )
            if insert is not None:
                return await self._insert(session, params, insert, body, query_id)
            sql = params.query
            if not body.done or body.buffer:
                text = (await body.read_all(MAX_QUERY_BYTES)).decode()
                sql = f"{sql}\n{text}" if sql else text
            response = await self._select(session, sql, params, query_id)
            if isinstance(response, ClosingStreamingResponse):
                session = None  # the stream checks the session back in when it ends
            return response
        except ClickHouseError as error:
            return _error_response(error, query_id)
        except UnicodeDecodeError:
            error = ClickHouseError.of(SYNTAX_ERROR, "The query is not valid UTF-8")
            return _error_response(error, query_id)
        except Exception as exc:  # an engine error raised where no narrower handler wraps it
            return _error_response(ClickHouseError.from_engine(exc), query_id)
        finally:
            if session is not None:
                with anyio.CancelScope(shield=True):
                    await self.registry.checkin(session, _run)

    async def _find_insert(self, params: RequestParams, body: Body) -> InsertHead | None:
        """Where an `INSERT ... FORMAT X` statement ends and its data starts, if it is one.

        The statement is either the `query` parameter (the body is then all data) or the start
        of the body; read just enough of the body to see the statement's end.
        """
        if params.query.strip():
            query = params.query.encode()
            head = parse_insert_head(query)
            if head is not None and head.data_offset >= len(query.rstrip()):
                return InsertHead(head.statement, head.format, 0)
            return None
        while True:
            window = bytes(body.buffer[:INSERT_HEAD_BYTES])
            head = parse_insert_head(window)
            if head is not None and (head.data_offset < len(window) or body.done):
                return head
            if body.done or len(body.buffer) >= INSERT_HEAD_BYTES:
                return None
            await body.read_more()

    async def _insert(
        self, session: Session, params: RequestParams, head: InsertHead, body: Body, query_id: str
    ) -> Response:
        started = time.perf_counter()
        inserter = await _run(session.start_insert, params, head.statement, head.format)
        try:
            async for batch in body.batches(head.data_offset):
                await _run(inserter.append, batch)
            result = await _run(inserter.finish)
        except BaseException as exc:  # also a client gone mid-upload: insert nothing
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await _run(inserter.cancel)
            if isinstance(exc, Exception) and not isinstance(exc, ClickHouseError):
                raise ClickHouseError.from_engine(exc) from exc
            raise
        summary = summary_header(
            written_rows=result.rows_written,
            written_bytes=result.bytes_written,
            elapsed_s=time.perf_counter() - started,
        )
        return Response(b"", headers=self._headers(query_id, **{"X-ClickHouse-Summary": summary}))

    async def _select(
        self, session: Session, sql: str, params: RequestParams, query_id: str
    ) -> Response:
        if not sql.strip():
            raise ClickHouseError.of(SYNTAX_ERROR, "Empty query")
        fmt = output_format(sql, params.default_format)
        started = time.perf_counter()
        start = await _run(session.start_query, params, sql, fmt)
        headers = self._headers(query_id)
        if start.produces_rows:
            headers["X-ClickHouse-Format"] = fmt
        if start.stream is None:
            headers["X-ClickHouse-Summary"] = summary_header(
                elapsed_s=time.perf_counter() - started
            )
            return Response(start.data, headers=headers, media_type=content_type(fmt))
        tag = secrets.token_hex(8)
        headers["X-ClickHouse-Exception-Tag"] = tag
        headers["X-ClickHouse-Summary"] = summary_header()
        return ClosingStreamingResponse(
            self._stream(session, start, tag), headers=headers, media_type=content_type(fmt)
        )

    async def _stream(self, session: Session, start: QueryStart, tag: str) -> AsyncIterator[bytes]:
        stream = start.stream
        try:
            yield start.data
            while (chunk := await _run(stream.fetch)) is not None:
                yield chunk.bytes()
        except Exception as exc:
            yield exception_block(tag, str(ClickHouseError.from_engine(exc)))
        finally:
            # Cancelling waits for the block being computed: off the event loop, and shielded
            # so that a client hanging up cannot skip it and leave the session busy.
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    await _run(stream.cancel)
                await self.registry.checkin(session, _run)

    async def expire_sessions_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL_S)
            self.registry.expire_idle()


def create_app(path: str) -> Starlette:
    registry = SessionRegistry(path)
    timezone = registry.engine.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()
    front = WarehouseFront(registry, timezone)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette):
        expiry = asyncio.create_task(front.expire_sessions_forever())
        try:
            yield
        finally:
            expiry.cancel()
            registry.close()

    return Starlette(
        routes=[
            Route("/", front.query, methods=["GET", "POST"]),
            Route("/ping", front.ping, methods=["GET", "HEAD"]),
        ],
        lifespan=lifespan,
    )
