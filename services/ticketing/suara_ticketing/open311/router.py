"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2): discovery, services, requests, tokens.

A request filed here enters like a web complaint: published on the inbound topic (answered only once the broker
has it), so it is acknowledged, routed and deadlined like every other; the answer is a token that becomes a
`service_request_id` (the ticket reference) once ticketing has recorded it. What the public reads here never
names a citizen: confidential reports are left out, and a report's own words and coordinates are shown only for
requests that were filed through this public API."""

from __future__ import annotations

import hmac
import math
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from suara_shared import topics
from suara_shared.events import Attachment, Channel, InboundMessage, Location, MessageKind, Sender, new_id, utcnow
from suara_shared.identity import normalize_phone
from suara_shared.kafka import BrokerUnavailable

from ..lifecycle import ACTIVE
from ..texts import STATUS_LABELS
from ..tickets.models import REFERENCE_PATTERN
from ..tickets.service import TicketService

SOURCE = "open311"
SPEC = "http://wiki.open311.org/GeoReport_v2"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
HEX_ID_PATTERN = r"^[0-9a-f]{32}$"

router = APIRouter(prefix="/open311/v2", tags=["open311"])


class Open311Error(Exception):
    """An error in Open311's own format: `[{"code": …, "description": …}]`."""

    def __init__(self, status_code: int, description: str) -> None:
        super().__init__(description)
        self.status_code = status_code
        self.description = description


def install(app: FastAPI) -> None:
    """Mount the routes and answer their errors the Open311 way."""

    @app.exception_handler(Open311Error)
    async def _open311_error(_: Request, exc: Open311Error) -> JSONResponse:
        return JSONResponse([{"code": exc.status_code, "description": exc.description}], status_code=exc.status_code)

    app.include_router(router)


