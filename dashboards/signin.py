"""Signing in to the dashboards through the API, and who may see which page.

The dashboards keep no accounts of their own: an e-mail and password go to `POST /auth/login`
like any client's, and the token it returns asks `GET /auth/me` who the caller is. The token is
asked again on every rerun, so a disabled account or a changed role takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ticketflow.settings import LOCALHOST, Settings

# Roles that may see the finance page (the reconciliation and its exports).
FINANCE_ROLES = frozenset({"finance", "admin"})
TIMEOUT_S = 10.0


class SignInError(Exception):
    """Signing in failed; the message is for the person signing in."""


@dataclass(frozen=True)
class Caller:
    id: int
    email: str
    role: str
    token: str

    @property
    def sees_finance(self) -> bool:
        return self.role in FINANCE_ROLES


def api_url(settings: Settings) -> str:
    """`TICKETFLOW_DASHBOARDS_API_URL`, else the API on this machine."""
    return (settings.dashboards_api_url or f"http://{LOCALHOST}:{settings.api_port}").rstrip("/")


def sign_in(api: str, email: str, password: str) -> Caller:
    """Exchange an e-mail and password for a token and the caller behind it."""
    try:
        response = httpx.post(
            f"{api}/auth/login", json={"email": email, "password": password}, timeout=TIMEOUT_S
        )
    except httpx.HTTPError as exc:
        raise SignInError(f"the TicketFlow API at {api} does not answer ({exc})") from exc
    if response.status_code in (401, 422):  # 422: not even shaped like an e-mail address
        raise SignInError("Wrong e-mail or password.")
    if response.status_code == 429:
        raise SignInError("Too many attempts; wait a minute and try again.")
    if response.status_code != 200:
        raise SignInError(f"The API refused the sign-in (HTTP {response.status_code}).")
    caller = who_is(api, response.json()["access_token"])
    if caller is None:
        raise SignInError("The API did not accept its own token; try again.")
    return caller


def who_is(api: str, token: str) -> Caller | None:
    """The caller a token belongs to, or None once it no longer works (expired, disabled)."""
    try:
        response = httpx.get(
            f"{api}/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S
        )
    except httpx.HTTPError as exc:
        raise SignInError(f"the TicketFlow API at {api} does not answer ({exc})") from exc
    if response.status_code == 401:
        return None
    if response.status_code != 200:
        raise SignInError(f"The API could not say who you are (HTTP {response.status_code}).")
    me = response.json()
    return Caller(id=me["id"], email=me["email"], role=me["role"], token=token)
