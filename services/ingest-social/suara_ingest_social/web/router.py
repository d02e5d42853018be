"""The web channel's routes: the citizen form, its JSON twin, and the public status page."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from suara_shared.http import ApiError, error_body
from suara_shared.kafka import Publisher

from ..config import Settings
from ..limits import MAX_BODY_BYTES, RATE_LIMITED, RateLimiter, client_key
from . import pages, photos
from .models import WebComplaintAccepted, WebComplaintCreate
from .service import IDEMPOTENCY_KEY, ComplaintNotAccepted, submit_complaint
from .status import (
    StatusAnswer,
    StatusNotFound,
    TicketingUnavailable,
    fetch_status,
    is_submission_id,
    is_valid_key,
    normalize_key,
)

log = logging.getLogger(__name__)

router = APIRouter()

COMPLAINT_FIELDS = ("text", "name", "phone", "email", "kecamatan", "desa", "anonymous", "confidential")
FORM_FIELDS = (*COMPLAINT_FIELDS, pages.TOKEN_FIELD)

#: The pages carry no script and load nothing from elsewhere; the policy makes any injected markup inert.
_HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # What a citizen typed, and a complaint's status, must not linger in shared caches or go stale.
    "Cache-Control": "no-store",
}


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


async def get_ticketing(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.ticketing
    return client


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PublisherDep = Annotated[Publisher, Depends(get_publisher)]
TicketingDep = Annotated[httpx.AsyncClient, Depends(get_ticketing)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def html(body: str, status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers={**_HTML_HEADERS, **(headers or {})})


def status_url(request: Request, settings: Settings, submission_id: str) -> str:
    """Where the citizen follows the complaint: the configured public base, else this request's host."""
    if settings.public_status_url:
        return f"{settings.public_status_url.rstrip('/')}/{submission_id}"
    return str(request.url_for("status_page", key=submission_id))


class RateLimited(Exception):
    """The client filed more complaints than the web form's rate allows; it may again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def retry_after(request: Request) -> int | None:
    """Spend one of this client's submissions: None when it may file now, else the whole seconds to wait."""
    limiter: RateLimiter = request.app.state.form_limiter
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    client = client_key(request.client.host if request.client else None, forwarded, request.app.state.trusted_proxies)
    wait = limiter.take(client)
    if not wait:
        return None
    route = request.scope["route"].path if request.scope.get("route") else request.url.path
    RATE_LIMITED.labels(route).inc()
    log.warning("complaint refused: its client is over the web form's rate", extra={"route": route})
    return max(1, math.ceil(wait))


async def limit_submissions(request: Request) -> None:
    """A dependency of the JSON API: 429 before the body is even validated."""
    if (wait := retry_after(request)) is not None:
        raise RateLimited(wait)


def install_rate_limit_handler(app: FastAPI) -> None:
    @app.exception_handler(RateLimited)
    async def _limited(_: Request, exc: RateLimited) -> JSONResponse:
        message = f"too many complaints from this address; try again in {exc.retry_after} s"
        return JSONResponse(
            error_body("rate_limited", message, retry_after=exc.retry_after),
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after)},
        )


@router.post(
    "/api/v1/web/complaints",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebComplaintAccepted,
    tags=["web"],
    dependencies=[Depends(limit_submissions)],
    responses={
        413: {"description": "body over 1 MiB"},
        429: {"description": "too many complaints from this client; retry after `Retry-After` seconds"},
        503: {"description": "broker unavailable; retry"},
    },
)
async def create_complaint(
    complaint: WebComplaintCreate,
    request: Request,
    publisher: PublisherDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=IDEMPOTENCY_KEY.pattern,
            description="A key of the client's choosing (8-128 of A-Z a-z 0-9 _ . : -): the same complaint sent again "
            "under it, after a 503 or a lost answer, is one complaint with the same id",
        ),
    ] = None,
) -> WebComplaintAccepted:
    """Accept a complaint; 202 only once the broker has it, 503 (retry, with the same `Idempotency-Key`) when it
    does not."""
    submission_id = await submit_complaint(publisher=publisher, complaint=complaint, idempotency_key=idempotency_key)
    return WebComplaintAccepted(id=submission_id, status_url=status_url(request, settings, submission_id))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def form() -> HTMLResponse:
    return html(pages.form_page())


def _form_errors(exc: ValidationError) -> dict[str, str]:
    """One Indonesian message per refused field, the first pydantic found."""
    errors: dict[str, str] = {}
    for err in exc.errors(include_input=False):
        field = str(err["loc"][0]) if err["loc"] else "text"
        errors.setdefault(field, pages.field_message(field, err["type"]))
    return errors


#: Forms with photos parsed at once: each spools up to `photos.form_bytes` to the temporary disk; more wait.
PHOTO_FORMS_AT_ONCE = 4
#: Files a form may carry before Starlette refuses it outright; past `photos.MAX_PHOTOS`, the form says so.
_FORM_MAX_FILES = 20


