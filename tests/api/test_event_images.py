"""Event images: real image bytes only, within the size limit, shown once the event is public."""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import func, select

from api.db import unit_of_work
from api.models import EventMedia
from tests.api.organizing import publish_event


def _png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _images(api, event_id: int) -> int:
    with unit_of_work(api.engine) as session:
        return session.scalar(select(func.count()).where(EventMedia.event_id == event_id))


def test_an_uploaded_image_is_served_on_the_public_event(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, _ = publish_event(organizer, tiers={"GA": (1_000, 10)})
    data = _png()
    # The name and the declared type lie; the bytes decide.
    upload = organizer.post(
        f"/organizer/events/{event_id}/media",
        files={"file": ("poster.gif", data, "application/octet-stream")},
    )
    assert upload.status_code == 201, upload.text
    body = upload.json()
    assert (body["content_type"], body["size_bytes"]) == ("image/png", len(data))
    with live_api.client() as anonymous:
        served = anonymous.get(body["url"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png" and served.content == data


def test_files_that_are_not_images_or_too_large_are_refused_and_nothing_is_stored(live_api):
    _, organizer = live_api.user(name="organizer")
    event_id, _ = publish_event(organizer, tiers={"GA": (1_000, 10)})

    text = organizer.post(
        f"/organizer/events/{event_id}/media",
        files={"file": ("poster.png", b"<?php echo 'hi'; ?>", "image/png")},
    )
    assert text.status_code == 422 and text.json()["error"]["code"] == "invalid_input"

    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    wrong_kind = organizer.post(
        f"/organizer/events/{event_id}/media", files={"file": ("a.gif", gif.getvalue())}
    )
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["error"]["details"]["found"] == "GIF"

    huge = b"\x89PNG\r\n\x1a\n" + b"\0" * live_api.settings.media_max_bytes
    too_large = organizer.post(
        f"/organizer/events/{event_id}/media", files={"file": ("big.png", huge)}
    )
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "file_too_large"
    assert _images(live_api, event_id) == 0
    assert not any(live_api.settings.media_path.glob(f"{event_id}/*"))


def test_images_of_a_draft_event_are_not_public(live_api):
    _, organizer = live_api.user(name="organizer")
    organizer.post("/organizers", json={"name": "Quiet Ones"}).raise_for_status()
    draft = organizer.post(
        "/organizer/events",
        json={
            "title": "Unannounced",
            "category": "theatre",
            "timezone": "Europe/London",
            "starts_at": "2027-03-01T19:00:00Z",
            "ends_at": "2027-03-01T22:00:00Z",
            "sales_start_at": "2027-01-01T00:00:00Z",
            "sales_end_at": "2027-03-01T18:00:00Z",
        },
    ).json()
    upload = organizer.post(
        f"/organizer/events/{draft['id']}/media", files={"file": ("p.png", _png())}
    )
    assert upload.status_code == 201
    with live_api.client() as anonymous:
        assert anonymous.get(upload.json()["url"]).status_code == 404
