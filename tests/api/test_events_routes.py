"""The public catalog over HTTP, and the error shape every route shares."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.db import unit_of_work
from api.main import create_app
from api.models import Event, Venue
from api.services.orders import LineRequest
from tests.api.factories import NOW, place


@pytest.fixture
def client(engine):
    app = create_app()
    app.dependency_overrides[deps.engine] = lambda: engine
    app.dependency_overrides[deps.current_time] = lambda: NOW
    with TestClient(app) as test_client:
        yield test_client


def test_ready_when_the_database_answers(client):
    assert client.get("/ready").json() == {"status": "ok", "database": "up"}


def test_event_detail_shows_what_is_left(client, engine, make_event):
    event_id, (tier,), buyer = make_event(capacities=[10], price_minor=4200)
    place(engine, buyer, event_id, [LineRequest(tier, 4)])
    body = client.get(f"/events/{event_id}").json()
    assert body["min_price_minor"] == 4200 and body["currency"] == "EUR"
    assert body["ticket_types"] == [
        {
            "id": tier,
            "name": "Tier 0",
            "price_minor": 4200,
            "currency": "EUR",
            "max_per_order": 10,
            "available": 6,
        }
    ]


def test_browse_filters_by_text_city_and_price(client, engine, make_event):
    event_id, _, _ = make_event(price_minor=1500)
    with unit_of_work(engine) as session:
        event = session.get(Event, event_id)
        venue = Venue(organizer_id=event.organizer_id, name="Hall", city="Lisbon", country="PT")
        session.add(venue)
        session.flush()
        event.venue_id = venue.id
        event.title = "Fado under the stars"
    found = client.get("/events", params={"q": "fado", "city": "lisbon", "max_price_minor": 1500})
    assert [e["id"] for e in found.json()["items"]] == [event_id]
    assert client.get("/events", params={"q": "fado", "min_price_minor": 1501}).json()["total"] == 0


def test_errors_share_one_machine_readable_shape(client):
    missing = client.get("/events/999999")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "event not found", "details": {}}
    }
    bad = client.get("/events", params={"size": 0, "page": "x"})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_input"
    assert {tuple(f["location"]) for f in error["details"]["fields"]} == {
        ("query", "size"),
        ("query", "page"),
    }
