"""The response team's console in a real browser, against every service as a process: sign in, filter, open a
ticket a WhatsApp message created, reply and watch the tick turn to delivered, see new messages arrive live."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import FilePayload, Page, expect

from suara_devstack.stack import Stack
from suara_devstack.testing import eventually, url
from suara_ticketing.deadlines import WIB

pytestmark = pytest.mark.e2e
PageFactory = Callable[..., Awaitable[Page]]
#: Generous for a loaded, shared machine (the same bound conftest.py gives Playwright's waits).
WAIT_MS = 60_000
TOKEN = "dev-only-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _number() -> str:
    return "62812" + "".join(str(secrets.randbelow(10)) for _ in range(8))


async def _citizen_writes(stack: Stack, number: str, text: str) -> None:
    """A citizen types on the sandbox's WhatsApp phone: a signed webhook reaches ingest-wa."""
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(
            url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{number}/messages"), json={"name": "Siti", "text": text}
        )
        assert sent.status_code == 202, sent.text


async def _ticket_with(stack: Stack, tag: str) -> dict:
    async with httpx.AsyncClient(timeout=30) as http:

        async def listed() -> dict | None:
            answer = await http.get(url(stack, "ticketing", "/api/v1/tickets"), headers=HEADERS, params={"q": tag})
            items = answer.json()["items"] if answer.status_code == 200 else []
            return items[0] if items else None

        return await eventually(listed, within=WAIT_MS / 1000, what=f"the ticket of {tag}")


async def _sign_in(page: Page, stack: Stack) -> None:
    await page.goto(url(stack, "ticketing", "/console/"))
    await page.get_by_label("Token akses").fill(TOKEN)
    await page.get_by_role("button", name="Masuk").click()
    await expect(page.locator("#who")).to_contain_text("admin")
    await expect(page.get_by_role("heading", name="Kotak masuk")).to_be_visible()


