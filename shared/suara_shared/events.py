"""The event contracts that travel between Suara's services over Kafka."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a fresh random identifier (hex UUID4)."""
    return uuid.uuid4().hex


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    X = "x"
    WEB = "web"


class MessageKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    COMMENT = "comment"
    MENTION = "mention"
    POSTBACK = "postback"
    UNSUPPORTED = "unsupported"


class DeliveryState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


#: A status never moves backwards: read beats delivered beats sent beats queued. Failed is final too.
DELIVERY_RANK: dict[DeliveryState, int] = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENT: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.READ: 3,
    DeliveryState.FAILED: 4,
}


class Event(BaseModel):
    """Base of every event: versioned, strict about unknown versions, tolerant of added fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = 1


class Sender(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel_user_id: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(default=None, max_length=256)
    phone: str | None = Field(default=None, description="E.164, normalized")
    email: str | None = Field(default=None, max_length=320)


def link_media_id(url: str) -> str:
    """The id of a file a platform gives only as a link (Messenger and Instagram: an expiring CDN link): a digest
    of the link, the same each time the message is delivered."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: MessageKind
    #: The platform's id of the file (WhatsApp), or `link_media_id` of its `url` (Messenger, Instagram).
    media_id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    size: int | None = None


class Location(BaseModel):
    model_config = ConfigDict(frozen=True)

    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    kecamatan: str | None = None
    desa: str | None = None


class ReplyContext(BaseModel):
    """Where a message sits on the platform: what it answers, which comment or post it belongs to."""

    model_config = ConfigDict(frozen=True)

    in_reply_to: str | None = None
    comment_id: str | None = None
    post_id: str | None = None
    parent_id: str | None = None


class InboundMessage(Event):
    """A citizen's message, normalized from any channel."""

    event_id: str = Field(default_factory=new_id)
    channel: Channel
    platform_message_id: str = Field(min_length=1, max_length=512)
    conversation_key: str = Field(min_length=1, max_length=512, description="thread key within the channel")
    sender: Sender
    kind: MessageKind = MessageKind.TEXT
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    reply_context: ReplyContext | None = None
    received_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict, description="channel extras, e.g. web form flags")
    raw: dict[str, Any] | None = None

    @property
    def dedup_key(self) -> str:
        """The natural key of this message: the same platform message is one message, however often it comes."""
        return f"in:{self.channel}:{self.platform_message_id}"

    @property
    def partition_key(self) -> bytes:
        """Kafka key: one conversation's messages keep their order."""
        return f"{self.channel}:{self.conversation_key}".encode()


class ReplyPurpose(StrEnum):
    ACKNOWLEDGEMENT = "acknowledgement"
    STATUS = "status"
    AGENT_REPLY = "agent_reply"
    RESOLUTION = "resolution"  # the ticket is resolved; asks the citizen for a 1-5 satisfaction score
    SURVEY = "survey"  # thanks for the satisfaction score


class OutboundAction(StrEnum):
    """What the notifier does with an OutboundReply: send it, or only mark the citizen's message read."""

    SEND = "send"
    #: No message leaves: the citizen's message `reply_to` (and every one before it) shows as read on their phone.
    MARK_READ = "mark_read"


class OutboundReply(Event):
    """A message Suara sends to a citizen, on the channel the ticket came from."""

    outbound_id: str = Field(default_factory=new_id)
    ticket_reference: str | None = None
    channel: Channel
    conversation_key: str
    recipient: str = Field(description="the citizen's id on the channel")
    #: Required to send (see `_text_to_send`); a `mark_read` request carries none.
    text: str = ""
    purpose: ReplyPurpose = ReplyPurpose.AGENT_REPLY
    reply_to: str | None = Field(default=None, description="platform id of the message this answers")
    reply_context: ReplyContext | None = None
    created_at: datetime = Field(default_factory=utcnow)
    #: End of the platform's customer-service window (Meta: 24 hours after the citizen's last message), None when
    #: unknown. Past it an adapter sends what the platform still allows (WhatsApp: the approved template).
    window_expires_at: datetime | None = None
    action: OutboundAction = OutboundAction.SEND
    #: Answer a comment privately (Meta's private reply to the commenter) instead of publicly under it.
    private: bool = False

    @model_validator(mode="after")
    def _text_to_send(self) -> OutboundReply:
        if self.action is OutboundAction.SEND and not self.text:
            raise ValueError("text is required to send a reply")
        if self.action is OutboundAction.MARK_READ and not self.reply_to:
            raise ValueError("reply_to names the message to mark read")
        return self

    @property
    def partition_key(self) -> bytes:
        return f"{self.channel}:{self.conversation_key}".encode()


class DeliveryError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    title: str | None = None
    detail: str | None = None


class DeliveryStatus(Event):
    """What became of an outbound message: sent, delivered, read or failed."""

    channel: Channel
    outbound_id: str | None = None
    platform_message_id: str | None = None
    status: DeliveryState
    error: DeliveryError | None = None
    occurred_at: datetime = Field(default_factory=utcnow)
    #: Ids of the further messages the platform made of one reply (WhatsApp splits text over 4096 characters);
    #: `platform_message_id` is the first. Their statuses count for the reply too.
    more_platform_message_ids: tuple[str, ...] = ()
    #: The approved template the reply went out as, when the customer-service window had closed (WhatsApp).
    template: str | None = None
    #: Messenger's receipts by watermark: `status` holds for every outbound message of `conversation_key` sent at
    #: or before this moment (no message id is named).
    watermark: datetime | None = None
    conversation_key: str | None = None

    @property
    def partition_key(self) -> bytes:
        return (self.outbound_id or self.platform_message_id or self.conversation_key or "").encode()


class TicketEventType(StrEnum):
    CREATED = "created"
    MESSAGE_ADDED = "message_added"
    REPLY_QUEUED = "reply_queued"
    NOTE_ADDED = "note_added"
    UPDATED = "updated"
    DELIVERY_UPDATED = "delivery_updated"
    #: The newest of its answers to the citizen (see `ANSWERS`) failed: they have not got it.
    REPLY_FAILED = "reply_failed"
    DEADLINE_BREACHED = "deadline_breached"
    DISPOSITION = "disposition"  # an agency accepted, declined ("not our authority") or extended the deadline
    MERGED = "merged"
    SURVEY_ANSWERED = "survey_answered"


class TicketEvent(Event):
    """Something that happened to a ticket, for the audit trail and for anyone who listens."""

    event_id: str = Field(default_factory=new_id)
    reference: str
    type: TicketEventType
    actor: str = "system"
    at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def partition_key(self) -> bytes:
        return self.reference.encode()
