"""A migrated database of its own for the API tests, on the session's embedded PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, create_engine

from api import migrate, ratelimit
from api.db import unit_of_work
from api.models import Event, EventStatus, Organizer, Role, TicketType, User
from tests.api.factories import NOW
from tests.api.live import serve
from ticketflow.settings import Settings

WEBHOOK_SECRET = "whsec_api_tests"


def _fresh_database(settings: Settings, name: str) -> str:
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = settings.sqlalchemy_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def create_database(postgres: Settings):
    """`create_database(name)` -> the SQLAlchemy URL of a new, empty database."""
    return lambda name: _fresh_database(postgres, name)


@pytest.fixture(scope="session")
def db_url(postgres: Settings) -> str:
    url = _fresh_database(postgres, "ticketflow_test")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url, pool_size=60, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def make_event(engine: Engine):
    """Create a published event with ticket types: `make_event(capacities=[100])`."""

    def make(capacities=(100,), price_minor=2500, max_per_order=10, status=EventStatus.PUBLISHED):
        with unit_of_work(engine) as session:
            organizer = Organizer(name="Night Owls")
            buyer = User(
                email=f"buyer-{uuid.uuid4().hex}@example.com",
                password_hash="x",
                full_name="Buyer",
                role=Role.ATTENDEE,
            )
            session.add_all([organizer, buyer])
            session.flush()
            event = Event(
                organizer_id=organizer.id,
                title="Concert",
                category="music",
                status=status,
                timezone="Europe/Berlin",
                starts_at=NOW + timedelta(days=30),
                ends_at=NOW + timedelta(days=30, hours=3),
                sales_start_at=NOW - timedelta(days=1),
                sales_end_at=NOW + timedelta(days=29),
            )
            session.add(event)
            session.flush()
            types = [
                TicketType(
                    event_id=event.id,
                    name=f"Tier {i}",
                    price_minor=price_minor,
                    currency="EUR",
                    capacity=capacity,
                    max_per_order=max_per_order,
                )
                for i, capacity in enumerate(capacities)
            ]
            session.add_all(types)
            session.flush()
            return event.id, [t.id for t in types], buyer.id

    return make


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with empty rate-limit windows."""
    ratelimit.reset()


@pytest.fixture(scope="session")
def live_api(payments: Settings, postgres: Settings, tmp_path_factory):
    """The API served over HTTP on a free port, paying through the embedded processor, whose
    webhooks (every event) are sent to it.

    Its database is its own: the API's hold sweeper runs on the real clock and would expire
    the holds that service tests place at their fixed, past `NOW` in the `engine` database.
    Tests read what the API wrote through `live_api.engine`."""
    db_url = _fresh_database(postgres, "ticketflow_live")
    migrate.upgrade(db_url)
    engine = create_engine(db_url, pool_size=20, max_overflow=0)
    settings = payments.model_copy(
        update={
            "database_url": db_url.replace("postgresql+psycopg://", "postgresql://"),
            "data_dir": tmp_path_factory.mktemp("api-data"),
            "jwt_secret": "test-secret-" + "x" * 32,
            "stripe_webhook_secret": WEBHOOK_SECRET,
        }
    )
    with serve(settings, engine, WEBHOOK_SECRET) as api:
        hook = {"url": f"{api.url}/webhooks/stripe", "secret": WEBHOOK_SECRET}  # all events
        base = settings.stripe_api_base
        httpx.post(f"{base}/_config/webhooks/api-tests", data=hook).raise_for_status()
        yield api
        httpx.delete(f"{base}/_config/webhooks/api-tests")
    engine.dispose()