async def test_sign_in_filter_open_a_whatsapp_ticket_reply_and_see_it_delivered(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    tag = secrets.token_hex(4)
    number = _number()
    await _citizen_writes(stack, number, f"Jalan berlubang besar di Desa Tireman dekat balai desa, kode {tag}")
    ticket = await _ticket_with(stack, tag)
    reference = ticket["reference"]

    page = await open_page()
    await _sign_in(page, stack)
    await expect(page.locator("#counts")).to_contain_text("Semua tiket")

    # Only WhatsApp tickets once the channel filter is set; then the search narrows to this citizen's.
    await page.locator("#filters select[name=channel]").select_option("whatsapp")
    await expect(page.locator("#rows tr").first).to_be_visible()
    await expect(page.locator("#rows .ch:not(.ch-whatsapp)")).to_have_count(0)
    await page.locator("#filters input[name=q]").fill(tag)
    row = page.locator(f"#rows tr[data-reference='{reference}']")
    await expect(row).to_be_visible()
    await expect(page.locator("#rows tr")).to_have_count(1)
    await expect(row).to_contain_text(tag)
    # The dates are days in Rembang: the ticket is in its own day's, not in the day before's.
    day = datetime.fromisoformat(ticket["created_at"]).astimezone(WIB).date()
    until = page.get_by_label("Sampai tanggal")
    await until.fill((day - timedelta(days=1)).isoformat())
    await expect(page.locator("#shown")).to_have_text("0 tiket ditampilkan")
    await page.get_by_label("Dari tanggal").fill(day.isoformat())
    await until.fill(day.isoformat())
    await expect(row).to_be_visible()
    await expect(page.locator("#rows tr")).to_have_count(1)
    await until.fill("")
    await page.get_by_label("Dari tanggal").fill("")
    # The number a caller gives on the telephone finds their ticket, typed the way people say it.
    typed = f"0{number[2:5]}-{number[5:9]}-{number[9:]}"
    async with page.expect_response(lambda r: "/api/v1/tickets?" in r.url and f"q={typed}" in r.url) as searched:
        await page.locator("#filters input[name=q]").fill(typed)
    assert [t["reference"] for t in (await (await searched.value).json())["items"]] == [reference]
    await expect(page.locator("#rows tr")).to_have_count(1)
    await expect(row).to_be_visible()
    await page.locator("#filters input[name=q]").fill("")
    await expect(page.locator("#rows tr").first).to_be_visible()
    await page.screenshot(path=screenshot("console-inbox"), full_page=True)

    await page.locator("#filters input[name=q]").fill(tag)
    await row.click()
    await expect(page.locator("#t-title")).to_contain_text(reference)
    inbound = page.locator("#conversation li.msg.inbound", has_text=tag)
    await expect(inbound).to_be_visible()
    await expect(inbound.locator(".ch-whatsapp")).to_be_visible()
    # The acknowledgement Suara sent by itself is in the conversation with its tick.
    await expect(page.locator("#conversation li.msg.outbound").first).to_contain_text(reference)

    answer = f"Terima kasih, petugas DPUPR akan menambal jalan itu minggu ini ({tag})."
    await page.get_by_label("Pesan", exact=True).fill(answer)
    await page.get_by_role("button", name="Kirim", exact=True).click()
    reply = page.locator("#conversation li.msg.outbound", has_text=answer)
    await expect(reply).to_be_visible()
    # The sandbox's phone reports sent, delivered, read: the console shows the double tick without a reload.
    await expect(reply.locator(".tick")).to_have_attribute("data-status", re.compile("^(delivered|read)$"))
    await expect(reply.locator(".tick")).to_have_text("✓✓")
    # The audit trail in words: where the ticket came from, who answered.
    await expect(page.locator("#audit li[data-type=created]")).to_contain_text("Tiket dibuat dari WhatsApp · system")
    await expect(page.locator("#audit li[data-type=reply_queued]")).to_contain_text(
        "Balasan ke warga · Status: Baru → Diproses · admin"
    )
    # Handling and a disposition, each in the trail as what changed, from what to what, and why.
    controls = page.locator("#controls")
    await controls.locator("select[name=priority]").select_option("low")
    await controls.locator("input[name=assignee]").fill("sari")
    await controls.get_by_role("button", name="Simpan").click()
    updated = page.locator("#audit li[data-type=updated]").last
    await expect(updated).to_contain_text(re.compile(r"Petugas: \S+ → sari"))
    await expect(updated).to_contain_text(re.compile(r"Prioritas: \S+ → Rendah"))
    disposition = page.locator("#disposition")
    await disposition.locator("select[name=action]").select_option("extend")
    await disposition.locator("input[name=working_days]").fill("2")
    await disposition.locator("input[name=reason]").fill("menunggu aspal")
    await disposition.get_by_role("button", name="Terapkan").click()
    extended = page.locator("#audit li[data-type=disposition]")
    await expect(extended).to_contain_text("Tenggat diperpanjang 2 hari kerja")
    await expect(extended).to_contain_text("Alasan: menunggu aspal · admin")
    await page.screenshot(path=screenshot("console-ticket"), full_page=True)

    async with httpx.AsyncClient(timeout=30) as http:
        phone = (await http.get(url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{number}"))).json()
    assert answer in str(phone), "the citizen's phone never got the reply"

    # The English switch relabels the console.
    await page.get_by_role("button", name="English").click()
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    await expect(page.locator("#audit").locator("..")).to_contain_text("Audit trail")
    await expect(page.locator("#filters input[name=q]")).to_have_attribute(
        "placeholder", "Words of the complaint, name, reference or phone number"
    )
    await page.get_by_role("button", name="Bahasa Indonesia").click()


async def test_the_agents_unsaved_work_survives_what_happens_around_it_and_goes_where_it_was_meant(
    stack: Stack, open_page: PageFactory
) -> None:
    """A desk all day: the citizen writes while the agent edits a canned answer and the handling, a double click,
    a draft left for another ticket, a mistyped reference, a close by mistake, a change the lifecycle refuses."""
    tag, other_tag = secrets.token_hex(4), secrets.token_hex(4)
    number, other_number = _number(), _number()
    await _citizen_writes(stack, number, f"Lampu jalan di Desa Leteh mati sejak seminggu, kode {tag}")
    await _citizen_writes(stack, other_number, f"Sampah menumpuk di Pasar Kragan, kode {other_tag}")
    reference = (await _ticket_with(stack, tag))["reference"]
    other = (await _ticket_with(stack, other_tag))["reference"]
    title = f"Diteruskan {tag}"
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            url(stack, "ticketing", "/api/v1/canned-responses"),
            headers=HEADERS,
            json={"title": title, "text": "Laporan {reference} sudah kami teruskan ke dinas terkait."},
        )
        assert created.status_code == 201, created.text

    page = await open_page()
    await _sign_in(page, stack)
    await page.goto(url(stack, "ticketing", f"/console/#/ticket/{reference}"))
    await expect(page.locator("#t-title")).to_contain_text(reference)
    await page.get_by_label("Jawaban siap pakai").select_option(label=title)
    message = page.get_by_label("Pesan", exact=True)
    await expect(message).to_have_value(re.compile(r"\{reference\}"))
    await message.press("End")
    await message.type(" Terima kasih.")
    controls = page.locator("#controls")
    await controls.locator("select[name=priority]").select_option("urgent")
    await controls.locator("input[name=assignee]").fill("budi")

    # The citizen writes again: the ticket reloads by itself, and nothing the agent has not saved is lost.
    await _citizen_writes(stack, number, f"Sekarang dua lampu yang mati ({tag})")
    await expect(page.locator("#conversation li.msg.inbound", has_text="dua lampu")).to_be_visible()
    await expect(controls.locator("select[name=priority]")).to_have_value("urgent")
    await expect(controls.locator("input[name=assignee]")).to_have_value("budi")
    await expect(message).to_have_value(re.compile(r"dinas terkait\. Terima kasih\.$"))

    # A double click sends one reply, its placeholder filled in for this ticket.
    await page.get_by_role("button", name="Kirim", exact=True).dblclick()
    sent = f"Laporan {reference} sudah kami teruskan ke dinas terkait. Terima kasih."
    await expect(page.locator("#conversation li.msg.outbound", has_text=sent)).to_have_count(1)
    await expect(message).to_have_value("")
    async with httpx.AsyncClient(timeout=30) as http:

        async def on_phone() -> list[str] | None:
            phone = (await http.get(url(stack, "sandbox", f"/_sandbox/whatsapp/phones/{number}"))).json()
            texts = [m["text"] for m in phone["messages"] if "sudah kami teruskan" in (m["text"] or "")]
            return texts or None

        received = await eventually(on_phone, within=WAIT_MS / 1000, what="the reply on the citizen's phone")
        ticket = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=HEADERS)).json()
    assert len(received) == 1 and reference in received[0] and "{" not in received[0]
    assert [m["text"] for m in ticket["messages"] if m.get("purpose") == "agent_reply"] == [sent]

    # Only the statuses the lifecycle allows are offered; a refusal is said in the desk's language.
    await expect(controls.locator("select[name=status] option[value=new]")).to_be_disabled()
    await expect(controls.locator("select[name=status] option[value=resolved]")).to_be_enabled()
    merge = page.locator("#merge")
    await merge.locator("input[name=references]").fill(reference)  # into itself
    await merge.get_by_role("button", name="Gabungkan ke tiket ini").click()
    await expect(page.locator("#merge-error")).to_have_text("Laporan itu tidak bisa digabungkan ke tiket ini.")
    # Closing by mistake: the agent is asked, says no, and the ticket stays as it was.
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await controls.locator("select[name=status]").select_option("closed")
    await controls.get_by_role("button", name="Simpan").click()
    async with httpx.AsyncClient(timeout=30) as http:
        ticket = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=HEADERS)).json()
    assert ticket["status"] == "open"

    # A draft for this citizen does not follow the agent to the next ticket.
    await message.fill("Mohon kirim foto lampunya, Bu.")
    await page.goto(url(stack, "ticketing", f"/console/#/ticket/{other}"))
    await expect(page.locator("#t-title")).to_contain_text(other)
    await expect(page.get_by_label("Pesan", exact=True)).to_have_value("")
    # A mistyped reference shows that it is not there, not the last ticket under the new address.
    await page.goto(url(stack, "ticketing", "/console/#/ticket/RMB-2026-999999"))
    await expect(page.locator("#t-error")).to_have_text(
        "Tiket RMB-2026-999999 tidak ditemukan, atau bukan untuk dinas Anda."
    )
    await expect(page.locator("#reply-form")).to_be_hidden()
    await expect(page.locator("#conversation li")).to_have_count(0)
    await expect(page.locator("#t-title")).to_be_empty()

    # Closing, meant this time: the ticket then takes nothing more, and says why.
    await page.goto(url(stack, "ticketing", f"/console/#/ticket/{other}"))
    await expect(page.locator("#t-title")).to_contain_text(other)
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await controls.locator("select[name=status]").select_option("closed")
    await controls.get_by_role("button", name="Simpan").click()
    await expect(page.locator("#closed-note")).to_be_visible()
    await expect(page.get_by_label("Pesan", exact=True)).to_be_disabled()
    await expect(controls.get_by_role("button", name="Simpan")).to_be_disabled()


