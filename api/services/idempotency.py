"""`Idempotency-Key`: the first answer to a money-moving POST is stored and replayed.

Keys are per caller. A command that is one transaction writes its answer under the key with
its own writes (`store()`): a concurrent duplicate waits on that row until the first commits,
then finds the answer (`stored()`). A command of several transactions claims the key in its
first (`claim_statement()`, or `claim()` in a transaction of its own) and stores the answer
in its last (`complete_statement()`, or `complete()`): a duplicate meanwhile sees it in
flight and gets `RequestInProgress`. A later duplicate gets the stored answer; the same key
with a different request body is refused. Only successful answers are stored: a request that
failed changed nothing, so running it again is the right retry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import bindparam, delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.db import Statement, compiled, run_together
from api.errors import IdempotencyKeyReused, InvalidInput, RequestInProgress
from api.models import IdempotencyKey

MAX_KEY_LENGTH = 200
# A claim this old with no answer belongs to a request that died; a retry may take it over.
STALE_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()


_STORE = compiled(
    insert(IdempotencyKey).values(
        caller=bindparam("caller"),
        key=bindparam("key"),
        request_fingerprint=bindparam("fingerprint"),
        created_at=bindparam("now"),
        response_status=bindparam("status"),
        response_body=bindparam("body"),
    )
)


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", field="Idempotency-Key"
        )


def store(
    *, caller: str, key: str, fingerprint: str, status: int, body: dict, now: datetime
) -> Statement:
    """The statement that stores a one-transaction command's answer under its key, for the
    command to send with its own writes. It fails if the key is taken (`key_taken`): then
    `replay` the answer stored under it."""
    params = {
        "caller": caller,
        "key": key,
        "fingerprint": fingerprint,
        "now": now,
        "status": status,
        "body": Jsonb(body),
    }
    return _STORE, params


def key_taken(error: Exception) -> bool:
    """Whether `error` is `store()`'s statement meeting a key already stored."""
    return (
        isinstance(error, psycopg.errors.UniqueViolation)
        and error.diag.table_name == IdempotencyKey.__tablename__
    )


def stored(session: Session, *, caller: str, key: str, fingerprint: str) -> StoredResponse | None:
    """The answer stored under a key, for a repeat of the request; None if nothing is stored
    under it. Raises for a different request under the same key, or one still running."""
    row = session.get(IdempotencyKey, (caller, key))
    if row is None:
        return None
    if row.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request", key=key)
    if row.response_status is None:
        raise RequestInProgress("a request with this Idempotency-Key is still running", key=key)
    return StoredResponse(row.response_status, row.response_body)


_CLAIM = compiled(
    insert(IdempotencyKey)
    .values(
        caller=bindparam("caller"),
        key=bindparam("key"),
        request_fingerprint=bindparam("fingerprint"),
        created_at=bindparam("now"),
    )
    .on_conflict_do_nothing()
    .returning(IdempotencyKey.key)
)
_COMPLETE = compiled(
    update(IdempotencyKey)
    .where(IdempotencyKey.caller == bindparam("caller"), IdempotencyKey.key == bindparam("key"))
    .values(response_status=bindparam("status"), response_body=bindparam("body"))
)


class KeyTaken(Exception):
    """`ClaimStatement`'s key was taken: see what is stored under it (`claim()`)."""


@dataclass
class ClaimStatement:
    """A claim of a key for a command of several transactions to send in its first, committed
    before the command's side effects (the processor call); `check` its cursor once that
    committed."""

    statement: Statement
    claimed: bool = False  # the key is the caller's now (to release if the command fails)

    def check(self, cursor: psycopg.Cursor) -> None:
        if cursor.fetchone() is None:
            raise KeyTaken
        self.claimed = True


def claim_statement(*, caller: str, key: str, fingerprint: str, now: datetime) -> ClaimStatement:
    check_key(key)
    params = {"caller": caller, "key": key, "fingerprint": fingerprint, "now": now}
    return ClaimStatement((_CLAIM, params))


def complete_statement(*, caller: str, key: str, status: int, body: dict) -> Statement:
    """`complete()` as a statement, for a command to send with its last writes."""
    return _COMPLETE, {"caller": caller, "key": key, "status": status, "body": Jsonb(body)}


def claim(
    session: Session, *, caller: str, key: str, fingerprint: str, now: datetime
) -> StoredResponse | None:
    """None: the caller owns the key and runs the command. Otherwise the stored answer."""
    check_key(key)
    params = {"caller": caller, "key": key, "fingerprint": fingerprint, "now": now}
    (inserted,) = run_together(session, [(_CLAIM, params)])
    if inserted.fetchone() is not None:
        return None
    row = session.get(IdempotencyKey, (caller, key), with_for_update=True)
    if row is None:  # released by the first request, which failed, a moment ago
        raise RequestInProgress("a request with this Idempotency-Key just ended; retry", key=key)
    if row.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request", key=key)
    if row.response_status is not None:
        return StoredResponse(row.response_status, row.response_body)
    if row.created_at > now - STALE_AFTER:
        raise RequestInProgress("a request with this Idempotency-Key is still running", key=key)
    row.created_at = now  # taken over from a request that died
    return None


def complete(session: Session, *, caller: str, key: str, status: int, body: dict) -> None:
    run_together(session, [complete_statement(caller=caller, key=key, status=status, body=body)])


def release(session: Session, *, caller: str, key: str) -> None:
    """Forget an unanswered claim, so that a retry runs the command again."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.caller == caller,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
        )
    )
