"""Per-client rate limits over HTTP, and the response headers domain errors carry."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from api import deps, ratelimit
from api.errors import Busy, NotFound
from api.main import create_app
from api.ratelimit import ClientIp
from ticketflow.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch):
    settings = get_settings()
    monkeypatch.setattr(settings, "rate_limit_login", "3/minute")
    monkeypatch.setattr(settings, "rate_limit_checkout", "2 per minute")
    ratelimit.reset()
    yield
    ratelimit.reset()


@pytest.fixture
def app(engine):
    """The real app plus stand-ins for the login and checkout routes' first line."""
    app = create_app()
    app.dependency_overrides[deps.engine] = lambda: engine

    @app.post("/_test/login")
    def login(ip: ClientIp, email: str) -> dict:
        ratelimit.check("login", f"{ip}:{email.lower()}")
        return {"ok": True}

    @app.post("/_test/checkout")
    def checkout(user_id: int) -> dict:
        ratelimit.check("checkout", str(user_id))
        return {"ok": True}

    @app.get("/_test/busy")
    def busy() -> dict:
        raise Busy("the tickets are being sold right now")

    @app.get("/_test/missing")
    def missing() -> dict:
        raise NotFound("order not found")

    return app


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


def login(client, email="ana@example.com"):
    return client.post("/_test/login", params={"email": email})


def test_the_request_over_the_limit_gets_429_with_retry_after(client):
    assert [login(client).status_code for _ in range(3)] == [200, 200, 200]
    refused = login(client)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.json() == {
        "error": {
            "code": "rate_limited",
            "message": f"too many requests, try again in {retry_after} seconds",
            "details": {"retry_after": retry_after},
        }
    }
    assert refused.headers["X-Request-ID"]


def test_keys_and_scopes_are_counted_apart(client):
    for _ in range(3):
        login(client)
    assert login(client).status_code == 429
    assert login(client, "bob@example.com").status_code == 200
    # checkout has its own rate (2 per minute) and its own counts
    statuses = [client.post("/_test/checkout", params={"user_id": 1}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.post("/_test/checkout", params={"user_id": 2}).status_code == 200


def test_each_client_address_has_its_own_count(app):
    with TestClient(app, client=("203.0.113.7", 4000)) as first:
        for _ in range(3):
            login(first)
        assert login(first).status_code == 429
    with TestClient(app, client=("198.51.100.9", 4000)) as second:
        assert login(second).status_code == 200


def test_after_retry_after_seconds_the_client_gets_in_again(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_login", "2/second")
    login(client)
    login(client)
    refused = login(client)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert login(client).status_code == 200


def test_reset_forgets_every_count(client):
    for _ in range(4):
        login(client)
    ratelimit.reset()
    assert login(client).status_code == 200


def test_an_unknown_scope_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown rate-limit scope"):
        ratelimit.check("search", "anyone")  # type: ignore[arg-type]


def test_domain_errors_send_their_own_headers(client):
    busy = client.get("/_test/busy")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert busy.json()["error"]["code"] == "busy"
    missing = client.get("/_test/missing")
    assert missing.status_code == 404 and "Retry-After" not in missing.headers
