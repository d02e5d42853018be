"""The citizen form at `/` and its POST to `/lapor`, as a browser without JavaScript uses them."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from suara_devstack.infra import free_port
from suara_ingest_social.config import Settings
from suara_ingest_social.web import photos
from suara_ingest_social.web.models import KECAMATAN
from suara_shared import db, media
from suara_shared.events import InboundMessage, MessageKind

#: The `inbound` fixture: INBOUND records (key, stored bytes, event) whose event matches.
ReadInbound = Callable[[Callable[[InboundMessage], bool]], Awaitable[list[tuple[bytes | None, bytes, InboundMessage]]]]
ServeApp = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


def by_submission(submission_id: str) -> Callable[[InboundMessage], bool]:
    return lambda event: event.metadata.get("submission_id") == submission_id


def by_text(marker: str) -> Callable[[InboundMessage], bool]:
    return lambda event: marker in (event.text or "")


COMPLAINT = "Lampu penerangan jalan di Jalan Raya Lasem mati sejak minggu lalu,\r\nsangat gelap di malam hari."


def _field_value(page: str, name: str) -> str:
    match = re.search(rf'<input id="{name}" name="{name}"[^>]*value="([^"]*)"', page)
    assert match, f"no input {name}"
    return match.group(1)


def _textarea(page: str) -> str:
    match = re.search(r'<textarea id="text"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert match, "no textarea"
    return match.group(1)  # a browser drops the one newline right after the opening tag


async def test_form_shows_every_field_with_its_label(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="id">' in page
    assert 'name="viewport"' in page
    for field, label in [
        ("text", "Isi keluhan (wajib)"),
        ("kecamatan", "Kecamatan"),
        ("desa", "Desa/Kelurahan"),
        ("name", "Nama"),
        ("phone", "Nomor HP/WhatsApp"),
        ("email", "Email"),
        ("anonymous", "Laporkan secara anonim"),
    ]:
        assert f'<label for="{field}">{label}</label>' in page
        assert f'id="{field}" name="{field}"' in page
    for name in KECAMATAN:
        assert f'<option value="{name}">{name}</option>' in page
    assert page.count("<option") == 15  # the 14 kecamatan and "choose one"
    assert '<form action="/lapor" method="post"' in page
    assert "<script" not in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere


async def test_form_post_redirects_to_the_status_page_and_publishes(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    response = await client.post(
        "/lapor",
        data={"text": COMPLAINT, "kecamatan": "Lasem", "desa": "Soditan", "name": "", "phone": "", "email": ""},
    )

    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/status/[0-9a-f]{32}", location)
    [(_, _, event)] = await inbound(by_submission(location.rsplit("/", 1)[1]))
    assert event.text == COMPLAINT.replace("\r\n", "\n")
    assert (event.sender.display_name, event.sender.phone, event.sender.email) == (None, None, None)
    assert event.metadata["kecamatan"] == "Lasem"
    assert event.metadata["desa"] == "Soditan"
    assert event.metadata["anonymous"] is False


async def test_anonymous_checkbox_drops_the_identity(client: httpx.AsyncClient, inbound: ReadInbound) -> None:
    response = await client.post(
        "/lapor", data={"text": COMPLAINT, "anonymous": "true", "name": "Rina", "phone": "0812-3456-7890"}
    )

    assert response.status_code == 303
    [(_, _, event)] = await inbound(by_submission(response.headers["location"].rsplit("/", 1)[1]))
    assert event.metadata["anonymous"] is True
    assert event.sender.display_name is None
    assert event.sender.phone is None


async def test_invalid_form_comes_back_with_messages_and_everything_typed(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    marker = uuid.uuid4().hex
    typed = {
        "text": f"{COMPLAINT} {marker}",
        "name": "Siti Aminah",
        "phone": "12345",
        "email": "siti-at-example",
        "kecamatan": "Pancur",
        "desa": "Pancur Krajan",
    }

    response = await client.post("/lapor", data=typed)

    assert response.status_code == 422
    page = response.text
    assert 'id="phone-error">Nomor HP tidak valid' in page
    assert 'id="email-error">Alamat email tidak valid' in page
    assert (
        'id="phone" name="phone" type="tel" inputmode="tel" autocomplete="tel" value="12345" aria-invalid="true"'
        in page
    )
    assert "text-error" not in page
    assert "Periksa kembali isian Anda" in page
    assert _textarea(page) == typed["text"]
    for field in ("name", "phone", "email", "desa"):
        assert _field_value(page, field) == typed[field]
    assert '<option value="Pancur" selected>Pancur</option>' in page
    assert await inbound(by_text(marker)) == []


async def test_too_short_complaint_is_explained_in_indonesian(client: httpx.AsyncClient) -> None:
    response = await client.post("/lapor", data={"text": "rusak", "anonymous": "true"})

    assert response.status_code == 422
    assert 'id="text-error">Isi keluhan terlalu singkat: tulis paling sedikit 10 karakter.' in response.text
    assert 'id="anonymous" name="anonymous" type="checkbox" value="true" checked' in response.text


async def test_typed_markup_is_shown_as_text_never_run(client: httpx.AsyncClient) -> None:
    attack = '<script>alert("xss")</script>'
    response = await client.post(
        "/lapor",
        data={"text": f"Keluhan dengan skrip {attack}", "name": '"><script>alert(1)</script>', "phone": "x"},
    )

    assert response.status_code == 422
    page = response.text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;" in page
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_broker_down_keeps_the_citizens_text_and_asks_to_try_again(
    client_without_broker: httpx.AsyncClient,
) -> None:
    response = await client_without_broker.post(
        "/lapor", data={"text": COMPLAINT, "phone": "0812-3456-7890", "kecamatan": "Kragan"}
    )

    assert response.status_code == 503
    page = response.text
    assert "coba lagi" in page
    assert _textarea(page) == COMPLAINT
    assert _field_value(page, "phone") == "0812-3456-7890"
    assert '<option value="Kragan" selected>Kragan</option>' in page


def _token(page: str) -> str:
    match = re.search(r'<input type="hidden" name="submission_token" value="([^"]+)">', page)
    assert match, "no submission token"
    return match.group(1)


async def test_the_form_sent_twice_is_one_complaint_and_each_form_shown_is_a_new_one(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    """A citizen who presses the button again (a slow connection, a 503 page sent again) files one complaint."""
    shown = (await client.get("/")).text
    token = _token(shown)
    assert token != _token((await client.get("/")).text)
    marker = uuid.uuid4().hex
    form = {"text": f"{COMPLAINT} {marker}", "kecamatan": "Lasem", "submission_token": token}

    first = await client.post("/lapor", data=form)
    again = await client.post("/lapor", data=form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]

    # A form that comes back to be fixed keeps its token, so fixing and sending is still the same complaint.
    fixed = await client.post("/lapor", data={**form, "text": "pendek"})
    assert fixed.status_code == 422 and _token(fixed.text) == token
    records = await inbound(by_text(marker))
    assert {event.platform_message_id for _, _, event in records} == {first.headers["location"].rsplit("/", 1)[1]}


# --- photos ------------------------------------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 64  # a 16 KiB photo of a pothole
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 800  # 200 KiB: read and hashed in several pieces


async def _kept(settings: Settings, media_id: str) -> tuple[dict[str, Any], bytes] | None:
    """A photo kept under the web channel: its metadata and its bytes."""
    client, database = db.connect(settings.mongodb_uri)
    try:
        found = await media.find(database, "web", media_id)
        if found is None:
            return None
        stream = await db.files(database, media.BUCKET).open_download_stream(found["_id"])
        return found["metadata"], await stream.read()
    finally:
        await db.close(client)


def _photos(*files: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("foto", file) for file in files]


async def test_photos_are_kept_before_the_complaint_names_them(
    client: httpx.AsyncClient, inbound: ReadInbound, app_settings: Settings
) -> None:
    """A citizen attaches a photo of the pothole and one of the street sign: both are kept in the database, and the
    complaint's message names each by its id, with the type its bytes say (not the name or type the browser gave)."""
    page = (await client.get("/")).text
    assert 'enctype="multipart/form-data"' in page
    assert '<input id="foto" name="foto" type="file" accept="image/*" multiple' in page

    response = await client.post(
        "/lapor",
        data={"text": COMPLAINT, "kecamatan": "Lasem"},
        files=_photos(("IMG_0412.jpg", JPEG, "image/jpeg"), ("C:\\Users\\warga\\papan.png", PNG, "application/x")),
    )

    assert response.status_code == 303, response.text
    [(_, _, event)] = await inbound(by_submission(response.headers["location"].rsplit("/", 1)[1]))
    assert event.text == COMPLAINT.replace("\r\n", "\n")
    assert [(a.kind, a.mime_type, a.size, a.filename) for a in event.attachments] == [
        (MessageKind.IMAGE, "image/jpeg", len(JPEG), "IMG_0412.jpg"),
        (MessageKind.IMAGE, "image/png", len(PNG), "papan.png"),
    ]
    for attachment, content in zip(event.attachments, (JPEG, PNG), strict=True):
        assert attachment.media_id is not None
        assert attachment.sha256 == base64.b64encode(hashlib.sha256(content).digest()).decode()
        kept = await _kept(app_settings, attachment.media_id)
        assert kept is not None and kept[1] == content
        assert kept[0]["mime_type"] == attachment.mime_type and kept[0]["sha256"] == attachment.sha256
        assert kept[0]["awaiting"] is not None  # until ticketing stores the complaint naming it


