"""Row locks for money commands, always taken in one order: the order row first, then the
payment or refund rows under it. (Inventory is serialised separately, by advisory locks.)

`FOR NO KEY UPDATE`, not `FOR UPDATE`: the foreign-key checks of inserts that reference a
locked row (a ledger entry naming a payment, an order naming an event) take `KEY SHARE`,
which `FOR UPDATE` would block, and two commands doing that in opposite orders deadlock.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api.models import Order


def locked(query: Select) -> Select:
    """`query` locking its rows, and refreshing any copy the session already holds."""
    return query.with_for_update(key_share=True).execution_options(populate_existing=True)


def lock_order(session: Session, order_id: int) -> Order | None:
    return session.scalar(locked(select(Order).where(Order.id == order_id)))
