"""The source's schema moves on: added columns, new tables, a migration of the core schema, and
a change the relay must refuse (it stops, naming the table and column)."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from api import migrate
from pipelines.cdc.tables import SchemaChangeError
from tests.pipelines.conftest import CdcCase, drain
from tests.pipelines.rows import assert_same_rows


def _columns(cdc: CdcCase, table: str) -> dict[str, str]:
    return dict(
        cdc.ch.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String} AND name NOT LIKE '\\\\_peerdb%'",
            parameters={"db": cdc.name, "t": table},
        ).result_rows
    )


def test_added_columns_with_and_without_defaults_and_a_relaxed_constraint(cdc: CdcCase):
    cdc.sql("CREATE TABLE venues (id bigint PRIMARY KEY, name text NOT NULL, seats int NOT NULL)")
    cdc.sql("INSERT INTO venues SELECT n, 'venue ' || n, n FROM generate_series(1, 10) AS n")
    relay = cdc.relay()
    relay.start()
    cdc.sql("INSERT INTO venues VALUES (11, 'before', 11)")
    cdc.sql("ALTER TABLE venues ADD COLUMN city text")
    cdc.sql("INSERT INTO venues VALUES (12, 'after', 12, 'Berlin')")
    cdc.sql("UPDATE venues SET city = 'Leipzig' WHERE id = 1")
    # Constant defaults: PostgreSQL shows them in older rows without writing those rows.
    cdc.sql(
        "ALTER TABLE venues ADD COLUMN country text NOT NULL DEFAULT E'D''E\\tx', "
        "ADD COLUMN priority int DEFAULT 5, ADD COLUMN fee numeric(6, 2) DEFAULT 1.5, "
        "ADD COLUMN opened_at timestamptz NOT NULL DEFAULT '2026-01-01 10:00+02', "
        "ADD COLUMN verified bool NOT NULL DEFAULT false, ADD COLUMN empty text DEFAULT ''"
    )
    cdc.sql("INSERT INTO venues (id, name, seats, priority) VALUES (14, 'defaults', 1, NULL)")
    cdc.sql("ALTER TABLE venues ALTER COLUMN seats DROP NOT NULL")
    cdc.sql("INSERT INTO venues VALUES (13, 'no seats yet', NULL, NULL)")
    with psycopg.connect(cdc.dsn) as conn:  # a change before and after, in one transaction
        conn.execute("UPDATE venues SET name = 'renamed' WHERE id IN (2, 4)")
        conn.execute(
            "ALTER TABLE venues ADD COLUMN capacity_note varchar(40), ADD COLUMN lat float8, "
            "ADD COLUMN level int2 NOT NULL DEFAULT 3"
        )
        conn.execute("UPDATE venues SET capacity_note = 'standing', lat = 51.3 WHERE id <= 3")
        conn.commit()
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"venues": 14}
    assert _columns(cdc, "venues") == {
        "id": "Int64",
        "name": "String",
        "seats": "Nullable(Int32)",
        "city": "Nullable(String)",
        "country": "String",
        "priority": "Nullable(Int32)",
        "fee": "Nullable(Decimal(6, 2))",
        "opened_at": "DateTime64(6, 'UTC')",
        "verified": "Bool",
        "empty": "Nullable(String)",
        "capacity_note": "Nullable(String)",
        "lat": "Nullable(Float64)",
        "level": "Int16",
    }


def test_a_column_added_by_an_alembic_migration_of_the_core_schema(cdc: CdcCase):
    url = "postgresql+psycopg://" + cdc.dsn.removeprefix("postgresql://")
    migrate.upgrade(url)
    cdc.sql(
        "INSERT INTO organizers (name) VALUES ('Night Owls'), ('Day Larks');"
        "INSERT INTO users (email, password_hash, full_name, role, is_active) "
        "VALUES ('a@example.com', 'x', 'A', 'attendee', true)"
    )
    relay = cdc.relay()
    relay.start()
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:  # what a revision's upgrade() does, in its transaction
        op = Operations(MigrationContext.configure(conn))
        op.add_column("organizers", sa.Column("vat_id", sa.String(32), nullable=True))
        op.add_column(  # no row of users changes after this: nothing in the stream says so
            "users",
            sa.Column("marketing_opt_in", sa.Boolean(), nullable=False, server_default="true"),
        )
        conn.execute(sa.text("UPDATE organizers SET vat_id = 'DE123' WHERE name = 'Night Owls'"))
    engine.dispose()
    cdc.sql("INSERT INTO organizers (name, vat_id) VALUES ('Owls II', 'DE456')")
    drain(relay)

    counts = assert_same_rows(cdc.dsn, cdc.ch, cdc.name)
    assert counts["organizers"] == 3 and counts["users"] == 1
    assert _columns(cdc, "organizers")["vat_id"] == "Nullable(String)"
    assert _columns(cdc, "users")["marketing_opt_in"] == "Bool"


def test_a_table_created_after_the_relay_started(cdc: CdcCase):
    cdc.sql("CREATE TABLE first (id int PRIMARY KEY)")
    relay = cdc.relay()
    relay.start()
    cdc.sql("INSERT INTO first VALUES (1)")
    drain(relay)
    cdc.sql(
        "CREATE TABLE waitlist (event_id bigint, email text, joined_at timestamptz NOT NULL "
        "DEFAULT now(), PRIMARY KEY (event_id, email))"
    )
    cdc.sql("INSERT INTO waitlist (event_id, email) VALUES (1, 'a@example.com'), (1, 'b@x.org')")
    cdc.sql("DELETE FROM waitlist WHERE email = 'b@x.org'")
    drain(relay)

    assert assert_same_rows(cdc.dsn, cdc.ch, cdc.name) == {"first": 1, "waitlist": 1}


def test_an_incompatible_type_change_stops_the_relay_naming_table_and_column(cdc: CdcCase):
    cdc.sql("CREATE TABLE tickets (id bigint PRIMARY KEY, seat int, price_minor int NOT NULL)")
    cdc.sql("INSERT INTO tickets VALUES (1, 10, 100)")
    relay = cdc.relay()
    relay.start()
    cdc.sql("INSERT INTO tickets VALUES (2, 11, 100)")
    drain(relay)
    cdc.sql("ALTER TABLE tickets ALTER COLUMN seat TYPE text")
    cdc.sql("INSERT INTO tickets VALUES (3, 'A-12', 100)")
    position = relay.confirmed_lsn()

    with pytest.raises(SchemaChangeError) as stopped:
        drain(relay)
    message = str(stopped.value)
    assert "table tickets, column seat" in message
    assert "Nullable(Int32)" in message and "Nullable(String)" in message
    assert relay.confirmed_lsn() == position  # nothing skipped: it stops in front of it
    assert cdc.count("tickets") == 2
    relay.close()

    done = cdc.run_relay_command("sync")  # the command line says the same and exits 3
    assert done.returncode == 3, done.stderr
    assert "table tickets, column seat" in done.stderr
    assert "its type changed" in done.stderr
