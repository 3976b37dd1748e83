"""JSON logs, one object per line on stderr, each tied to the request that caused it.

A request id comes from the caller's `X-Request-ID` (when it is short and plain) or is made
up; it is echoed in the response and added to every record logged while the request runs,
so one grep finds a request's whole story across workers.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.telemetry.asgi import route_template

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

access_log = logging.getLogger("api.access")


def current_request_id() -> str | None:
    return _request_id.get()


def request_id_from(header: str | None) -> str:
    """The caller's id if it is safe to log and echo, else a fresh one (never trust it raw)."""
    if header and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonLineFormatter(JsonFormatter):
    """time (UTC, ISO 8601), level, logger, message, request_id, pid, then the extras."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "request_id", "process"],
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            # uvicorn adds an ANSI-coloured copy of its messages.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing JSON lines to `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def logging_config(level: str) -> dict[str, Any]:
    """A `dictConfig` for the whole process; also handed to uvicorn as its `log_config`, so
    every worker process applies it when it starts."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": f"{__name__}.json_handler"}},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # Our access line replaces uvicorn's.
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
        "root": {"level": level.upper(), "handlers": ["json"]},
    }


def configure_logging(level: str) -> None:
    """Send all logging to stderr as JSON lines; calling it again replaces, never duplicates."""
    logging.config.dictConfig(logging_config(level))


class RequestLogMiddleware:
    """Pure ASGI: sets the request id, echoes it, and logs one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = request_id_from(sent.decode("latin-1"))
        token = _request_id.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            # A cancelled request (client gone) is no error of ours: no traceback for it.
            _log_access(scope, status, started, exc if isinstance(exc, Exception) else None)
            raise
        else:
            _log_access(scope, status, started, None)
        finally:
            _request_id.reset(token)


def _log_access(scope: Scope, status: int, started: float, error: Exception | None) -> None:
    client = scope.get("client")
    access_log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %s",
        scope["method"],
        scope["path"],
        status,
        exc_info=error,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "route": route_template(scope),
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "client": client[0] if client else None,
        },
    )
