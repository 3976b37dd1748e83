"""Fixed points for API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from api.db import unit_of_work
from api.models import OrderStatus
from api.services.orders import LineRequest, place_order

# The tests' "now": services take the time as an argument, so tests never depend on the clock.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=15)


def place(
    engine: Engine,
    buyer: int,
    event_id: int,
    lines: list[LineRequest],
    now: datetime = NOW,
    promo: str | None = None,
) -> tuple[int, int, OrderStatus]:
    """Place an order in a transaction of its own; return (id, total_minor, status)."""
    with unit_of_work(engine) as session:
        order = place_order(
            session,
            user_id=buyer,
            event_id=event_id,
            lines=lines,
            now=now,
            hold=HOLD,
            promo_code=promo,
        )
        return order.id, order.total_minor, order.status
