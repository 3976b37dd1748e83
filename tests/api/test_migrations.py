"""Alembic owns the schema: migrations build exactly what the models describe."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from api import migrate
from api.db import unit_of_work
from api.models import Base, Event, LedgerEntry, LedgerKind
from api.services.orders import LineRequest
from tests.api.factories import NOW, place


def test_models_and_migrations_agree(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_to_nothing_and_back(create_database):
    url = create_database("ticketflow_migrations")
    migrate.upgrade(url)
    command.downgrade(migrate.alembic_config(url), "base")
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).scalar()
    assert tables == 0
    migrate.upgrade(url)
    engine.dispose()


def test_ledger_is_append_only(engine, make_event):
    event_id, (tier,), buyer = make_event()
    order_id, _, _ = place(engine, buyer, event_id, [LineRequest(tier, 1)])
    with unit_of_work(engine) as session:
        event = session.get(Event, event_id)
        entry = LedgerEntry(
            order_id=order_id,
            event_id=event_id,
            organizer_id=event.organizer_id,
            kind=LedgerKind.SALE,
            amount_minor=2500,
            currency="EUR",
            occurred_at=NOW,
        )
        session.add(entry)
    for statement in ("UPDATE ledger_entries SET amount_minor = 1", "DELETE FROM ledger_entries"):
        with engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(f"{statement} WHERE id = :id"), {"id": entry.id})