@contextlib.asynccontextmanager
async def form_with_photos(request: Request, fields: Sequence[str]) -> AsyncIterator[tuple[dict[str, str], list[Any]]]:
    """A form's text fields among `fields` and its photos (Starlette `UploadFile`s, open inside the block). A form
    larger than a plain one (it carries photos) waits its turn: `PHOTO_FORMS_AT_ONCE`."""
    declared = request.headers.get("content-length", "")
    turn = request.app.state.photo_forms if declared.isdigit() and int(declared) > MAX_BODY_BYTES else None
    async with turn or contextlib.nullcontext(), request.form(max_files=_FORM_MAX_FILES) as form_data:
        values = {field: value for field in fields if isinstance(value := form_data.get(field), str)}
        yield values, [u for u in form_data.getlist(photos.FIELD) if not isinstance(u, str)]


async def check_photos(
    request: Request, uploads: list[Any], errors: dict[str, str], settings: Settings
) -> list[photos.Photo]:
    """The form's photos, checked; what is wrong with them goes to `errors`, with a reminder to choose them again
    when anything else sends the form back (a browser never fills a file input in again)."""
    checked: list[photos.Photo] = []
    budget = None if errors else request.app.state.photo_budget  # a form coming back keeps nothing
    try:
        checked = await photos.check(uploads, max_bytes=settings.web_photo_max_bytes, budget=budget)
    except photos.PhotoRefused as exc:
        errors[photos.FIELD] = pages.photo_message(exc.reason, max_bytes=settings.web_photo_max_bytes)
    if errors and any(u.filename for u in uploads):
        errors.setdefault(photos.FIELD, pages.PHOTO_AGAIN)
    return checked


@router.post("/lapor", response_class=HTMLResponse, include_in_schema=False)
async def submit_form(request: Request, publisher: PublisherDep, settings: SettingsDep) -> Response:
    """The form's POST (with its photos, multipart): 303 to the status page, or the form again with the citizen's
    input and what to fix."""
    async with form_with_photos(request, FORM_FIELDS) as (values, uploads):
        return await _file_complaint(request, publisher, settings, values, uploads)


async def _file_complaint(
    request: Request, publisher: Publisher, settings: Settings, values: dict[str, str], uploads: list[Any]
) -> Response:
    if (wait := retry_after(request)) is not None:
        return html(
            pages.form_page(values=values, notice=pages.too_many(wait)),
            status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(wait)},
        )
    errors: dict[str, str] = {}
    try:
        complaint = WebComplaintCreate.model_validate({k: v for k, v in values.items() if k in COMPLAINT_FIELDS})
    except ValidationError as exc:
        errors = _form_errors(exc)
    checked = await check_photos(request, uploads, errors, settings)
    if errors:
        return html(pages.form_page(values=values, errors=errors), status.HTTP_422_UNPROCESSABLE_CONTENT)
    token = values.get(pages.TOKEN_FIELD, "")
    key = token if IDEMPOTENCY_KEY.fullmatch(token) else None
    try:
        submission_id = await submit_complaint(
            publisher=publisher,
            complaint=complaint,
            idempotency_key=key,
            photos=checked,
            database=request.app.state.database if checked else None,
        )
    except (ComplaintNotAccepted, photos.PhotosNotKept) as exc:
        if isinstance(exc, photos.PhotosNotKept):
            cause = repr(exc.__cause__)
            log.warning("web complaint not accepted: its photos could not be kept", extra={"error": cause})
        notice = pages.PHOTO_TROUBLE if checked else pages.BROKER_TROUBLE
        return html(
            pages.form_page(values=values, notice=notice),
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "10"},
        )
    return RedirectResponse(f"/status/{submission_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
async def status_lookup(ref: str | None = None) -> Response:
    """The lookup form; with `?ref=` it sends the citizen on to that complaint's page."""
    if ref is None or not ref.strip():
        return html(pages.lookup_page())
    key = normalize_key(ref)
    if not is_valid_key(key):
        return html(pages.not_found_page(ref.strip()), status.HTTP_404_NOT_FOUND)
    return RedirectResponse(f"/status/{quote(key, safe='')}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/status/{key}", response_class=HTMLResponse, name="status_page", include_in_schema=False)
async def status_page(key: str, ticketing: TicketingDep) -> HTMLResponse:
    """A complaint's status and replies; a fresh submission waits here until ticketing has recorded it."""
    key = normalize_key(key)
    try:
        answer = await fetch_status(client=ticketing, key=key)
    except StatusNotFound:
        if is_submission_id(key):
            return html(pages.pending_page(key))
        return html(pages.not_found_page(key), status.HTTP_404_NOT_FOUND)
    except TicketingUnavailable:
        return html(pages.unavailable_page(key), status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "10"})
    return html(pages.status_page(answer.status))


@router.get(
    "/api/v1/web/status/{key}",
    tags=["web"],
    responses={
        404: {"description": "no such complaint (yet)"},
        503: {"description": "ticketing unavailable"},
    },
)
async def status_json(key: str, ticketing: TicketingDep) -> JSONResponse:
    """Ticketing's public status of a complaint, as it sent it."""
    key = normalize_key(key)
    try:
        answer: StatusAnswer = await fetch_status(client=ticketing, key=key)
    except StatusNotFound as exc:
        message = f"no complaint with reference {key}"
        if is_submission_id(key):
            message = f"submission {key} is not recorded yet (it may take a few seconds); try again"
        raise ApiError(404, "not_found", message) from exc
    except TicketingUnavailable as exc:
        raise ApiError(503, "ticketing_unavailable", "the status cannot be read right now; try again") from exc
    body: dict[str, Any] = answer.raw
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
