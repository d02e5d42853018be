"""The citizen form at `/` and its POST to `/lapor`, as a browser without JavaScript uses them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import httpx

from suara_ingest_social.web.models import KECAMATAN
from suara_shared.events import InboundMessage

#: The `inbound` fixture: INBOUND records (key, stored bytes, event) whose event matches.
ReadInbound = Callable[[Callable[[InboundMessage], bool]], Awaitable[list[tuple[bytes | None, bytes, InboundMessage]]]]


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