async def test_the_same_form_sent_again_with_its_photo_is_one_complaint_with_one_photo(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    marker = uuid.uuid4().hex
    form = {"text": f"{COMPLAINT} {marker}", "submission_token": f"tok-{marker}"}
    first = await client.post("/lapor", data=form, files=_photos(("a.jpg", JPEG, "image/jpeg")))
    again = await client.post("/lapor", data=form, files=_photos(("a.jpg", JPEG, "image/jpeg")))

    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    events = [event for _, _, event in await inbound(by_text(marker))]
    assert len(events) == 2 and events[0].attachments == events[1].attachments  # one message to ticketing


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("surat.pdf", b"%PDF-1.7\n" + bytes(2000), "image/jpeg")], "Berkas ini bukan foto"),
        ([(f"{n}.jpg", JPEG, "image/jpeg") for n in range(4)], "Paling banyak 3 foto"),
        ([("besar.jpg", JPEG * 8, "image/jpeg")], "Foto terlalu besar: paling besar"),
    ],
)
async def test_a_photo_the_form_cannot_take_comes_back_with_what_was_typed_and_nothing_kept(
    serve: ServeApp,
    app_settings: Settings,
    inbound: ReadInbound,
    files: list[tuple[str, bytes, str]],
    message: str,
) -> None:
    marker = uuid.uuid4().hex
    capped = app_settings.model_copy(update={"web_photo_max_bytes": 64 * 1024})
    async with serve(capped) as http:
        response = await http.post("/lapor", data={"text": f"{COMPLAINT} {marker}"}, files=_photos(*files))

    assert response.status_code == 422
    page = response.text
    assert f'id="foto-error">{message}' in page
    assert 'id="foto" name="foto" type="file" accept="image/*" multiple aria-invalid="true"' in page
    assert _textarea(page) == f"{COMPLAINT} {marker}"
    assert await inbound(by_text(marker)) == []


