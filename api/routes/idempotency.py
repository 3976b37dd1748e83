"""The `Idempotency-Key` header on money-moving POSTs, for routes to wrap their command in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine

from api.db import unit_of_work
from api.deps import CallerDep, EngineDep, NowDep
from api.services import idempotency

REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Idempotency:
    engine: Engine
    caller: str
    key: str | None
    fingerprint: str
    now: datetime

    def run(self, status_code: int, command: Callable[[], BaseModel]) -> JSONResponse:
        """Run `command` once per key; a repeat gets the first answer with the same status."""
        if self.key is None:
            return JSONResponse(command().model_dump(mode="json"), status_code)
        scope = {"caller": self.caller, "key": self.key}
        with unit_of_work(self.engine) as session:
            stored = idempotency.claim(session, **scope, fingerprint=self.fingerprint, now=self.now)
        if stored is not None:
            return JSONResponse(stored.body, stored.status, headers={REPLAYED_HEADER: "true"})
        try:
            body = command().model_dump(mode="json")
        except BaseException:
            with unit_of_work(self.engine) as session:
                idempotency.release(session, **scope)
            raise
        with unit_of_work(self.engine) as session:
            idempotency.complete(session, **scope, status=status_code, body=body)
        return JSONResponse(body, status_code)


async def _idempotency(
    request: Request,
    engine: EngineDep,
    caller: CallerDep,
    now: NowDep,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=idempotency.MAX_KEY_LENGTH,
            description="send the same key again to get the first answer instead of a repeat",
        ),
    ] = None,
) -> Idempotency:
    body = await request.body()
    return Idempotency(
        engine=engine,
        caller=f"user:{caller.user_id}",
        key=key,
        fingerprint=idempotency.fingerprint(request.method, request.url.path, body),
        now=now,
    )


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
