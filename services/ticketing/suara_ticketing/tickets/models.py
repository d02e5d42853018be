"""API models of tickets, named by role."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from suara_shared.events import Channel, DeliveryState, ReplyPurpose

REFERENCE_PATTERN = r"^[A-Z]{2,10}-\d{4}-\d{6}$"


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
    #: What the message answers, quotes or reacts to (`in_reply_to`: the platform id of that message).
    reply_context: dict[str, Any] | None = None
    #: The approved template an outbound message went out as, outside the customer-service window (WhatsApp).
    template: str | None = None
    #: Social channels: an outbound reply sent privately to a commenter; a comment's edits and removal.
    private: bool | None = None
    edits: list[dict[str, Any]] = Field(default_factory=list)
    removed: bool | None = None


class NoteRead(BaseModel):
    id: str
    text: str
    author: str
    created_at: datetime


class UndeliveredRead(BaseModel):
    """The newest answer to the citizen (acknowledgement, agent's reply or resolution) failed: they have not got it.
    Cleared when another answer is queued."""

    outbound_id: str
    purpose: ReplyPurpose
    code: str | None = Field(default=None, description="the platform's error code, or `outcome_unknown`")
    at: datetime


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
    due_at: datetime | None = Field(default=None, description="end of the last working day to resolve it in")
    overdue: bool = Field(default=False, description="still unresolved after due_at")
    breached: bool = Field(default=False, description="its deadline passed before it was resolved")
    forwarded_to: str | None = Field(default=None, description="an outside body it belongs to, e.g. PLN")
    anonymous: bool = False
    confidential: bool = Field(default=False, description="the citizen's identity is shown to supervisors only")
    previous_reference: str | None = Field(default=None, description="the finished ticket this one follows")
    merged_into: str | None = Field(default=None, description="the master ticket this report was merged into")
    merged: list[str] = Field(default_factory=list, description="reports merged into this master ticket")
    satisfaction: int | None = Field(default=None, ge=1, le=5, description="the citizen's 1-5 score")
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    accepted_at: datetime | None = None
    source: str | None = Field(default=None, description="where a web complaint was filed, e.g. `kiosk`")
    undelivered: UndeliveredRead | None = None


class ExtensionRead(BaseModel):
    working_days: int
    reason: str | None = None
    by: str
    at: datetime


class DeclineRead(BaseModel):
    department: str | None = None
    reason: str | None = None
    by: str
    at: datetime


class TicketRead(TicketSummary):
    messages: list[MessageRead] = Field(default_factory=list)
    notes: list[NoteRead] = Field(default_factory=list)
    extensions: list[ExtensionRead] = Field(default_factory=list)
    declines: list[DeclineRead] = Field(default_factory=list)


class TicketEventRead(BaseModel):
    """One entry of a ticket's audit trail: who did what, when."""

    id: str
    type: str
    actor: str
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class TicketEventPage(BaseModel):
    items: list[TicketEventRead]


class DispositionAction(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"  # "not our authority": back to triage, or to the department named
    EXTEND = "extend"


class DispositionCreate(BaseModel):
    """An agency's answer to a ticket routed to it."""

    model_config = ConfigDict(extra="forbid")

    action: DispositionAction
    reason: str | None = Field(default=None, max_length=1000, description="required to decline or extend")
    department: str | None = Field(
        default=None, max_length=40, description="decline: the department it belongs to (none: back to triage)"
    )
    working_days: int | None = Field(default=None, ge=1, le=30, description="extend: how many working days")

    @model_validator(mode="after")
    def _complete(self) -> DispositionCreate:
        if self.action is not DispositionAction.ACCEPT and not (self.reason and self.reason.strip()):
            raise ValueError(f"reason: required to {self.action.value}")
        if self.action is DispositionAction.EXTEND and self.working_days is None:
            raise ValueError("working_days: required to extend")
        if self.action is not DispositionAction.EXTEND and self.working_days is not None:
            raise ValueError("working_days: only an extension takes working days")
        if self.action is not DispositionAction.DECLINE and self.department is not None:
            raise ValueError("department: only a decline names another department")
        return self


class MergeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    references: list[Annotated[str, StringConstraints(pattern=REFERENCE_PATTERN)]] = Field(min_length=1, max_length=50)


class DeadlineOverview(BaseModel):
    """What a supervisor watches: tickets past their deadline, and those due within the coming working days."""

    overdue: list[TicketSummary]
    due_soon: list[TicketSummary]


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
    confidential: bool | None = Field(default=None, description="supervisors only")


class ReplyCreate(BaseModel):
    """A reply: its `text`, or a canned response (`canned_id`) filled in for the ticket."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=10_000)
    canned_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    #: On a Facebook or Instagram comment: answer the commenter privately (Meta's private reply, once per
    #: comment, within 7 days) instead of publicly under the comment.
    private: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ReplyCreate:
        if (self.text is None) == (self.canned_id is None):
            raise ValueError("give either text or canned_id")
        return self


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
    #: The category's and the agency's names as the routing rules give them, for the citizen's page.
    category_name: str | None = None
    department_name: str | None = None
    created_at: datetime
    updated_at: datetime
    replies: list[PublicReply]
    #: True for a confidential report asked for by its reference: its replies are not shown to the public.
    replies_hidden: bool = False
