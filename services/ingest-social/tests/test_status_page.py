"""The public status page and its JSON twin, against a small local stand-in for ticketing's public-status
endpoint (the end-to-end test against the real ticketing lives with the cross-service tests)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from suara_devstack.infra import free_port
from suara_ingest_social.config import Settings
from suara_ingest_social.web import pages
from suara_ingest_social.web.models import PublicStatus

ServeApp = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]

REFERENCE = "RMB-2026-000123"
BROKEN = "RMB-2026-000500"
SUBMISSION = "0123456789abcdef0123456789abcdef"

TICKET: dict[str, Any] = {
    "reference": REFERENCE,
    "submission_id": "fedcba9876543210fedcba9876543210",
    "status": "pending",
    "channel": "web",
    "category": "Jalan dan jembatan",
    "department": "Dinas Pekerjaan Umum dan Penataan Ruang",
    "created_at": "2026-03-05T07:05:00Z",
    "updated_at": "2026-03-06T17:30:00+00:00",
    "replies": [
        {
            "id": "r2",
            "purpose": "agent_reply",
            "text": "Mohon kirim foto lokasi <b>jalan</b> yang rusak.\nTerima kasih.",
            "created_at": "2026-03-06T17:30:00Z",
            "delivery_status": "read",
        },
        {
            "id": "r1",
            "purpose": "acknowledgement",
            "text": f"Laporan Anda kami terima dengan nomor {REFERENCE}.",
            "created_at": "2026-03-05T07:05:02Z",
            "delivery_status": "delivered",
        },
    ],
}


def stand_in_ticketing() -> FastAPI:
    """Ticketing's `GET /api/v1/public/status/{key}` as the contract describes it, for three known keys."""
    app = FastAPI()

    @app.get("/api/v1/public/status/{key}")
    async def public_status(key: str) -> JSONResponse:
        if key == REFERENCE:
            return JSONResponse(TICKET)
        if key == BROKEN:
            return JSONResponse({"error_code": "internal_error", "message": "boom"}, status_code=500)
        return JSONResponse({"error_code": "not_found", "message": "no such ticket"}, status_code=404)

    return app


@pytest.fixture
async def ticketing_url() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(stand_in_ticketing(), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
async def client(app_settings: Settings, ticketing_url: str, serve: ServeApp) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app_settings.model_copy(update={"ticketing_url": ticketing_url})) as http:
        yield http


def test_status_page_shows_status_dates_and_replies_in_order() -> None:
    page = pages.status_page(PublicStatus.model_validate(TICKET))

    assert f"<h1>Laporan {REFERENCE}</h1>" in page
    assert '<span class="badge">Menunggu tanggapan Anda</span>' in page
    assert "Dinas Pekerjaan Umum dan Penataan Ruang" in page
    assert "Formulir web" in page
    assert "5 Maret 2026 pukul 14.05 WIB" in page  # 07:05 UTC is 14:05 in Jakarta
    assert "7 Maret 2026 pukul 00.30 WIB" in page  # and 17:30 UTC is past midnight there
    acknowledgement = page.index("Laporan Anda kami terima dengan nomor")
    agent_reply = page.index("Mohon kirim foto lokasi")
    assert acknowledgement < agent_reply
    assert "Tanda terima" in page and "Balasan petugas" in page
    assert "Status kiriman: Diterima" in page and "Status kiriman: Dibaca" in page
    assert "&lt;b&gt;jalan&lt;/b&gt;" in page and "<b>" not in page


def test_a_complaint_just_recorded_refreshes_until_its_acknowledgement_shows() -> None:
    """Ticketing stores a new ticket a moment before its messages: a citizen who came to the page in between must
    not be left on "no reply yet" when the acknowledgement lands a moment later."""
    refresh = '<meta http-equiv="refresh" content="5">'
    just_now = datetime.now(UTC) - timedelta(seconds=3)
    fresh = {**TICKET, "created_at": just_now.isoformat(), "replies": []}
    assert refresh in pages.status_page(PublicStatus.model_validate(fresh))
    acknowledged = {**fresh, "replies": [r for r in TICKET["replies"] if r["purpose"] == "acknowledgement"]}
    assert refresh not in pages.status_page(PublicStatus.model_validate(acknowledged))
    # Nor does a page refresh forever: an old complaint with no reply, or a confidential one's hidden replies.
    assert refresh not in pages.status_page(PublicStatus.model_validate({**TICKET, "replies": []}))
    hidden = {**fresh, "replies_hidden": True}
    assert refresh not in pages.status_page(PublicStatus.model_validate(hidden))


@pytest.mark.parametrize(
    ("status", "label"),
    [("new", "Baru diterima"), ("open", "Sedang diproses"), ("resolved", "Selesai"), ("closed", "Ditutup")],
)
def test_every_status_has_its_indonesian_label(status: str, label: str) -> None:
    ticket = {**copy.deepcopy(TICKET), "status": status, "replies": [], "category": None, "department": None}

    page = pages.status_page(PublicStatus.model_validate(ticket))

    assert f'<span class="badge">{label}</span>' in page
    assert "Belum ada tanggapan" in page
    assert "Belum ditentukan" in page


