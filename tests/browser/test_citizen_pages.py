"""The citizen's pages in a real browser at a cheap phone's width: the form, then the status page with the
acknowledgement naming the reference."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import FilePayload, Page, expect

from suara_devstack.stack import Stack
from suara_devstack.testing import eventually, url

pytestmark = pytest.mark.e2e
PageFactory = Callable[..., Awaitable[Page]]
#: Generous for a loaded, shared machine (the same bound conftest.py gives Playwright's waits).
WAIT_MS = 60_000
PHONE_WIDTH = 360
HEADERS = {"Authorization": "Bearer dev-only-admin-token"}


async def test_a_citizen_files_the_form_on_a_phone_and_sees_the_acknowledgement(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    page = await open_page(width=PHONE_WIDTH, height=740)
    await page.goto(url(stack, "ingest-social", "/"))
    await expect(page.get_by_role("heading", name="Sampaikan keluhan Anda")).to_be_visible()
    # Readable at 360 px: nothing sticks out sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH
    await page.screenshot(path=screenshot("citizen-form-360"), full_page=True)

    tag = secrets.token_hex(4)
    await page.get_by_label("Isi keluhan (wajib)").fill(
        f"Sampah menumpuk di pasar Desa Pandean sejak seminggu ({tag})."
    )
    await page.get_by_label("Kecamatan").select_option("Rembang")
    await page.get_by_label("Desa/Kelurahan").fill("Pandean")
    await page.get_by_label("Nama").fill("Dewi")
    await page.get_by_role("button", name="Kirim laporan").click()

    # The page waits (refreshing itself) until ticketing recorded the complaint, then shows the acknowledgement.
    await expect(page.get_by_text("Tanda terima")).to_be_visible()
    reference = await page.locator("dd").first.inner_text()
    assert re.fullmatch(r"RMB-\d{4}-\d{6}", reference)
    await expect(page.locator(".replies")).to_contain_text(f"cek {reference}")
    await page.screenshot(path=screenshot("citizen-status-360"), full_page=True)


async def test_a_village_officer_files_at_the_kiosk_for_a_citizen_and_the_kiosk_resets(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    page = await open_page(width=1024, height=768)
    await page.goto(url(stack, "ingest-social", "/kiosk/33.17.10.2034"))
    await expect(page.locator(".place")).to_contain_text("Kecamatan Rembang, Desa/Kelurahan Tireman")
    send = page.get_by_role("button", name="Kirim laporan")
    assert (await send.bounding_box() or {}).get("height", 0) >= 48, "touch targets must be large"
    await screenshot_kiosk(page, screenshot)

    tag = secrets.token_hex(4)
    await page.get_by_label("Isi keluhan (wajib)").fill(f"Saluran air depan balai desa tersumbat ({tag}).")
    await page.get_by_label("Nama warga (tidak wajib)").fill("Mbah Karto")
    await page.get_by_label("Diisi oleh petugas desa atas nama warga").check()
    await page.get_by_label("Nama petugas desa").fill("Pak Sekdes")
    photo = base64.b64decode(
        (
            await page.evaluate(
                """() => { const c = document.createElement("canvas"); c.width = 48; c.height = 32;
                c.getContext("2d").fillRect(0, 0, 48, 32); return c.toDataURL("image/jpeg"); }"""
            )
        ).split(",", 1)[1]
    )
    await page.get_by_label("Foto (tidak wajib, paling banyak 3)").set_input_files(
        [FilePayload(name="saluran.jpg", mimeType="image/jpeg", buffer=photo)]
    )
    await send.click()
    await expect(page.get_by_role("heading", name="Terima kasih, laporan sudah terkirim")).to_be_visible()

    # The ticket carries the kiosk's desa and says where it was filed.
    async with httpx.AsyncClient(timeout=30) as http:

        async def listed() -> dict | None:
            answer = await http.get(url(stack, "ticketing", "/api/v1/tickets"), headers=HEADERS, params={"q": tag})
            items = answer.json()["items"] if answer.status_code == 200 else []
            return items[0] if items else None

        ticket = await eventually(listed, within=WAIT_MS / 1000, what="the kiosk's ticket")
        assert (ticket["kecamatan"], ticket["desa"], ticket["source"]) == ("Rembang", "Tireman", "kiosk")
        assert ticket["citizen"]["display_name"] == "Mbah Karto"
        # The photo the tablet took is on the ticket for the desk.
        reference = ticket["reference"]
        full = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=HEADERS)).json()
        (attachment,) = full["messages"][0]["attachments"]
        shown = await http.get(
            url(stack, "ticketing", f"/api/v1/tickets/{reference}/media/{attachment['media_id']}"), headers=HEADERS
        )
        assert shown.status_code == 200 and shown.content == photo

    # The thank-you screen shows the complaint's reference as soon as ticketing gave it one, with how to follow it
    # from the citizen's own phone; nothing on it leads out of the kiosk.
    await expect(page.locator(".reference")).to_have_text(reference)
    await expect(page.locator("#reference-known")).to_contain_text(f"cek {reference}")
    await page.screenshot(path=screenshot("kiosk-done"), full_page=True)
    links = await page.locator("a[href]").evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert all(href.startswith(("/kiosk/33.17.10.2034", "#")) for href in links), links
    # It returns to an empty form by itself.
    await expect(page.get_by_label("Isi keluhan (wajib)")).to_have_value("")
    await expect(page.get_by_label("Nama petugas desa")).to_have_value("")


async def screenshot_kiosk(page: Page, screenshot: Callable[[str], Path]) -> None:
    await page.screenshot(path=screenshot("kiosk"), full_page=True)


async def test_the_sandbox_demo_page_shows_the_phones_side_by_side(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    page = await open_page(width=1400, height=900)
    await page.goto(url(stack, "sandbox", "/demo"))
    for name in ("WhatsApp", "Messenger", "Instagram", "X"):
        await expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    await expect(page.locator("iframe[title='Ponsel WhatsApp']")).to_be_visible()
    await expect(page.get_by_role("link", name="konsol petugas")).to_have_attribute(
        "href", url(stack, "ticketing", "/console/")
    )
    await page.screenshot(path=screenshot("sandbox-demo"))
