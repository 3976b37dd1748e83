"""`Idempotency-Key`: the first answer to a money-moving POST is stored and replayed.

Keys are per caller. `claim()` inserts the key before the command runs: a concurrent
duplicate waits on that row (same transaction) or sees it in flight (separate ones) and gets
`RequestInProgress`; a later duplicate gets the stored answer; the same key with a different
request body is refused. Only successful answers are stored: a request that failed changed
nothing, so running it again is the right retry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

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


def claim(
    session: Session, *, caller: str, key: str, fingerprint: str, now: datetime
) -> StoredResponse | None:
    """None: the caller owns the key and runs the command. Otherwise the stored answer."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", field="Idempotency-Key"
        )
    inserted = session.scalar(
        insert(IdempotencyKey)
        .values(caller=caller, key=key, request_fingerprint=fingerprint, created_at=now)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if inserted is not None:
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
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
        .values(response_status=status, response_body=body)
    )


def release(session: Session, *, caller: str, key: str) -> None:
    """Forget an unanswered claim, so that a retry runs the command again."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.caller == caller,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
        )
    )
