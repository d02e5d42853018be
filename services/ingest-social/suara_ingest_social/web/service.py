"""Turning an accepted web complaint into an InboundMessage and handing it to the broker."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from suara_shared import db, topics
from suara_shared.events import Attachment, Channel, InboundMessage, Location, MessageKind, Sender, new_id
from suara_shared.http import ApiError
from suara_shared.kafka import BrokerUnavailable, Publisher

from . import photos as form_photos
from .models import WebComplaintCreate

log = logging.getLogger(__name__)

BROKER_UNAVAILABLE_MESSAGE = "the complaint could not be recorded right now; nothing was kept, please try again"


class ComplaintNotAccepted(ApiError):
    """The broker did not acknowledge the complaint: the citizen must be told to try again."""

    def __init__(self) -> None:
        super().__init__(503, "broker_unavailable", BROKER_UNAVAILABLE_MESSAGE)


def to_inbound(
    complaint: WebComplaintCreate, *, submission_id: str, attachments: tuple[Attachment, ...] = ()
) -> InboundMessage:
    """The complaint as the channel-neutral event, with its photos; each web complaint is its own thread."""
    location = None
    if complaint.kecamatan or complaint.desa:
        location = Location(kecamatan=complaint.kecamatan, desa=complaint.desa)
    return InboundMessage(
        channel=Channel.WEB,
        platform_message_id=submission_id,
        conversation_key=submission_id,
        sender=Sender(
            channel_user_id=submission_id,
            display_name=complaint.name,
            phone=complaint.phone,
            email=complaint.email,
        ),
        kind=MessageKind.TEXT,
        text=complaint.text,
        attachments=attachments,
        location=location,
        metadata={
            "kecamatan": complaint.kecamatan,
            "desa": complaint.desa,
            "anonymous": complaint.anonymous,
            "confidential": complaint.confidential,
            "submission_id": submission_id,
        },
    )


#: What an idempotency key (the API's `Idempotency-Key` header, the form's hidden token) may look like.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{8,128}")


def submission_id_for(
    complaint: WebComplaintCreate, idempotency_key: str | None, photo_digests: Sequence[str] = ()
) -> str:
    """A new submission id; with a key, the same id for the same complaint sent again under it (a retry after a
    503 whose first try did reach the broker becomes the same message, which ticketing keeps once). The content
    (its photos too) is part of it, so two different complaints under one key are never taken for one."""
    if idempotency_key is None:
        return new_id()
    content = complaint.model_dump_json().encode() + "".join(f"\x1f{d}" for d in photo_digests).encode()
    return hashlib.sha256(b"web-submission\x1f" + idempotency_key.encode() + b"\x1f" + content).hexdigest()[:32]


async def submit_complaint(
    *,
    publisher: Publisher,
    complaint: WebComplaintCreate,
    idempotency_key: str | None = None,
    photos: Sequence[form_photos.Photo] = (),
    database: db.Database | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Keep the complaint's photos (in `database`), then publish it, with `metadata` added to the event's (a kiosk's
    place and officer); return its submission id once the broker acknowledged it. Raises PhotosNotKept or
    ComplaintNotAccepted."""
    submission_id = submission_id_for(complaint, idempotency_key, form_photos.digests(photos))
    attachments: tuple[Attachment, ...] = ()
    if photos:
        if database is None:
            raise form_photos.PhotosNotKept("no database to keep photos in")
        attachments = await form_photos.keep(database, submission_id, photos)
    event = to_inbound(complaint, submission_id=submission_id, attachments=attachments)
    if metadata:
        event = event.model_copy(update={"metadata": {**event.metadata, **metadata}})
    try:
        await publisher.publish(topics.INBOUND, event, key=event.partition_key)
    except BrokerUnavailable as exc:
        log.warning("web complaint not acknowledged by the broker", extra={"error": repr(exc)})
        raise ComplaintNotAccepted() from exc
    log.info(
        "web complaint accepted",
        extra={
            "submission_id": submission_id,
            "event_id": event.event_id,
            "anonymous": complaint.anonymous,
            "photos": len(attachments),
            "source": (metadata or {}).get("source", "web"),
        },
    )
    return submission_id
