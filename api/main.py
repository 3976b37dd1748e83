"""The FastAPI application: routes plus one mapping from domain errors to HTTP answers.

Every error body has one shape: `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import DomainError
from api.routes import events, health


def _error(status: int, code: str, message: str, details: dict | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status)


async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    response = _error(exc.status, exc.code, exc.message, exc.details)
    if headers:
        response.headers.update(headers)
    return response


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [
        {"location": list(err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return _error(422, "invalid_input", "the request is not valid", {"fields": fields})


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, str(exc.detail))


def create_app() -> FastAPI:
    app = FastAPI(
        title="TicketFlow API",
        version="0.1.0",
        description="Events, orders, payments and check-in. Money is in integer minor units.",
    )
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(health.router)
    app.include_router(events.router)
    return app
