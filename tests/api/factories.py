"""Fixed points for API tests."""

from __future__ import annotations

from datetime import UTC, datetime

# The tests' "now": services take the time as an argument, so tests never depend on the clock.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
