"""Event images: checked for size and real image type, stored on disk under the media folder.

The file's type is what Pillow finds in its bytes, never the name or the client's
Content-Type. Files are written aside and renamed into place, then recorded; a failed
transaction leaves at most an orphan file, never a row without its file.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import DomainError, InvalidInput, NotFound
from api.models import Event, EventMedia, EventStatus
from api.services.access import Caller, managed_event

# Pillow's format name -> (content type, file extension)
ALLOWED = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
MAX_PIXELS = 40_000_000  # refuse decompression bombs


class TooLarge(DomainError):
    status = 413
    code = "file_too_large"


def _image_format(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InvalidInput("the image has too many pixels", field="file")
            image.verify()
            found = image.format
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInput("the file is not an image we accept", field="file") from exc
    if found not in ALLOWED:
        raise InvalidInput(
            "images must be JPEG, PNG or WebP", field="file", found=found, allowed=list(ALLOWED)
        )
    return found


def add_image(
    session: Session, caller: Caller, event_id: int, data: bytes, *, root: Path, max_bytes: int
) -> EventMedia:
    managed_event(session, caller, event_id)
    if len(data) > max_bytes:
        raise TooLarge(f"images may be at most {max_bytes} bytes", max_bytes=max_bytes)
    if not data:
        raise InvalidInput("the file is empty", field="file")
    content_type, extension = ALLOWED[_image_format(data)]
    relative = Path(str(event_id)) / f"{uuid.uuid4().hex}.{extension}"
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    draft = target.with_suffix(".part")
    draft.write_bytes(data)
    os.replace(draft, target)
    media = EventMedia(
        event_id=event_id, path=str(relative), content_type=content_type, size_bytes=len(data)
    )
    session.add(media)
    session.flush()
    return media


def public_image(session: Session, event_id: int, media_id: int, *, root: Path):
    """(path on disk, content type) of an image of a published event."""
    row = session.execute(
        select(EventMedia, Event.status)
        .join(Event, Event.id == EventMedia.event_id)
        .where(EventMedia.id == media_id, EventMedia.event_id == event_id)
    ).first()
    if row is None or row.status != EventStatus.PUBLISHED:
        raise NotFound("image not found")
    return root / row.EventMedia.path, row.EventMedia.content_type


def images(session: Session, event_id: int) -> list[EventMedia]:
    return list(
        session.scalars(
            select(EventMedia).where(EventMedia.event_id == event_id).order_by(EventMedia.id)
        )
    )
