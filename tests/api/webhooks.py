"""Processor webhooks as the tests send them: events, Stripe's signature, the POST."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from tests.api.conftest import WEBHOOK_SECRET


def stripe_signature(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """`Stripe-Signature` as Stripe computes it: HMAC-SHA256 of "<t>.<payload>"."""
    timestamp = int(time.time()) if at is None else at
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_event(event_id: str, event_type: str, obj: dict) -> bytes:
    """An event's JSON payload, carrying `obj` as its data object."""
    event = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def post_webhook(live_api, payload: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    with live_api.client() as processor:
        return processor.post("/webhooks/stripe", content=payload, headers=headers)