async def test_an_agencys_agent_hands_a_ticket_on_by_a_disposition_not_by_the_department_control(
    stack: Stack, open_page: PageFactory
) -> None:
    """An agent of DPUPR may not move a ticket to another department by the control (the API refuses it): the
    console does not offer it, and says how instead."""
    tag = secrets.token_hex(4)
    await _citizen_writes(stack, _number(), f"Jalan berlubang besar di Desa Leteh, kode {tag}")
    ticket = await _ticket_with(stack, tag)
    assert ticket["department"] == "DPUPR"
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            url(stack, "ticketing", "/api/v1/tokens"),
            headers=HEADERS,
            json={"name": f"agen-{tag}", "role": "agent", "department": "DPUPR"},
        )
        assert created.status_code == 201, created.text
    page = await open_page()
    await page.goto(url(stack, "ticketing", "/console/"))
    await page.get_by_label("Token akses").fill(created.json()["token"])
    await page.get_by_role("button", name="Masuk").click()
    await expect(page.locator("#who")).to_contain_text("agent · DPUPR")
    await page.goto(url(stack, "ticketing", f"/console/#/ticket/{ticket['reference']}"))
    await expect(page.locator("#t-title")).to_contain_text(ticket["reference"])

    department = page.locator("#controls select[name=department]")
    await expect(department).to_be_disabled()
    await expect(department).to_have_attribute("title", re.compile("lewat Disposisi"))
    await expect(page.locator("#controls select[name=priority]")).to_be_enabled()
    await expect(page.locator("#disposition select[name=department]")).to_be_enabled()


