"""The embedded payment processor: localstripe, patched by `fake_stripe`, on 127.0.0.1."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Sequence

HEALTH_PATH = "/_config/health"  # localstripe lets /_config/* through without an API key
# Fake-only: make Stripe's automatic payouts now (Stripe itself runs them on a schedule).
PAYOUTS_RUN_PATH = "/_config/payouts/run"


def register_webhook(
    api_base: str,
    hook_id: str,
    *,
    url: str,
    secret: str,
    events: Sequence[str] | None = None,
) -> None:
    """Have the embedded processor send `events` (None: every event) to `url`, signed with
    `secret`.

    (Stripe's own equivalent is an endpoint set up in its dashboard or API, with its enabled
    events.) Registering the same id again replaces it, so every start of the API may call
    this.
    """
    fields = [("url", url), ("secret", secret)]
    fields += [(f"events[{n}]", event) for n, event in enumerate(events or ())]
    form = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"{api_base}/_config/webhooks/{hook_id}", data=form)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