class ServiceRead(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool = False
    type: str = "realtime"
    keywords: str
    group: str


class ServiceRequestRead(BaseModel):
    service_request_id: str
    status: str = Field(description="open or closed")
    status_notes: str | None = None
    service_name: str | None = None
    service_code: str | None = None
    description: str | None = None
    agency_responsible: str | None = None
    service_notice: str | None = None
    requested_datetime: datetime
    updated_datetime: datetime
    expected_datetime: datetime | None = None
    address: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    lat: float | None = None
    long: float | None = None
    media_url: str | None = None


class TokenRead(BaseModel):
    token: str
    service_request_id: str | None = None


class ServiceRequestCreated(BaseModel):
    token: str
    service_notice: str | None = None
    account_id: str | None = None


class ServiceRequestCreate(BaseModel):
    """The form fields of `POST requests.json`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    api_key: str = Field(min_length=1, max_length=200)
    service_code: str = Field(min_length=1, max_length=60)
    jurisdiction_id: str | None = Field(default=None, max_length=120)
    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)
    address_string: str | None = Field(default=None, max_length=500)
    address_id: str | None = Field(default=None, max_length=120)
    email: str | None = Field(default=None, max_length=320)
    device_id: str | None = Field(default=None, max_length=200)
    account_id: str | None = Field(default=None, max_length=200)
    first_name: str | None = Field(default=None, max_length=60)
    last_name: str | None = Field(default=None, max_length=60)
    phone: str | None = Field(default=None, max_length=40)
    description: str = Field(min_length=10, max_length=5000)
    media_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("lat", "long")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a number")
        return value


def _service(request: Request) -> TicketService:
    service: TicketService = request.app.state.tickets
    return service


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/open311/v2"


@router.get("/discovery.json")
async def discovery(request: Request) -> dict[str, Any]:
    """Where this endpoint is and what it speaks."""
    return {
        "changeset": "2026-11-28T00:00:00Z",
        "contact": "Tim Pengaduan Pemkab Rembang, Dinas Komunikasi dan Informatika Kabupaten Rembang",
        "key_service": "API keys are issued by the kabupaten's Dinkominfo",
        "endpoints": [
            {
                "specification": SPEC,
                "url": _base(request),
                "changeset": "2026-11-28T00:00:00Z",
                "type": "production",
                "formats": ["application/json"],
            }
        ],
    }


@router.get("/services.json", response_model=list[ServiceRead])
async def services(request: Request) -> list[dict[str, Any]]:
    """The complaint categories, each with the agency that handles it."""
    routing = _service(request).routing
    rules = routing.rules
    return [
        {
            "service_code": code,
            "service_name": rule.name,
            "description": rule.name
            + (f"; ditangani {routing.department_name(rule.department)}" if rule.department else "")
            + (f"; diteruskan ke {rule.forward_to}" if rule.forward_to else ""),
            "keywords": ", ".join(rule.keywords[:12]),
            "group": routing.department_name(rule.department) or rule.forward_to or rules.triage.name,
        }
        for code, rule in rules.categories.items()
    ]


def _public(ticket: dict[str, Any], service: TicketService) -> dict[str, Any]:
    routing = service.routing
    own = ticket.get("source") == SOURCE
    geo = ticket.get("geo") or {}
    where = [p for p in (ticket.get("desa"), ticket.get("kecamatan") and f"Kecamatan {ticket['kecamatan']}") if p]
    agency = routing.department_name(ticket.get("department")) or ticket.get("forwarded_to")
    return {
        "service_request_id": ticket["_id"],
        "status": "open" if ticket["status"] in ACTIVE else "closed",
        "status_notes": STATUS_LABELS.get(ticket["status"], ticket["status"]),
        "service_name": routing.category_name(ticket.get("category")),
        "service_code": ticket.get("category"),
        "description": ticket.get("summary") if own else None,
        "agency_responsible": agency or routing.rules.triage.name,
        "requested_datetime": ticket["created_at"],
        "updated_datetime": ticket["updated_at"],
        "expected_datetime": ticket.get("due_at"),
        "address": ", ".join([*where, "Kabupaten Rembang"]) if where else None,
        "lat": geo.get("lat") if own else None,
        "long": geo.get("long") if own else None,
    }


@router.get("/requests.json", response_model=list[ServiceRequestRead])
async def list_requests(
    request: Request,
    service_request_id: Annotated[str | None, Query(max_length=2000, pattern=r"^[A-Z0-9, -]+$")] = None,
    service_code: Annotated[str | None, Query(max_length=60, pattern=r"^[a-z][a-z0-9_]*$")] = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status_: Annotated[str | None, Query(alias="status", pattern=r"^(open|closed)$")] = None,
    jurisdiction_id: Annotated[str | None, Query(max_length=120)] = None,
) -> list[dict[str, Any]]:
    """Public requests, newest first (at most 200; by default those of the last 90 days), with the standard
    filters. Confidential reports are never listed."""
    service = _service(request)
    query: dict[str, Any] = {"confidential": {"$ne": True}}
    if service_request_id:
        ids = [i.strip() for i in service_request_id.split(",") if i.strip()]
        if not all(re.fullmatch(REFERENCE_PATTERN, i) for i in ids):
            raise Open311Error(400, "service_request_id: comma-separated references like RMB-2026-000001")
        query["_id"] = {"$in": ids}
    else:
        start = _aware(start_date) if start_date else utcnow() - timedelta(days=90)
        created: dict[str, Any] = {"$gte": start}
        if end_date:
            created["$lte"] = _aware(end_date)
        query["created_at"] = created
    if service_code:
        query["category"] = service_code
    if status_:
        active = [s.value for s in ACTIVE]
        query["status"] = {"$in": active} if status_ == "open" else {"$nin": active}
    docs = await service.tickets.find(query).sort([("created_at", -1), ("_id", -1)]).limit(200).to_list(None)
    return [_public(d, service) for d in docs]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


@router.get("/requests/{service_request_id}.json", response_model=list[ServiceRequestRead])
async def get_request(
    request: Request, service_request_id: Annotated[str, Path(pattern=REFERENCE_PATTERN)]
) -> list[dict[str, Any]]:
    """One request (a list of one, as the specification has it)."""
    service = _service(request)
    ticket = await service.tickets.find_one({"_id": service_request_id, "confidential": {"$ne": True}})
    if ticket is None:
        raise Open311Error(404, f"no service request {service_request_id}")
    return [_public(ticket, service)]


@router.get("/tokens/{token}.json", response_model=list[TokenRead])
async def get_token(request: Request, token: Annotated[str, Path(pattern=HEX_ID_PATTERN)]) -> list[dict[str, Any]]:
    """The service_request_id a token became; 404 until ticketing has recorded the request (seconds)."""
    ticket = await _service(request).tickets.find_one({"submission_id": token, "source": SOURCE}, {"_id": 1})
    if ticket is None:
        raise Open311Error(404, f"token {token} is not recorded yet; try again in a few seconds")
    return [{"token": token, "service_request_id": ticket["_id"]}]


_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": ServiceRequestCreate.model_json_schema()},
        },
    }
}


@router.post(
    "/requests.json",
    response_model=list[ServiceRequestCreated],
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_FORM_SCHEMA,
    responses={400: {"description": "invalid request"}, 403: {"description": "invalid api_key"}},
)
async def create_request(request: Request) -> list[dict[str, Any]]:
    """File a service request (form-encoded, with `api_key`); the answer's token becomes a service_request_id."""
    try:
        form = await request.form()
    except Exception:
        raise Open311Error(400, "the body must be form-encoded (application/x-www-form-urlencoded)") from None
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        body = ServiceRequestCreate.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise Open311Error(400, f"{field}: {first['msg']}") from None
    keys: frozenset[str] = request.app.state.settings.open311_keys
    # Each key compared in constant time, like every other secret: a lookup's timing must not hint at a key.
    given = body.api_key.encode()
    if not any(hmac.compare_digest(given, key.encode()) for key in keys):
        raise Open311Error(403, "api_key: not a valid key for this endpoint")
    service = _service(request)
    if body.service_code not in service.routing.rules.categories:
        raise Open311Error(400, f"service_code: unknown; see {_base(request)}/services.json")
    if (body.lat is None) != (body.long is None):
        raise Open311Error(400, "lat and long: give both, or an address_string")
    if body.lat is None and not body.address_string and not body.address_id:
        raise Open311Error(400, "location: give lat and long, or address_string")
    phone = normalize_phone(body.phone) if body.phone else None
    if body.phone and phone is None:
        raise Open311Error(400, "phone: not a valid Indonesian phone number")
    if body.email and not _EMAIL.match(body.email):
        raise Open311Error(400, "email: not an e-mail address")
    token = new_id()
    name = " ".join(p for p in (body.first_name, body.last_name) if p) or None
    event = InboundMessage(
        channel=Channel.WEB,
        platform_message_id=token,
        conversation_key=token,
        sender=Sender(channel_user_id=token, display_name=name, phone=phone, email=body.email),
        kind=MessageKind.TEXT,
        text=body.description,
        location=Location(latitude=body.lat, longitude=body.long, address=body.address_string)
        if body.lat is not None or body.address_string
        else None,
        attachments=(Attachment(kind=MessageKind.IMAGE, url=body.media_url),) if body.media_url else (),
        metadata={"submission_id": token, "source": SOURCE, "category": body.service_code},
    )
    try:
        await service.publisher.publish(topics.INBOUND, event, key=event.partition_key)
    except BrokerUnavailable:
        raise Open311Error(503, "the request could not be recorded right now; nothing was kept, try again") from None
    return [{"token": token, "service_notice": "Laporan diterima; nomor laporan menyusul dalam beberapa detik."}]