async def test_a_new_whatsapp_message_appears_in_the_inbox_without_a_reload(
    stack: Stack, open_page: PageFactory
) -> None:
    page = await open_page()
    await page.clock.install()  # time flows as usual; the test moves it on to the counts' next turn
    await _sign_in(page, stack)
    await expect(page.locator("#live")).to_be_visible()
    await page.evaluate("window.__stillTheSamePage = true")
    total = page.locator("#counts .count b").first
    await expect(total).to_have_text(re.compile(r"^\d+$"))
    before = int(await total.inner_text())

    tag = secrets.token_hex(4)
    await _citizen_writes(stack, _number(), f"Air PDAM di Desa Sumberjo tidak mengalir sejak kemarin, kode {tag}")
    await expect(page.locator("#rows tr", has_text=tag)).to_be_visible()
    assert await page.evaluate("window.__stillTheSamePage === true"), "the page was reloaded"
    # The counts above the list follow at most 30 s after a change (they read every ticket): the new one counts.
    await page.clock.fast_forward(30_000)
    await expect(total).not_to_have_text(str(before))
    assert int(await total.inner_text()) > before


async def test_an_answer_that_never_reached_the_citizen_stands_out_until_the_agent_answers_again(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    """WhatsApp reports the acknowledgement undeliverable (131026): the inbox counts it, marks its row and lists it
    on a click; the ticket says what failed; an agent's new answer clears it, live."""
    tag = secrets.token_hex(4)
    number = _number()
    async with httpx.AsyncClient(timeout=30) as http:
        scripted = await http.post(
            url(stack, "sandbox", f"/_sandbox/whatsapp/recipients/{number}/script"), json={"failures": [131026]}
        )
        assert scripted.status_code == 200, scripted.text
    await _citizen_writes(stack, number, f"Sampah menumpuk di pasar Kragan, kode {tag}")
    reference = (await _ticket_with(stack, tag))["reference"]

    page = await open_page()
    await _sign_in(page, stack)
    row = page.locator(f"#rows tr[data-reference='{reference}']")
    await expect(row.locator(".badge.failed")).to_have_text("✗ Balasan gagal")
    await expect(page.locator("#count-undelivered")).to_have_class(re.compile(r"\bfailed\b"))
    await page.locator("#count-undelivered").click()
    await expect(page.locator("#filters select[name=undelivered]")).to_have_value("true")
    await expect(row).to_be_visible()
    await expect(page.locator("#rows tr:not(:has(.badge.failed))")).to_have_count(0)
    await page.screenshot(path=screenshot("console-undelivered"), full_page=True)

    await row.click()
    warning = page.locator("#undelivered-warning")
    await expect(warning).to_have_text(re.compile(r"^Tanda terima terakhir tidak sampai ke warga \(kode 131026\)"))
    await page.screenshot(path=screenshot("console-undelivered-ticket"), full_page=True)
    await page.get_by_label("Pesan", exact=True).fill(f"Nomor laporan Anda {reference}. Petugas DLH segera datang.")
    await page.get_by_role("button", name="Kirim", exact=True).click()
    await expect(warning).to_be_hidden()
    await page.get_by_role("link", name="← Kotak masuk").click()
    await expect(page.locator("#rows tr")).to_have_count(0)  # the filter is still on: nothing failed now
    await page.locator("#filters select[name=undelivered]").select_option("")
    await expect(row).to_be_visible()
    await expect(row.locator(".badge.failed")).to_have_count(0)


async def test_a_comment_the_citizen_edited_then_removed_shows_both_and_the_reply_box_says_it_cannot_go_under_it(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    """On Facebook the citizen edits their comment, then removes it: the agent reads the new words with the old
    ones kept, sees the comment marked removed, and is told before replying that there is nothing to reply under."""
    tag = secrets.token_hex(4)
    original = f"Lampu jalan di Desa Pasarbanggi mati, kode {tag}"
    edited = f"Lampu jalan di Desa Pasarbanggi mati tiga titik, kode {tag}"
    async with httpx.AsyncClient(timeout=30) as http:
        posted = await http.post(
            url(stack, "sandbox", "/_sandbox/social/facebook_comment"), json={"name": "Rini", "text": original}
        )
        assert posted.status_code == 201, posted.text
        reference = (await _ticket_with(stack, tag))["reference"]
        comment = url(stack, "sandbox", f"/_sandbox/social/comments/{posted.json()['id']}")
        assert (await http.put(comment, json={"text": edited})).status_code == 200
        assert (await http.delete(comment)).status_code == 200

        async def removed() -> bool:
            ticket = (await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=HEADERS)).json()
            return any(m.get("removed") for m in ticket["messages"])

        await eventually(removed, within=WAIT_MS / 1000, what="the comment marked removed")

    page = await open_page()
    await _sign_in(page, stack)
    await page.goto(url(stack, "ticketing", f"/console/#/ticket/{reference}"))
    message = page.locator("#conversation li.msg.inbound")
    await expect(message.locator(".text").first).to_have_text(edited)
    await expect(message).to_have_class(re.compile(r"\bremoved\b"))
    await expect(message.locator(".badge.removed")).to_have_text("🗑 Dihapus warga")
    await message.locator(".edits summary").click()
    await expect(message.locator(".edits .before s")).to_have_text(original)
    warning = page.locator("#window-warning")
    await expect(warning).to_have_text(re.compile(r"^Warga sudah menghapus komentarnya"))
    await page.screenshot(path=screenshot("console-comment-removed"), full_page=True)


async def _jpeg(page: Page, width: int, height: int) -> bytes:
    """A real JPEG the browser drew (a red patch), as a phone's camera would give one."""
    data_url = await page.evaluate(
        """([w, h]) => { const c = document.createElement("canvas"); c.width = w; c.height = h;
        const g = c.getContext("2d"); g.fillStyle = "#c53030"; g.fillRect(0, 0, w, h);
        return c.toDataURL("image/jpeg", 0.9); }""",
        [width, height],
    )
    return base64.b64decode(data_url.split(",", 1)[1])


async def test_photos_from_the_web_form_and_from_messenger_show_on_their_tickets(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    """A citizen attaches a photo to the web form on a phone; another sends one on Messenger, whose link expires
    within days. The desk agent sees both pictures on their tickets, the Messenger one after its link expired."""
    phone = await open_page(width=360, height=740)
    await phone.goto(url(stack, "ingest-social", "/"))
    web_photo, messenger_photo = await _jpeg(phone, 64, 48), await _jpeg(phone, 40, 30)
    web_tag, messenger_tag = secrets.token_hex(4), secrets.token_hex(4)
    await phone.get_by_label("Isi keluhan (wajib)").fill(f"Jalan berlubang di depan SD Negeri Tireman ({web_tag}).")
    await phone.get_by_label("Foto (tidak wajib)").set_input_files(
        [FilePayload(name="lubang.jpg", mimeType="image/jpeg", buffer=web_photo)]
    )
    await phone.get_by_role("button", name="Kirim laporan").click()
    await expect(phone.get_by_text("Tanda terima")).to_be_visible()

    async with httpx.AsyncClient(timeout=30) as http:
        uploaded = await http.post(
            url(stack, "sandbox", "/_sandbox/social/media"),
            content=messenger_photo,
            headers={"Content-Type": "image/jpeg"},
        )
        file_id = uploaded.json()["id"]
        sent = await http.post(
            url(stack, "sandbox", "/_sandbox/social/facebook_message"),
            json={"name": "Rudi", "text": f"Lampu jalan mati ({messenger_tag})", "file_id": file_id},
        )
        assert sent.status_code == 201, sent.text
        references = {tag: (await _ticket_with(stack, tag))["reference"] for tag in (web_tag, messenger_tag)}

        ticket = (
            await http.get(url(stack, "ticketing", f"/api/v1/tickets/{references[messenger_tag]}"), headers=HEADERS)
        ).json()
        media = (
            f"/api/v1/tickets/{references[messenger_tag]}/media/{ticket['messages'][0]['attachments'][0]['media_id']}"
        )

        async def kept() -> bool:
            state = (await http.get(url(stack, "sandbox", f"/_sandbox/social/media/{file_id}"))).json()
            return (
                bool(state["downloads"])
                and (await http.get(url(stack, "ticketing", media), headers=HEADERS)).is_success
            )

        await eventually(kept, within=WAIT_MS / 1000, what="the Messenger photo kept from its link")
        assert (await http.delete(url(stack, "sandbox", f"/_sandbox/social/media/{file_id}"))).status_code == 200

    page = await open_page()
    await _sign_in(page, stack)
    for tag, width in ((web_tag, 64), (messenger_tag, 40)):
        await page.goto(url(stack, "ticketing", f"/console/#/ticket/{references[tag]}"))
        await expect(page.locator("#conversation")).to_contain_text(tag)
        image = page.locator("#conversation li.msg.inbound .attachment img")
        await expect(image).to_be_visible()
        assert await image.evaluate("async img => { await img.decode(); return img.naturalWidth; }") == width
        await page.screenshot(path=screenshot(f"console-photo-{'web' if tag == web_tag else 'messenger'}"))
    # The agent saves the web form's photo to forward it to the agency: the very file, under the citizen's name.
    await page.goto(url(stack, "ticketing", f"/console/#/ticket/{references[web_tag]}"))
    await expect(page.locator("#conversation")).to_contain_text(web_tag)
    async with page.expect_download() as saving:
        await page.get_by_role("button", name="Unduh image (lubang.jpg)").click()
    saved = await saving.value
    assert saved.suggested_filename == "lubang.jpg"
    assert await asyncio.to_thread(Path(await saved.path()).read_bytes) == web_photo


async def test_the_figures_page_draws_its_charts(
    stack: Stack, open_page: PageFactory, screenshot: Callable[[str], Path]
) -> None:
    tag = secrets.token_hex(4)
    await _citizen_writes(stack, _number(), f"Lampu jalan di Kecamatan Lasem mati semua, kode {tag}")
    await _ticket_with(stack, tag)

    page = await open_page()
    await _sign_in(page, stack)
    await page.get_by_role("link", name="Angka").click()
    await expect(page.get_by_role("heading", name="Angka")).to_be_visible()
    volume = page.locator("#c-volume svg rect[fill='#147a3f']")
    await expect(volume.first).to_be_visible()
    await expect(page.locator("#c-kecamatan svg rect").first).to_be_visible()
    await expect(page.locator("#c-satisfaction svg text").first).to_be_visible()
    await expect(page.locator("#summary")).to_contain_text("Semua tiket")
    # Figures are written as the desk writes numbers: a decimal comma in Indonesian.
    assert await page.evaluate("number(1.25)") == "1,25"
    await page.screenshot(path=screenshot("console-figures"), full_page=True)


async def _settled(stack: Stack, reference: str) -> None:
    """Until the ticket has not changed for 3 s (a new one's acknowledgement is sent, delivered and read)."""
    async with httpx.AsyncClient(timeout=30) as http:
        seen: list[str] = []

        async def still() -> bool:
            answer = await http.get(url(stack, "ticketing", f"/api/v1/tickets/{reference}"), headers=HEADERS)
            seen.append(answer.json()["updated_at"])
            await asyncio.sleep(1)
            return len(seen) > 3 and len(set(seen[-4:])) == 1

        await eventually(still, within=WAIT_MS / 1000, what=f"{reference} settled")


#: Every API call the console makes, with the page's time (its clock is the test's): recorded before app.js runs.
LOG_CALLS = """
window.__calls = [];
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => {
  window.__calls.push({ at: Date.now(), path: String(input).replace(/^\\/api\\/v1/, "").split("?")[0] });
  return realFetch(input, init);
};
"""
COUNTS_EVERY_MS = 30_000  # app.js's COUNTS_MS
POLL_MS = 2_500  # app.js's POLL_MS


async def test_a_busy_minute_reloads_the_inbox_at_each_change_and_recounts_it_every_30_s_counting_the_last(
    stack: Stack, open_page: PageFactory
) -> None:
    """The counts above the inbox read every ticket (146 ms of the embedded database each at 10,000 tickets); asked
    at every refresh of every open console, they were the desk's largest cost in a busy hour. The list reloads at
    each change; the counts come when the inbox is shown, then at most every 30 s, always after the last change,
    and at once for a change after a quiet while. The page's clock is stopped, and moved on one poll at a time."""
    tag = secrets.token_hex(4)
    await _citizen_writes(stack, _number(), f"Lampu jalan di Desa Pasarbanggi mati sejak seminggu, kode {tag}")
    reference = (await _ticket_with(stack, tag))["reference"]
    await _settled(stack, reference)  # its acknowledgement's writes done: the changes below are the test's alone
    page = await open_page()
    await page.clock.install()
    await page.add_init_script(LOG_CALLS)
    await _sign_in(page, stack)
    await expect(page.locator("#live")).to_be_visible()
    await page.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    start = await page.evaluate("Date.now()")

    async def poll(*, change: bool) -> None:
        """One poll of the console, after a ticket changed (an agent's assignment) or not; back once it is done."""
        if change:
            async with httpx.AsyncClient(timeout=30) as http:
                ticket = url(stack, "ticketing", f"/api/v1/tickets/{reference}")
                name = "ani" + secrets.token_hex(2)
                changed = await http.patch(ticket, headers=HEADERS, json={"assignee": name})
                assert changed.status_code == 200, changed.text
        before = await page.evaluate("state.timer")
        await page.clock.fast_forward(POLL_MS)

        async def polled() -> bool:
            return bool(await page.evaluate("(before) => state.timer !== before", before))

        await eventually(polled, within=WAIT_MS / 1000, what="the console's next poll")

    for _ in range(24):  # a minute with a ticket changed before every poll
        await poll(change=True)
    busy_until = await page.evaluate("Date.now()")
    for _ in range(24):  # a quiet minute (at once: each answer looks 2 s back, and says the last change again)
        await poll(change=False)
    reloads = [c for c in await page.evaluate("window.__calls") if c["path"] == "/tickets" and c["at"] > busy_until]
    assert reloads == [], reloads  # a change said twice reloads the list once
    await poll(change=True)  # a change after the quiet while
    await page.clock.run_for(1)  # the counts it asks for at once (a timer of 0 ms; the clock is stopped)

    async def counted() -> bool:
        return bool(await page.evaluate("window.__calls.at(-1).path === '/stats/counts'"))

    await eventually(counted, within=WAIT_MS / 1000, what="the counts after the last change")
    calls: list[dict[str, Any]] = await page.evaluate("window.__calls")

    def at(path: str, since: float = start - COUNTS_EVERY_MS) -> list[float]:
        return [c["at"] for c in calls if c["path"] == path and c["at"] >= since]

    counts, lists = at("/stats/counts"), at("/tickets")
    assert len([t for t in lists if start < t <= busy_until]) >= 20  # every change reloads the list
    assert all(b - a >= COUNTS_EVERY_MS for a, b in itertools.pairwise(counts)), counts
    busy = [t for t in counts if start < t <= busy_until + COUNTS_EVERY_MS]
    assert 1 <= len(busy) <= 60_000 / COUNTS_EVERY_MS + 1, (busy, start)  # not 24
    last_change_seen = max(t for t in lists if t <= busy_until)
    assert last_change_seen <= busy[-1] <= last_change_seen + COUNTS_EVERY_MS  # the last change counted
    assert len(at("/stats/counts", since=busy[-1] + 1)) == 1  # quiet: nothing more, until the last change ...
    assert 0 <= at("/stats/counts")[-1] - at("/tickets")[-1] < POLL_MS  # ... counted at once after a quiet while
