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

from api.db import Statement, unit_of_work
from api.deps import EngineDep, NowDep, UserIdDep
from api.errors import DomainError, RequestInProgress
from api.services import idempotency

REPLAYED_HEADER = "Idempotent-Replayed"
# Hands a one-transaction command's answer over; returns the statement that stores it under
# the key (None without a key), for the command to send with its own writes.
Remember = Callable[[BaseModel], Statement | None]


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

    def run_in_transactions(
        self, status_code: int, command: Callable[[KeyInCommand | None], BaseModel]
    ) -> JSONResponse:
        """Like `run`, for a command of several transactions that claims the key in its first
        (`KeyInCommand.claim`, whose check raises KeyTaken) and stores its answer in its last
        when it can (`KeyInCommand.answer`), instead of a transaction of its own each."""
        if self.key is None:
            return JSONResponse(command(None).model_dump(mode="json"), status_code)
        key = KeyInCommand(self, status_code)
        try:
            answer = command(key)
        except idempotency.KeyTaken:
            with unit_of_work(self.engine) as session:
                stored = idempotency.claim(
                    session, **self._scope, fingerprint=self.fingerprint, now=self.now
                )
            if stored is not None:
                return JSONResponse(stored.body, stored.status, headers={REPLAYED_HEADER: "true"})
            key = KeyInCommand(self, status_code, claimed=True)  # a stale claim, taken over
            answer = self._releasing(key, command)
        except BaseException:
            if key.claim.claimed:  # not if the claim did not commit: it may be another's
                with unit_of_work(self.engine) as session:
                    idempotency.release(session, **self._scope)
            raise
        body = answer.model_dump(mode="json")
        # Stored with the command's last writes only if that is the answer it gave in the end
        # (a payment recorded another way answers with another payment id).
        if key.stored != body:
            with unit_of_work(self.engine) as session:
                idempotency.complete(session, **self._scope, status=status_code, body=body)
        return JSONResponse(body, status_code)

    def _releasing(
        self, key: KeyInCommand, command: Callable[[KeyInCommand], BaseModel]
    ) -> BaseModel:
        """Run `command` holding the key; release it if the command fails."""
        try:
            return command(key)
        except BaseException:
            with unit_of_work(self.engine) as session:
                idempotency.release(session, **self._scope)
            raise

    def run_in_transaction(
        self, status_code: int, command: Callable[[Session, Remember], object]
    ) -> JSONResponse:
        """Like `run`, for a command that is one transaction: its answer is stored in that
        transaction, so the change and the stored answer commit together or not at all, and
        the key costs no transaction of its own.

        The command hands its answer to `remember` as soon as it knows it (before taking
        locks, say) and sends the statement `remember` returns with its writes. A duplicate
        waits for the first to commit, then replays its answer; so does a repeat that a check
        refuses now (the tickets sold out since), and the same key with another body is
        refused, whatever the command would have said.
        """
        answers: list[dict] = []

        def remember(answer: BaseModel) -> Statement | None:
            body = answer.model_dump(mode="json")
            answers.append(body)
            if self.key is None:
                return None
            return idempotency.store(
                **self._scope,
                fingerprint=self.fingerprint,
                status=status_code,
                body=body,
                now=self.now,
            )

        if self.key is not None:
            idempotency.check_key(self.key)
        try:
            with unit_of_work(self.engine) as session:
                command(session, remember)
        except Exception as error:
            taken = idempotency.key_taken(error)
            if self.key is None or not (taken or isinstance(error, DomainError)):
                raise
            with unit_of_work(self.engine) as session:
                stored = idempotency.stored(session, **self._scope, fingerprint=self.fingerprint)
            if stored is None and taken:  # released by a request that failed, a moment ago
                raise RequestInProgress(
                    "a request with this Idempotency-Key just ended; retry", key=self.key
                ) from error
            if stored is None:
                raise
            return JSONResponse(stored.body, stored.status, headers={REPLAYED_HEADER: "true"})
        if len(answers) != 1:
            raise RuntimeError("the command must hand its answer to `remember` once")
        return JSONResponse(answers[0], status_code)

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


class KeyInCommand:
    """The Idempotency-Key handed to a command of several transactions: the statements that
    claim it and store the answer, for the command to send with its own."""

    def __init__(self, idempotent: Idempotency, status_code: int, *, claimed: bool = False):
        self._idempotent = idempotent
        self._status_code = status_code
        self.claim = None
        if not claimed:
            self.claim = idempotency.claim_statement(
                **idempotent._scope, fingerprint=idempotent.fingerprint, now=idempotent.now
            )
        self.stored: dict | None = None

    def answer(self, answer: BaseModel) -> Statement:
        """The statement that stores `answer`, to commit with the command's last writes."""
        self.stored = answer.model_dump(mode="json")
        return idempotency.complete_statement(
            **self._idempotent._scope, status=self._status_code, body=self.stored
        )


async def _idempotency(
    request: Request,
    engine: EngineDep,
    user_id: UserIdDep,
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
        caller=f"user:{user_id}",
        key=key,
        fingerprint=idempotency.fingerprint(request.method, request.url.path, body),
        now=now,
    )


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