def test_the_page_names_the_category_and_agency_as_ticketing_words_them_not_by_their_codes() -> None:
    ticket = {
        **copy.deepcopy(TICKET),
        "status": "new",
        "status_label": "Baru diterima",
        "category": "jalan_jembatan",
        "category_name": "Jalan dan jembatan",
        "department": "DPUPR",
        "department_name": "Dinas Pekerjaan Umum dan Penataan Ruang",
        "replies": [{**TICKET["replies"][1], "purpose": "resolution"}],
    }

    page = pages.status_page(PublicStatus.model_validate(ticket))

    assert "Jalan dan jembatan" in page and "jalan_jembatan" not in page
    assert "Dinas Pekerjaan Umum dan Penataan Ruang" in page
    assert '<span class="badge">Baru diterima</span>' in page
    assert "Pemberitahuan selesai" in page  # not a bare "Pesan"


async def test_status_page_of_a_known_reference(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/status/{REFERENCE.lower()}")

    assert response.status_code == 200
    assert "Menunggu tanggapan Anda" in response.text
    assert "Laporan Anda kami terima dengan nomor" in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_fresh_submission_waits_on_a_page_that_refreshes_itself(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/status/{SUBMISSION}")

    assert response.status_code == 200
    assert "Laporan Anda sudah kami terima dan sedang dicatat" in response.text
    assert '<meta http-equiv="refresh" content="5">' in response.text
    assert SUBMISSION in response.text


async def test_unknown_reference_is_a_404_page_with_a_lookup_form(client: httpx.AsyncClient) -> None:
    response = await client.get("/status/RMB-2026-999999")

    assert response.status_code == 404
    assert "Nomor laporan tidak ditemukan" in response.text
    assert '<form class="lookup" action="/status" method="get"' in response.text
    assert 'value="RMB-2026-999999"' in response.text
    assert "http-equiv" not in response.text


async def test_a_key_that_cannot_be_a_reference_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/status/%3Cscript%3E..")

    assert response.status_code == 404
    assert "Nomor laporan tidak ditemukan" in response.text
    assert "<script>" not in response.text


async def test_lookup_form_redirects_to_the_reference(client: httpx.AsyncClient) -> None:
    redirected = await client.get("/status", params={"ref": "  rmb-2026-000123 "})
    empty = await client.get("/status")
    nonsense = await client.get("/status", params={"ref": "bukan/nomor " * 40})

    assert redirected.status_code == 303
    assert redirected.headers["location"] == f"/status/{REFERENCE}"
    assert empty.status_code == 200
    assert '<label for="ref">Nomor laporan</label>' in empty.text
    assert nonsense.status_code == 404
    assert "Nomor laporan tidak ditemukan" in nonsense.text


async def test_ticketing_in_trouble_is_a_503_page(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/status/{BROKEN}")

    assert response.status_code == 503
    assert "coba lagi" in response.text.lower()


async def test_ticketing_unreachable_is_a_503_page(app_settings: Settings, serve: ServeApp) -> None:
    nowhere = app_settings.model_copy(update={"ticketing_url": f"http://127.0.0.1:{free_port()}"})
    async with serve(nowhere) as http:
        page = await http.get(f"/status/{REFERENCE}")
        api = await http.get(f"/api/v1/web/status/{REFERENCE}")

    assert page.status_code == 503
    assert "Silakan coba lagi" in page.text
    assert api.status_code == 503
    assert api.json()["error_code"] == "ticketing_unavailable"


async def test_json_status_passes_ticketing_answer_through(client: httpx.AsyncClient) -> None:
    found = await client.get(f"/api/v1/web/status/{REFERENCE}")
    pending = await client.get(f"/api/v1/web/status/{SUBMISSION}")
    unknown = await client.get("/api/v1/web/status/RMB-2026-999999")

    assert found.status_code == 200
    assert found.json() == TICKET
    assert pending.status_code == 404
    assert pending.json()["error_code"] == "not_found"
    assert "not recorded yet" in pending.json()["message"]
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "not_found"


def test_a_confidential_report_asked_by_reference_says_its_replies_are_private() -> None:
    ticket = {**copy.deepcopy(TICKET), "replies": [], "replies_hidden": True}

    page = pages.status_page(PublicStatus.model_validate(ticket))

    assert "dirahasiakan" in page
    assert "Belum ada tanggapan" not in page


def test_the_form_offers_to_keep_the_report_from_the_public() -> None:
    page = pages.form_page()

    assert 'name="confidential"' in page and "Rahasiakan laporan dari publik" in page
    assert 'aria-describedby="confidential-hint"' in page
