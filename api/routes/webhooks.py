"""The payment processor's webhooks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, NowDep, ProviderDep
from api.schemas.common import ErrorResponse
from api.services import webhooks

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("/stripe", responses={400: {"model": ErrorResponse}})
async def stripe_webhook(
    request: Request, engine: EngineDep, provider: ProviderDep, now: NowDep
) -> dict:
    """Signed by the processor (`Stripe-Signature`); a bad or stale signature gets 400 and
    changes nothing. Replays are answered 200 and change nothing."""
    payload = await request.body()
    outcome = await run_in_threadpool(
        webhooks.handle, engine, provider, payload, dict(request.headers), now=now
    )
    return {"received": True, "outcome": outcome}
