"""Building a sellable event through the organizer API, as an organizer would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx


def iso(moment: datetime) -> str:
    return moment.isoformat()


def publish_event(
    organizer: httpx.Client,
    *,
    tiers: dict[str, tuple[int, int]],  # name -> (price_minor, capacity)
    max_per_order: int = 10,
    title: str = "Harbour Lights Festival",
) -> tuple[int, dict[str, int]]:
    """Organizer account, venue, draft event, ticket types, publish. (event id, tier ids)."""
    if not organizer.get("/organizers").json():
        organizer.post("/organizers", json={"name": "Night Owls"}).raise_for_status()
    venue = organizer.post(
        "/organizer/venues", json={"name": "Pier 9", "city": "Hamburg", "country": "DE"}
    )
    venue.raise_for_status()
    now = datetime.now(UTC)
    event = organizer.post(
        "/organizer/events",
        json={
            "venue_id": venue.json()["id"],
            "title": title,
            "category": "music",
            "timezone": "Europe/Berlin",
            "starts_at": iso(now + timedelta(days=30)),
            "ends_at": iso(now + timedelta(days=30, hours=5)),
            "sales_start_at": iso(now - timedelta(hours=1)),
            "sales_end_at": iso(now + timedelta(days=29)),
        },
    )
    event.raise_for_status()
    event_id = event.json()["id"]
    tier_ids = {}
    for name, (price, capacity) in tiers.items():
        created = organizer.post(
            f"/organizer/events/{event_id}/ticket-types",
            json={
                "name": name,
                "price_minor": price,
                "currency": "EUR",
                "capacity": capacity,
                "max_per_order": max_per_order,
            },
        )
        created.raise_for_status()
        tier_ids[name] = created.json()["id"]
    organizer.post(f"/organizer/events/{event_id}/publish").raise_for_status()
    return event_id, tier_ids
