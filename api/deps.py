"""FastAPI dependencies, as `Annotated` aliases routes can declare."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api import security
from api.db import get_engine, unit_of_work
from api.errors import Unauthorized
from api.payments.provider import PaymentProvider
from api.services.access import Caller, load_caller
from ticketflow.settings import Settings, get_settings

# The trivial dependencies are coroutines: FastAPI runs a plain `def` dependency in a worker
# thread, a hand-off that costs more than what these do.


async def engine() -> Engine:
    """The database engine (tests override this one dependency to use their own)."""
    return get_engine()


async def settings() -> Settings:
    return get_settings()


def default_payment_provider() -> PaymentProvider:
    from api.payments.stripe_provider import provider_for

    return provider_for(get_settings())


async def payment_provider() -> PaymentProvider:
    return default_payment_provider()


EngineDep = Annotated[Engine, Depends(engine)]
SettingsDep = Annotated[Settings, Depends(settings)]
ProviderDep = Annotated[PaymentProvider, Depends(payment_provider)]


def _session(engine: EngineDep) -> Iterator[Session]:
    with unit_of_work(engine) as session:
        yield session


async def current_time() -> datetime:
    return datetime.now(UTC)


# scope="function": commit before the response is sent. FastAPI's default ("request") ends a
# yield dependency after sending, so a client could read 201 before the commit (or the commit
# could fail after the client was told it worked).
SessionDep = Annotated[Session, Depends(_session, scope="function")]
NowDep = Annotated[datetime, Depends(current_time)]

_bearer = HTTPBearer(auto_error=False, description="an access token from POST /auth/login")


async def _user_id(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    if credentials is None:
        raise Unauthorized("sign in first: send `Authorization: Bearer <token>`")
    return security.user_id_from_token(
        credentials.credentials, secret=settings.effective_jwt_secret
    )


# The signed-in user's id, from the token alone: for commands that check the account in their
# own transaction (checkout), instead of a transaction of its own before them.
UserIdDep = Annotated[int, Depends(_user_id)]


def _caller(engine: EngineDep, user_id: UserIdDep) -> Caller:
    with unit_of_work(engine) as session:
        return load_caller(session, user_id)


CallerDep = Annotated[Caller, Depends(_caller)]
