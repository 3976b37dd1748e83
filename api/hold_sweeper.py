"""Marks lapsed holds as expired in the background, while the API runs.

Lapsed holds stop counting at `expires_at` whether or not this runs (availability reads the
time); the sweeper makes the state visible to buyers, organizers and the warehouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.db import unit_of_work
from api.services.orders import expire_holds

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 30.0


def sweep(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return expire_holds(session, now=datetime.now(UTC))


async def _loop(engine: Engine, interval: float) -> None:
    while True:
        try:
            expired = await run_in_threadpool(sweep, engine)
            if expired:
                log.info("expired lapsed holds", extra={"orders": expired})
        except Exception:
            log.exception("the hold sweeper failed; it will try again")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(
    engine_factory: Callable[[], Engine], interval: float = INTERVAL_SECONDS
) -> AsyncIterator[None]:
    task = asyncio.create_task(_loop(engine_factory(), interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
