"""A real API server (uvicorn in a thread) wired to the test database and the embedded
payment processor, whose webhooks reach it over HTTP; plus small client helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import uvicorn
from sqlalchemy import Engine

from api import deps
from api.db import unit_of_work
from api.main import create_app
from api.models import Role, User
from api.payments.stripe_provider import StripeProvider
from api.security import hash_password
from ticketflow.ports import free_port
from ticketflow.settings import LOCALHOST, Settings

PASSWORD = "correct horse battery"
_PASSWORD_HASH = hash_password(PASSWORD)  # hashing is slow on purpose: do it once


@dataclass
class Clock:
    """The API's notion of now; tests move it to expire holds."""

    offset_seconds: float = 0.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset_seconds, UTC)


@dataclass
class LiveApi:
    url: str
    settings: Settings
    engine: Engine
    clock: Clock
    provider: StripeProvider
    _emails: list[int] = field(default_factory=lambda: [0])

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def user(self, role: Role = Role.ATTENDEE, name: str = "user") -> tuple[int, httpx.Client]:
        """A new user with `role`, signed in: (user id, a client sending their token)."""
        self._emails[0] += 1
        email = f"{name}{self._emails[0]}-{time.monotonic_ns()}@example.com"
        with unit_of_work(self.engine) as session:
            user = User(email=email, password_hash=_PASSWORD_HASH, full_name=name, role=role)
            session.add(user)
            session.flush()
            user_id = user.id
        with self.client() as anonymous:
            response = anonymous.post("/auth/login", json={"email": email, "password": PASSWORD})
        response.raise_for_status()
        return user_id, self.client(response.json()["access_token"])


@contextmanager
def serve(settings: Settings, engine: Engine, webhook_secret: str) -> Iterator[LiveApi]:
    clock = Clock()
    provider = StripeProvider(
        settings.effective_stripe_api_key, settings.stripe_api_base, webhook_secret
    )
    app = create_app()
    app.dependency_overrides[deps.engine] = lambda: engine
    app.dependency_overrides[deps.settings] = lambda: settings
    app.dependency_overrides[deps.current_time] = clock
    app.dependency_overrides[deps.payment_provider] = lambda: provider
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOCALHOST, port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test API server did not start")
        time.sleep(0.02)
    try:
        yield LiveApi(f"http://{LOCALHOST}:{port}", settings, engine, clock, provider)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    """Poll until `predicate()` is truthy (webhooks arrive about a second after the event)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