async def test_a_form_to_fix_asks_for_its_photos_again(client: httpx.AsyncClient) -> None:
    """A browser never fills a file input in again: the citizen is told to choose the photo once more."""
    response = await client.post("/lapor", data={"text": "pendek"}, files=_photos(("a.jpg", JPEG, "image/jpeg")))

    assert response.status_code == 422
    assert 'id="text-error">' in response.text
    assert 'id="foto-error">Pilih lagi foto Anda' in response.text


async def test_while_the_database_is_away_a_complaint_with_photos_is_refused_whole_and_one_without_is_filed(
    serve: ServeApp, app_settings: Settings, inbound: ReadInbound
) -> None:
    marker = uuid.uuid4().hex
    no_database = app_settings.model_copy(update={"mongodb_uri": f"mongodb://127.0.0.1:{free_port()}/suara"})
    async with serve(no_database) as http:
        refused = await http.post(
            "/lapor", data={"text": f"{COMPLAINT} {marker}"}, files=_photos(("a.jpg", JPEG, "image/jpeg"))
        )
        filed = await http.post("/lapor", data={"text": f"{COMPLAINT} {marker} tanpa foto"})

    assert refused.status_code == 503 and refused.headers["retry-after"] == "10"
    assert "foto perlu dipilih lagi" in refused.text
    assert _textarea(refused.text) == f"{COMPLAINT} {marker}"
    assert filed.status_code == 303
    events = [event for _, _, event in await inbound(by_text(marker))]
    assert [(e.text, e.attachments) for e in events] == [(f"{COMPLAINT} {marker} tanpa foto".replace("\r\n", "\n"), ())]


