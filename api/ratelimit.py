"""Per-client rate limits on the abuse-prone actions (login, checkout).

Counts live in this process's memory (moving window, `limits` library): each uvicorn
worker counts on its own, so with N workers a client can get up to N times the configured
rate through. That is enough to blunt password guessing and checkout floods; an exact
cluster-wide limit would need shared storage (Redis), which `limits` also supports.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Annotated, Literal

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from api.errors import DomainError
from ticketflow.settings import get_settings

Scope = Literal["login", "checkout"]
_RATE_SETTING = {"login": "rate_limit_login", "checkout": "rate_limit_checkout"}

_storage = MemoryStorage()
_limiter = MovingWindowRateLimiter(_storage)


class RateLimited(DomainError):
    """Too many attempts; `details.retry_after` and `Retry-After` say when one more fits."""

    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int):
        super().__init__(
            f"too many requests, try again in {retry_after} seconds", retry_after=retry_after
        )
        self.headers = {"Retry-After": str(retry_after)}


@lru_cache(maxsize=16)
def _item(rate: str) -> RateLimitItem:
    return parse(rate)


def check(scope: Scope, key: str) -> None:
    """Count one attempt by `key` (e.g. `f"{ip}:{email.lower()}"`, a user id) under `scope`'s
    rate from the settings; raise `RateLimited` when it is over."""
    if scope not in _RATE_SETTING:
        raise ValueError(f"unknown rate-limit scope {scope!r}")
    item = _item(getattr(get_settings(), _RATE_SETTING[scope]))
    if _limiter.hit(item, scope, key):
        return
    reset_at, _ = _limiter.get_window_stats(item, scope, key)
    raise RateLimited(max(1, math.ceil(reset_at - time.time())))


def reset() -> None:
    """Forget every count (tests)."""
    _storage.reset()


def client_ip(request: Request) -> str:
    """The caller's address. Behind a proxy uvicorn already rewrote it from
    `X-Forwarded-For` if (and only if) the proxy is trusted, so the header is not read here."""
    return request.client.host if request.client else "unknown"


ClientIp = Annotated[str, Depends(client_ip)]
