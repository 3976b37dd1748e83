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
from sqlalchemy.orm import Session

from api.db import unit_of_work
from api.deps import CallerDep, EngineDep, NowDep
from api.services import idempotency

REPLAYED_HEADER = "Idempotent-Replayed"
Remember = Callable[[BaseModel], None]  # stores a command's answer in its own transaction


@dataclass(frozen=True)
class Idempotency:
    engine: Engine
    caller: str
    key: str | None
    fingerprint: str
    now: datetime

    def run(self, status_code: int, command: Callable[[], BaseModel]) -> JSONResponse:
        """Run `command` once per key; a repeat gets the first answer with the same status.

        For commands that span several transactions (a processor call between two);
        `run_in_transaction` is the better fit for one that does not.
        """

        def answer_then_store() -> dict:
            body = command().model_dump(mode="json")
            with unit_of_work(self.engine) as session:
                idempotency.complete(session, **self._scope, status=status_code, body=body)
            return body

        return self._once(status_code, command, answer_then_store)

    def run_in_transaction(
        self, status_code: int, command: Callable[[Session, Remember], BaseModel]
    ) -> JSONResponse:
        """Like `run`, for a command that is one transaction: its answer is stored in that
        transaction, so the change and the stored answer commit together or not at all.

        The command may hand its answer to `remember` as soon as it knows it (before taking
        locks, say); otherwise it is stored when the command returns.
        """
        remembered: list[BaseModel] = []

        def remember_in(session: Session) -> Remember:
            def remember(answer: BaseModel) -> None:
                body = answer.model_dump(mode="json")
                idempotency.complete(session, **self._scope, status=status_code, body=body)
                remembered.append(answer)

            return remember

        def answer_and_store() -> dict:
            with unit_of_work(self.engine) as session:
                remember = remember_in(session)
                answer = command(session, remember)
                if not remembered or remembered[-1] != answer:
                    remember(answer)
            return answer.model_dump(mode="json")

        def without_key() -> BaseModel:
            with unit_of_work(self.engine) as session:
                return command(session, lambda _: None)

        return self._once(status_code, without_key, answer_and_store)

    @property
    def request_key(self) -> str | None:
        """The key with its caller, for a command to remember on what it creates."""
        return f"{self.caller}:{self.key}" if self.key else None

    @property
    def _scope(self) -> dict[str, str]:
        return {"caller": self.caller, "key": self.key}

    def _once(
        self,
        status_code: int,
        without_key: Callable[[], BaseModel],
        with_key: Callable[[], dict],
    ) -> JSONResponse:
        if self.key is None:
            return JSONResponse(without_key().model_dump(mode="json"), status_code)
        with unit_of_work(self.engine) as session:
            stored = idempotency.claim(
                session, **self._scope, fingerprint=self.fingerprint, now=self.now
            )
        if stored is not None:
            return JSONResponse(stored.body, stored.status, headers={REPLAYED_HEADER: "true"})
        try:
            body = with_key()
        except BaseException:
            with unit_of_work(self.engine) as session:
                idempotency.release(session, **self._scope)
            raise
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