async def test_a_form_with_photos_over_its_limit_or_of_no_declared_length_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    boundary = "suara-test"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{COMPLAINT}\r\n--{boundary}--\r\n'
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    over = photos.form_bytes(Settings().web_photo_max_bytes) + 1
    too_large = await client.post("/lapor", content=head.encode(), headers={**multipart, "Content-Length": str(over)})

    async def chunks() -> AsyncIterator[bytes]:
        yield head.encode()

    unmeasured = await client.post("/lapor", content=chunks(), headers=multipart)

    assert (too_large.status_code, too_large.json()["error_code"]) == (413, "payload_too_large")
    assert (unmeasured.status_code, unmeasured.json()["error_code"]) == (411, "length_required")


KIOSK = "/kiosk/33.17.10.2034"


async def test_the_kiosk_takes_the_photo_its_tablet_took_and_keeps_it(
    client: httpx.AsyncClient, inbound: ReadInbound, app_settings: Settings
) -> None:
    """The village officer photographs the blocked drain with the kiosk's tablet: the photo is kept and named on
    the complaint, which carries the kiosk's desa as before."""
    page = (await client.get(KIOSK)).text
    assert 'enctype="multipart/form-data"' in page
    assert 'name="foto" type="file" accept="image/*" capture="environment" multiple' in page
    marker = uuid.uuid4().hex
    response = await client.post(
        KIOSK, data={"text": f"{COMPLAINT} {marker}"}, files=_photos(("saluran.jpg", JPEG, "image/jpeg"))
    )

    assert response.status_code == 200 and "Terima kasih, laporan sudah terkirim" in response.text
    [(_, _, event)] = await inbound(by_text(marker))
    assert (event.metadata["source"], event.metadata["desa"]) == ("kiosk", "Tireman")
    (attachment,) = event.attachments
    assert (attachment.kind, attachment.mime_type, attachment.filename) == (
        MessageKind.IMAGE,
        "image/jpeg",
        "saluran.jpg",
    )
    assert attachment.media_id is not None
    kept = await _kept(app_settings, attachment.media_id)
    assert kept is not None and kept[1] == JPEG


async def test_the_kiosk_sends_back_a_file_that_is_no_photo_with_what_was_typed(
    client: httpx.AsyncClient, inbound: ReadInbound
) -> None:
    marker = uuid.uuid4().hex
    response = await client.post(
        KIOSK,
        data={"text": f"{COMPLAINT} {marker}", "name": "Mbah Karto"},
        files=_photos(("catatan.txt", b"bukan foto sama sekali", "text/plain")),
    )

    assert response.status_code == 422
    assert 'id="foto-error">Berkas ini bukan foto' in response.text
    assert 'value="Mbah Karto"' in response.text
    assert await inbound(by_text(marker)) == []


async def test_the_kiosk_ties_each_error_to_its_field_and_lists_them_with_links(client: httpx.AsyncClient) -> None:
    """A screen reader on the kiosk hears which field is wrong and why, as on the web form."""
    response = await client.post(KIOSK, data={"text": "pendek", "on_behalf": "true"})

    assert response.status_code == 422
    page = response.text
    assert 'aria-invalid="true" aria-describedby="officer-error"' in page
    assert 'aria-invalid="true" aria-describedby="text-error text-hint"' in page
    assert '<a href="#officer">Nama petugas desa: Tulis nama petugas desa' in page
    assert '<a href="#text">Isi keluhan:' in page
    assert 'id="name" name="name"' in page and 'value=""' in page  # the untouched fields carry no error


