"""One citizen across channels: every ticket carrying the same phone number, whichever way it was written
(`08…`, `+62…`, `62…`, a WhatsApp id), so a web complaint and a WhatsApp message show as one person."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel

from suara_shared.events import Channel
from suara_shared.http import ApiError
from suara_shared.identity import normalize_phone

from .auth import CurrentUser
from .tickets.models import TicketSummary
from .tickets.router import _ticket as ticket_view
from .tickets.service import TicketService

router = APIRouter(prefix="/api/v1", tags=["citizens"])

#: Enough for any one person; the newest come first.
MAX_TICKETS = 100


class CitizenTickets(BaseModel):
    """A citizen known by phone number, and their tickets on every channel, newest first."""

    phone: str
    display_names: list[str]
    channels: list[Channel]
    tickets: list[TicketSummary]


@router.get("/citizens/{phone}/tickets", response_model=CitizenTickets)
async def citizen_tickets(
    request: Request, user: CurrentUser, phone: Annotated[str, Path(min_length=6, max_length=32)]
) -> dict[str, Any]:
    """Tickets of one phone number on every channel (web form, WhatsApp…), those the caller may see. Confidential
    reports stay out unless the caller may see who filed them."""
    e164 = normalize_phone(phone)
    if e164 is None:
        raise ApiError(422, "validation_error", "phone: not an Indonesian phone number, e.g. 0812-3456-7890")
    service: TicketService = request.app.state.tickets
    docs, _ = await service.list(
        filters={"citizen.phone": e164}, q=None, limit=MAX_TICKETS, cursor=None, principal=user
    )
    docs = [d for d in docs if user.sees_identity(d)]
    now = service.now()
    return {
        "phone": e164,
        "display_names": sorted({d["citizen"]["display_name"] for d in docs if d["citizen"].get("display_name")}),
        "channels": sorted({d["channel"] for d in docs}),
        "tickets": [ticket_view(d, user, now) for d in docs],
    }
