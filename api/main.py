"""The FastAPI application: routes plus one mapping from domain errors to HTTP answers.

Every error body has one shape: `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import deps, hold_sweeper, telemetry
from api.db import get_engine
from api.errors import DomainError
from api.routes import (
    admin,
    auth,
    events,
    health,
    orders,
    organizer_events,
    organizers,
    tickets,
    webhooks,
)
from api.schemas import ErrorResponse

DESCRIPTION = """Events, orders, payments and check-in.

Money is in integer minor units (cents) with an ISO 4217 currency; times are UTC.
Sign in with `POST /auth/login` and send `Authorization: Bearer <token>`.
Money-moving POSTs take an `Idempotency-Key` header: a retry with the same key gets the
first answer. Errors are `{"error": {"code", "message", "details"}}`; branch on `code`.
"""


def _error(
    status: int,
    code: str,
    message: str,
    details: dict | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
    return _error(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [
        {"location": list(err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return _error(422, "invalid_input", "the request is not valid", {"fields": fields})


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    return _error(exc.status_code, code, str(exc.detail))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = app.dependency_overrides.get(deps.engine, get_engine)
    provider = app.dependency_overrides.get(deps.payment_provider, deps.default_payment_provider)
    async with hold_sweeper.running(engine, provider):
        yield


def create_app() -> FastAPI:
    app = FastAPI(
        title="TicketFlow API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
        # Any route may meet a body that is not JSON (400) or fails validation (422).
        responses={400: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    )
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    routes = (health, auth, events, orders, tickets, organizers, organizer_events, admin, webhooks)
    for module in routes:
        app.include_router(module.router)
    telemetry.install(app)
    return app