async def test_a_flood_of_photos_is_refused_past_the_pods_hourly_budget_while_complaints_go_on(
    serve: ServeApp, app_settings: Settings, inbound: ReadInbound
) -> None:
    """Photos fill the database's disk; past the pod's hourly budget they are refused, the citizen told to send
    without them or later, and a complaint without photos is filed as ever."""
    marker = uuid.uuid4().hex
    tight = app_settings.model_copy(update={"web_photo_bytes_per_hour": len(JPEG) * 3 // 2})  # one photo and a half
    refused_before = REGISTRY.get_sample_value("suara_web_photos_total", {"outcome": "budget"}) or 0
    async with serve(tight) as http:
        # A form that comes back for its text keeps nothing, so it spends none of the budget.
        to_fix = await http.post("/lapor", data={"text": "pendek"}, files=_photos(("a.jpg", JPEG, "image/jpeg")))
        assert to_fix.status_code == 422
        first = await http.post(
            "/lapor", data={"text": f"{COMPLAINT} {marker} 1"}, files=_photos(("a.jpg", JPEG, "image/jpeg"))
        )
        second = await http.post(
            "/lapor", data={"text": f"{COMPLAINT} {marker} 2"}, files=_photos(("b.jpg", JPEG, "image/jpeg"))
        )
        without = await http.post("/lapor", data={"text": f"{COMPLAINT} {marker} 3"})

    assert (first.status_code, second.status_code, without.status_code) == (303, 422, 303)
    assert 'id="foto-error">Foto sedang tidak dapat diterima' in second.text
    assert REGISTRY.get_sample_value("suara_web_photos_total", {"outcome": "budget"}) == refused_before + 1
    events = sorted((e.text or "")[-1:] + str(len(e.attachments)) for _, _, e in await inbound(by_text(marker)))
    assert events == ["11", "30"]


def test_the_photo_budget_refills_over_the_hour() -> None:
    now = [0.0]
    budget = photos.ByteBudget(3600, clock=lambda: now[0])
    assert budget.take(3000) and not budget.take(1000)
    now[0] += 400  # 400 bytes back
    assert budget.take(1000) and not budget.take(1)
    now[0] += 10_000  # never more than an hour's worth
    assert budget.take(3600) and not budget.take(1)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xdb" + bytes(12), "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "image/png"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "image/heic"),  # an iPhone's photo
        (b"\x00\x00\x00\x18ftypmp42\x00\x00", None),  # a video
        (b"GIF89a" + bytes(10), None),
        (b"<svg xmlns=", None),  # could carry a script
        (b"%PDF-1.7", None),
    ],
)
def test_a_photo_is_known_by_its_first_bytes(head: bytes, expected: str | None) -> None:
    assert photos.image_type(head) == expected


async def test_the_kiosk_refuses_a_complaint_whole_while_its_photos_cannot_be_kept_or_it_cannot_be_published(
    serve: ServeApp, app_settings: Settings, inbound: ReadInbound, client_without_broker: httpx.AsyncClient
) -> None:
    """The officer is told to try again, choosing the photo again; nothing reaches the desk in part."""
    marker = uuid.uuid4().hex
    no_database = app_settings.model_copy(update={"mongodb_uri": f"mongodb://127.0.0.1:{free_port()}/suara"})
    async with serve(no_database) as http:
        no_photos_kept = await http.post(
            KIOSK, data={"text": f"{COMPLAINT} {marker}"}, files=_photos(("a.jpg", JPEG, "image/jpeg"))
        )
    not_published = await client_without_broker.post(
        KIOSK, data={"text": f"{COMPLAINT} {marker}"}, files=_photos(("a.jpg", JPEG, "image/jpeg"))
    )

    for answer in (no_photos_kept, not_published):
        assert answer.status_code == 503
        assert "foto perlu dipilih lagi" in answer.text
        assert _textarea(answer.text) == f"{COMPLAINT} {marker}"
    assert await inbound(by_text(marker)) == []
