"""Background chores while the API runs: mark lapsed holds expired, send unsent refunds.

Lapsed holds stop counting at `expires_at` whether or not this runs (availability reads the
time); the sweeper makes the state visible to buyers, organizers and the warehouse. A refund
reserved but never sent (the process died between the two steps) is sent again, with the key
that makes a second send harmless.
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
from api.payments.provider import PaymentProvider
from api.services import refunds
from api.services.orders import SWEEP_BATCH, expire_holds

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 30.0


def sweep(engine: Engine) -> int:
    """Expire every lapsed hold, a batch per transaction (each holds the count rows of its
    orders' ticket types, which payments need at their commit, for one batch only)."""
    now, expired = datetime.now(UTC), 0
    while True:
        with unit_of_work(engine) as session:
            batch = expire_holds(session, now=now)
        expired += batch
        if batch < SWEEP_BATCH:
            return expired


async def _loop(engine: Engine, provider: Callable[[], PaymentProvider], interval: float):
    while True:
        try:
            expired = await run_in_threadpool(sweep, engine)
            if expired:
                log.info("expired lapsed holds", extra={"orders": expired})
            sent = await run_in_threadpool(
                refunds.send_unsent, engine, provider(), now=datetime.now(UTC)
            )
            if sent:
                log.warning("sent refunds a crash had left unsent", extra={"refunds": sent})
        except Exception:
            log.exception("the sweeper failed; it will try again")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(
    engine_factory: Callable[[], Engine],
    provider: Callable[[], PaymentProvider],
    interval: float = INTERVAL_SECONDS,
) -> AsyncIterator[None]:
    task = asyncio.create_task(_loop(engine_factory(), provider, interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
