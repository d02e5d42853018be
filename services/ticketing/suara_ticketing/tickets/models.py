"""API models of tickets, named by role."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from suara_shared.events import Channel, DeliveryState


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CitizenRead(BaseModel):
    channel_user_id: str
    display_name: str | None = None
    phone: str | None = None
    email: str | None = None


class DeliveryErrorRead(BaseModel):
    code: str
    title: str | None = None
    detail: str | None = None


class MessageRead(BaseModel):
    id: str
    direction: Direction
    kind: str
    text: str | None = None
    channel_message_id: str | None = None
    created_at: datetime
    purpose: str | None = None
    author: str | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    location: dict[str, Any] | None = None
    delivery_status: DeliveryState | None = None
    delivery_error: DeliveryErrorRead | None = None


class NoteRead(BaseModel):
    id: str
    text: str
    author: str
    created_at: datetime


class TicketSummary(BaseModel):
    reference: str
    status: TicketStatus
    channel: Channel
    citizen: CitizenRead
    summary: str | None = None
    category: str | None = None
    department: str | None = None
    priority: Priority = Priority.NORMAL
    assignee: str | None = None
    kecamatan: str | None = None
    desa: str | None = None
    message_count: int = 0
    created_at: datetime
    updated_at: datetime


class TicketRead(TicketSummary):
    messages: list[MessageRead] = Field(default_factory=list)
    notes: list[NoteRead] = Field(default_factory=list)


class TicketPage(BaseModel):
    items: list[TicketSummary]
    next_cursor: str | None = None


class TicketUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TicketStatus | None = None
    assignee: str | None = Field(default=None, max_length=120)
    department: str | None = Field(default=None, max_length=120)
    category: str | None = Field(default=None, max_length=120)
    priority: Priority | None = None


class ReplyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)


class ReplyAccepted(BaseModel):
    id: str
    delivery_status: DeliveryState = DeliveryState.QUEUED


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)


class PublicReply(BaseModel):
    id: str
    purpose: str | None
    text: str
    created_at: datetime
    delivery_status: DeliveryState


class PublicStatus(BaseModel):
    """What anyone holding a reference (or a web submission id) may see: no identity, no citizen's words."""

    reference: str
    submission_id: str | None = None
    status: TicketStatus
    status_label: str
    channel: Channel
    category: str | None = None
    department: str | None = None
    created_at: datetime
    updated_at: datetime
    replies: list[PublicReply]
