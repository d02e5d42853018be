"""Turning an accepted web complaint into an InboundMessage and handing it to the broker."""

from __future__ import annotations

import logging

from suara_shared import topics
from suara_shared.events import Channel, InboundMessage, Location, MessageKind, Sender, new_id
from suara_shared.http import ApiError
from suara_shared.kafka import BrokerUnavailable, Publisher

from .models import WebComplaintCreate

log = logging.getLogger(__name__)

BROKER_UNAVAILABLE_MESSAGE = "the complaint could not be recorded right now; nothing was kept, please try again"


class ComplaintNotAccepted(ApiError):
    """The broker did not acknowledge the complaint: the citizen must be told to try again."""

    def __init__(self) -> None:
        super().__init__(503, "broker_unavailable", BROKER_UNAVAILABLE_MESSAGE)


def to_inbound(complaint: WebComplaintCreate, *, submission_id: str) -> InboundMessage:
    """The complaint as the channel-neutral event; each web complaint is its own thread."""
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
        location=location,
        metadata={
            "kecamatan": complaint.kecamatan,
            "desa": complaint.desa,
            "anonymous": complaint.anonymous,
            "confidential": complaint.confidential,
            "submission_id": submission_id,
        },
    )


async def submit_complaint(*, publisher: Publisher, complaint: WebComplaintCreate) -> str:
    """Publish the complaint and return its submission id once the broker acknowledged it."""
    submission_id = new_id()
    event = to_inbound(complaint, submission_id=submission_id)
    try:
        await publisher.publish(topics.INBOUND, event, key=event.partition_key)
    except BrokerUnavailable as exc:
        log.warning("web complaint not acknowledged by the broker", extra={"error": repr(exc)})
        raise ComplaintNotAccepted() from exc
    log.info(
        "web complaint accepted",
        extra={"submission_id": submission_id, "event_id": event.event_id, "anonymous": complaint.anonymous},
    )
    return submission_id
