"""A batch of inbound messages (what the consumer takes from one poll) is stored exactly as the same messages one by
one would be: the same tickets, the same conversation order, one acknowledgement each; and a crash part-way
through a batch loses nothing and doubles nothing when the batch comes again."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from suara_shared.events import Channel, DeliveryStatus, InboundMessage
from suara_ticketing import deliveries

from .conftest import App, outbound_for, web_message
from .conftest import whatsapp_message as whatsapp

REFERENCE = re.compile(r"RMB-\d{4}-\d{6}")


def scenario(tag: str) -> list[InboundMessage]:
    """A busy minute on one partition: new citizens, one writing twice, a status query, redeliveries."""
    a1 = whatsapp("Lampu jalan di Desa Sumberjo mati sejak minggu lalu", number=f"62812{tag}01")
    b1 = web_message("Sampah menumpuk di pasar Lasem", conversation=f"web-{tag}-b")
    a2 = whatsapp("Tambahan: sudah tiga tiang yang mati", number=f"62812{tag}01")
    status = whatsapp("cek RMB-2026-999999", number=f"62812{tag}03")
    d1 = whatsapp("Banjir di Kecamatan Kragan, air masuk rumah", number=f"62812{tag}04")
    d2 = whatsapp("Mohon bantuan segera", number=f"62812{tag}04")
    return [a1, b1, a2, status, d1, a1, b1, d2]


def _plain(text: str | None, references: dict[str, str]) -> str | None:
    return REFERENCE.sub(lambda found: references.get(found.group(0), found.group(0)), text) if text else text


async def snapshot(app: App, events: list[InboundMessage]) -> list[dict[str, Any]]:
    """Per conversation, in the scenario's order: its tickets with their conversation and audit trail, references
    replaced by their order of opening, so two runs can be compared."""
    conversations = list(dict.fromkeys(e.conversation_key for e in events))
    references: dict[str, str] = {}
    result = []
    for key in conversations:
        tickets = await app.service.tickets.find({"conversation_key": key}).sort("_id", 1).to_list(None)
        messages = await app.service.messages.find({"conversation_key": key}).sort("seq", 1).to_list(None)
        for ticket in tickets:
            references.setdefault(ticket["_id"], f"T{len(references)}")

        result.append(
            {
                "tickets": [
                    {
                        "reference": references[t["_id"]],
                        "status": t["status"],
                        "message_count": t["message_count"],
                        "department": t["department"],
                        "kecamatan": t["kecamatan"],
                        "events": [
                            e["type"]
                            for e in await app.service.events.find({"reference": t["_id"]}).sort("at", 1).to_list(None)
                        ],
                    }
                    for t in tickets
                ],
                "messages": [
                    {
                        "ticket": references.get(m["ticket"]) if m.get("ticket") else None,
                        "seq": m.get("seq"),
                        "direction": m["direction"],
                        "purpose": m.get("purpose"),
                        "text": _plain(m["text"], references),
                        "published": m.get("published"),
                        "window": m.get("window_expires_at") is not None,
                    }
                    for m in messages
                ],
            }
        )
    return result


async def test_a_batch_stores_what_the_same_messages_one_by_one_store(app: App) -> None:
    one_by_one = scenario("11")
    for event in one_by_one:
        await app.service.handle_inbound(event)
    batched = scenario("22")
    await app.service.handle_inbound_batch(batched)

    expected = await snapshot(app, one_by_one)
    got = await snapshot(app, batched)
    assert got == expected
    # What a citizen sees: three tickets, each acknowledged once; the second message joined the first's ticket.
    tickets = [t for conversation in got for t in conversation["tickets"]]
    assert len(tickets) == 3
    acks = [m for c in got for m in c["messages"] if m["purpose"] == "acknowledgement"]
    assert len(acks) == 3 and all(m["published"] for m in acks)
    first = got[0]
    assert [m["direction"] for m in first["messages"]] == ["inbound", "outbound", "inbound"]
    # The status query was answered, and opened nothing.
    assert got[2]["tickets"] == [] and got[2]["messages"][1]["purpose"] == "status"


async def test_acknowledgements_of_a_batch_reach_the_outbound_topic_once_each(app: App) -> None:
    events = [whatsapp(f"Jalan rusak nomor {i} di Desa Pandangan", number=f"6281399{i:05d}") for i in range(40)]
    await app.service.handle_inbound_batch(events)
    await app.service.handle_inbound_batch(events)  # the whole poll redelivered
    numbers = {e.sender.channel_user_id for e in events}
    acks = await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=40)
    assert sorted(a.recipient for a in acks) == sorted(numbers)
    references = {REFERENCE.search(a.text).group(0) for a in acks}  # type: ignore[union-attr]
    assert len(references) == 40
    # One step of the counter for the batch: the references are consecutive.
    numbers_of = sorted(int(r.rsplit("-", 1)[1]) for r in references)
    assert numbers_of == list(range(numbers_of[0], numbers_of[0] + 40))


def follow_ups(tag: str) -> tuple[list[InboundMessage], list[InboundMessage]]:
    """Two polls: citizens open tickets, then write again. In the second, one writes twice (the second time naming
    a kecamatan), one sends a bare "5" (no survey pending: a message like any other), one's ticket waits on them
    (pending: their message reopens it), one asks a status question and then adds a photo caption."""
    a, b, c, d = (f"62817{tag}{i}" for i in range(4))
    first = [
        whatsapp("Lampu penerangan jalan mati", number=a),
        whatsapp("Jalan berlubang dekat sekolah", number=b),
        whatsapp("Air PDAM tidak mengalir", number=c),
        whatsapp("Saluran irigasi jebol", number=d),
    ]
    second = [
        whatsapp("Sudah seminggu tidak menyala", number=a),
        whatsapp("5", number=b),
        whatsapp("Masih belum mengalir sampai sekarang", number=c),
        whatsapp("Lokasinya di Desa Dasun, Kecamatan Lasem", number=a),
        whatsapp("cek RMB-2026-999999", number=d),
        whatsapp("Sawah terendam", number=d),
    ]
    return first, second


async def test_follow_ups_in_a_batch_end_as_they_end_one_by_one(app: App) -> None:
    async def run(tag: str, handle: Any) -> list[InboundMessage]:
        first, second = follow_ups(tag)
        await app.service.handle_inbound_batch(first)
        pending = await app.service.tickets.find_one({"conversation_key": first[2].conversation_key})
        assert pending is not None
        await app.service.tickets.update_one({"_id": pending["_id"]}, {"$set": {"status": "pending"}})
        await handle(second)
        return [*first, *second]

    async def one_by_one(events: list[InboundMessage]) -> None:
        for event in events:
            await app.service.handle_inbound(event)

    expected = await snapshot(app, await run("1", one_by_one))
    got = await snapshot(app, await run("2", app.service.handle_inbound_batch))
    assert got == expected
    # What the desk sees: every message on its conversation's one ticket, in the order written, the place found.
    a = got[0]
    assert len(a["tickets"]) == 1 and a["tickets"][0]["message_count"] == 4
    assert [m["seq"] for m in a["messages"]] == [1, 2, 3, 4]
    assert a["tickets"][0]["kecamatan"] == "Lasem"
    assert a["tickets"][0]["events"].count("message_added") == 3
    assert got[2]["tickets"][0]["status"] == "open"  # reopened by the citizen's message


class _Counted:
    """A collection that counts the writes asked of it, by method."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name.startswith(("insert", "update", "bulk", "delete", "find_one_and")):

            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.writes[name] = self.writes.get(name, 0) + 1
                return await found(*args, **kwargs)

            return counted
        return found


async def test_follow_ups_in_a_batch_share_their_writes(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve follow-ups to six tickets: one numbering write per ticket, one insert of the messages and one of their
    audit events, instead of a dozen round trips each (what lets the desk keep up when citizens write twice)."""
    opening = [whatsapp(f"Sampah liar di RT {i}", number=f"62818550{i:04d}") for i in range(6)]
    await app.service.handle_inbound_batch(opening)
    later = [whatsapp(f"Foto menyusul {n} RT {i}", number=f"62818550{i:04d}") for n in (1, 2) for i in range(6)]
    counted = {name: _Counted(getattr(app.service, name)) for name in ("tickets", "messages", "events")}
    for name, collection in counted.items():
        monkeypatch.setattr(app.service, name, collection)
    await app.service.handle_inbound_batch(later)
    monkeypatch.undo()
    assert counted["tickets"].writes == {"update_one": 6}
    assert counted["messages"].writes == {"insert_many": 1}
    assert counted["events"].writes == {"insert_many": 1}
    for event in later:
        stored = await app.service.messages.find_one({"_id": event.dedup_key})
        assert stored is not None and stored["ticket"]


class _Renumbered:
    """The tickets, with an agent's reply numbered on each ticket right before a batch numbers its messages."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.replied: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def update_one(self, match: dict[str, Any], update: dict[str, Any], **kwargs: Any) -> Any:
        if "message_count" in match and match["_id"] not in self.replied:
            self.replied.add(match["_id"])
            await self.inner.update_one({"_id": match["_id"]}, {"$inc": {"message_count": 1}})
        return await self.inner.update_one(match, update, **kwargs)


async def test_a_follow_up_whose_ticket_was_numbered_meanwhile_keeps_its_place(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = follow_ups("3")
    await app.service.handle_inbound_batch(first)
    monkeypatch.setattr(app.service, "tickets", _Renumbered(app.service.tickets))
    await app.service.handle_inbound_batch([second[0], second[2]])
    monkeypatch.undo()
    for event in (second[0], second[2]):
        stored = await app.service.messages.find_one({"_id": event.dedup_key})
        assert stored is not None and stored["ticket"]
        ticket = await app.service.tickets.find_one({"_id": stored["ticket"]})
        assert ticket is not None
        # Numbered after the reply that came in between, never on top of it.
        numbers = [m["seq"] for m in await app.service.messages.find({"ticket": ticket["_id"]}).to_list(None)]
        assert len(numbers) == len(set(numbers)) and stored["seq"] == ticket["message_count"]


class _CrashOn:
    """A collection whose `insert_many` fails as a process killed at that moment would: nothing written."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def insert_many(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed")

    insert_one = insert_many


#: Where a batch can be cut short: one of its three writes, or the publication once everything is stored.
CRASH_POINTS = ["outbox", "events", "messages", "publisher"]


async def crash_then_recover(
    app: App, monkeypatch: pytest.MonkeyPatch, crash_at: str, events: list[InboundMessage]
) -> None:
    """The batch killed at `crash_at` (a write, or the publication after everything was stored), then taken again
    from the last commit, and the outbox relay run: nothing may be left in the outbox."""
    if crash_at == "publisher":

        async def killed(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("killed")

        monkeypatch.setattr(app.service.publisher, "send_raw", killed)
    else:
        monkeypatch.setattr(app.service, crash_at, _CrashOn(getattr(app.service, crash_at)))
    with pytest.raises(RuntimeError):
        await app.service.handle_inbound_batch(events)
    monkeypatch.undo()

    await app.service.handle_inbound_batch(events)  # the consumer restarts from the last commit
    await app.service.publish_outbox(older_than=timedelta(0))  # and the outbox relay runs
    assert await app.service.outbox.count_documents({}) == 0


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_batch_cut_short_by_a_crash_loses_nothing_and_doubles_nothing_when_it_comes_again(
    app: App, crash_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"6281477{CRASH_POINTS.index(crash_at) + 1}"
    events = [whatsapp(f"Saluran air tersumbat di RT {i}", number=f"{prefix}{i:04d}") for i in range(12)]
    await crash_then_recover(app, monkeypatch, crash_at, events)

    for event in events:
        stored = await app.service.messages.find({"_id": event.dedup_key}).to_list(None)
        assert len(stored) == 1 and stored[0]["ticket"], event.text
        open_tickets = await app.service.tickets.find({"conversation_key": event.conversation_key}).to_list(None)
        holding = [t for t in open_tickets if t["_id"] == stored[0]["ticket"]]
        assert len(holding) == 1
        acks = await app.service.messages.find({"ticket": stored[0]["ticket"], "purpose": "acknowledgement"}).to_list(
            None
        )
        assert len(acks) == 1 and acks[0]["published"] is True
    numbers = {e.sender.channel_user_id for e in events}
    on_topic = await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=12)
    # One acknowledgement per citizen (the notifier's ledger absorbs a record published twice by id).
    by_recipient: dict[str, set[str]] = {}
    for reply in on_topic:
        by_recipient.setdefault(reply.recipient, set()).add(reply.outbound_id)
    assert by_recipient.keys() == numbers and all(len(ids) == 1 for ids in by_recipient.values())


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_follow_ups_cut_short_by_a_crash_are_stored_once_in_order_when_they_come_again(
    app: App, crash_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"6281977{CRASH_POINTS.index(crash_at) + 1}"
    opening = [whatsapp(f"Pipa bocor di RT {i}", number=f"{prefix}{i:04d}") for i in range(6)]
    await app.service.handle_inbound_batch(opening)
    later = [whatsapp(f"Tambahan {n} untuk RT {i}", number=f"{prefix}{i:04d}") for n in (1, 2) for i in range(6)]
    await crash_then_recover(app, monkeypatch, crash_at, later)
    for event in opening:
        ticket = await app.service.tickets.find_one({"conversation_key": event.conversation_key})
        assert ticket is not None
        inbound = await app.service.messages.find({"ticket": ticket["_id"], "direction": "inbound"}).to_list(None)
        texts = [m["text"] for m in sorted(inbound, key=lambda m: m["seq"])]
        number = event.conversation_key[-4:]
        # Each message once, on the conversation's ticket, in the order the citizen wrote them.
        assert texts == [event.text, f"Tambahan 1 untuk RT {int(number)}", f"Tambahan 2 untuk RT {int(number)}"]
        added = await app.service.events.count_documents({"reference": ticket["_id"], "type": "message_added"})
        assert added >= 3


async def test_the_relay_waits_for_a_batch_whose_messages_the_database_did_not_take(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database went away between the batch's outbox and its messages: the relay must not hand the
    acknowledgements to the notifier before they exist on their tickets (the citizen would get one the desk shows
    as never sent, its delivery report finding nothing to mark); the consumer's retry stores and sends them."""
    events = [whatsapp(f"Tanggul retak di Desa Tasikagung {i}", number=f"6281577{i:05d}") for i in range(6)]
    monkeypatch.setattr(app.service, "messages", _CrashOn(app.service.messages))
    with pytest.raises(RuntimeError):
        await app.service.handle_inbound_batch(events)
    monkeypatch.undo()
    assert await app.service.publish_outbox(older_than=timedelta(0)) == 0
    numbers = {e.sender.channel_user_id for e in events}
    assert await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=0, timeout_ms=1000) == []

    await app.service.handle_inbound_batch(events)  # the consumer's retry, the database back
    acks = await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=6)
    for reply in acks:
        stored = await app.service.messages.find_one({"_id": f"out:{reply.outbound_id}"})
        assert stored is not None and stored["purpose"] == "acknowledgement"
    await app.service.publish_outbox(older_than=timedelta(0))  # now its replies are stored: out, and gone
    assert await app.service.outbox.count_documents({}) == 0
    assert {a.outbound_id for a in await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=12)} == {
        a.outbound_id for a in acks
    }


async def test_a_batch_the_broker_could_not_take_waits_in_the_outbox_and_goes_out_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suara_shared.kafka import BrokerUnavailable

    events = [whatsapp(f"Jembatan retak di Desa Sluke {i}", number=f"6281566{i:05d}") for i in range(8)]

    async def away(*args: Any, **kwargs: Any) -> None:
        raise BrokerUnavailable("broker away")

    monkeypatch.setattr(app.service.publisher, "send_raw", away)
    await app.service.handle_inbound_batch(events)  # stored; the consumer may commit: the outbox holds the rest
    monkeypatch.undo()
    assert await app.service.outbox.count_documents({}) == 1
    numbers = {e.sender.channel_user_id for e in events}
    assert await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=0, timeout_ms=1000) == []

    assert await app.service.publish_outbox(older_than=timedelta(0)) == 8 + 16  # 8 acknowledgements, 16 events
    assert await app.service.outbox.count_documents({}) == 0
    acks = await outbound_for(app.settings, lambda r: r.recipient in numbers, expect=8)
    assert sorted(a.recipient for a in acks) == sorted(numbers)


def statuses_for(acks: list[dict[str, Any]], tag: str) -> list[list[DeliveryStatus]]:
    """What a busy delivery partition brings, per acknowledgement: the notifier's report and the platform's
    webhooks, in orders that overtake each other, backwards, failed with a closed window, for unknown ids."""
    from suara_shared.events import DeliveryError, DeliveryState

    def report(ack: dict[str, Any], wamid: str, **more: Any) -> DeliveryStatus:
        return DeliveryStatus(
            channel=Channel.WHATSAPP,
            outbound_id=ack["outbound_id"],
            platform_message_id=wamid,
            status=DeliveryState.SENT,
            **more,
        )

    def hook(wamid: str, state: DeliveryState, **more: Any) -> DeliveryStatus:
        return DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id=wamid, status=state, **more)

    closed = DeliveryError(code="131047", title="Re-engagement message")
    w = [f"wamid.{tag}.{i}" for i in range(len(acks))]
    s = DeliveryState
    # Two polls: the notifier's first reports, then everything else (the usual order, and every overtaking).
    first = [
        report(acks[0], w[0]),
        report(acks[4], w[4]),
        report(acks[5], w[5], more_platform_message_ids=(f"{w[5]}.part2",)),
        hook(w[7], s.DELIVERED),  # overtakes a report that comes only with the next poll
        hook(w[8], s.DELIVERED),
        hook(w[8], s.FAILED, error=closed),  # the same, with a failure among them
    ]
    then = [
        hook(w[0], s.SENT),
        hook(w[0], s.DELIVERED),
        hook(w[0], s.READ),
        hook(w[1], s.DELIVERED),  # overtakes the report: kept as an orphan, then applied
        report(acks[1], w[1]),
        hook(w[1], s.READ),
        report(acks[2], w[2]),
        hook(w[2], s.FAILED, error=closed),  # the window had closed: sent again as the template
        hook(w[3], s.FAILED, error=closed),  # the same, overtaking the report
        report(acks[3], w[3]),
        hook(w[4], s.READ),
        hook(w[4], s.DELIVERED),  # backwards: ignored
        hook(f"wamid.{tag}.unknown", s.DELIVERED),
        hook(f"wamid.{tag}.unknown", s.SENT),  # only what ranks above the report it waits for is kept
        hook(f"{w[5]}.part2", s.DELIVERED),  # a long reply's second part speaks for the reply
        hook(w[0], s.DELIVERED),  # Meta delivers webhooks more than once
        report(acks[0], w[0]),
        hook(w[6], s.SENT),  # every status of a reply before the notifier's report, in one poll
        hook(w[6], s.READ),
        hook(w[6], s.DELIVERED),
        report(acks[6], w[6]),
        report(acks[7], w[7]),
        report(acks[8], w[8]),
    ]
    return [first, then]


async def delivery_snapshot(app: App, acks: list[dict[str, Any]], tag: str) -> list[Any]:
    result = []
    for ack in acks:
        doc = await app.service.messages.find_one({"_id": ack["_id"]})
        assert doc is not None
        await deliveries.overlay(app.service.deliveries, [doc])
        resends = await app.service.messages.count_documents({"resend_of": ack["outbound_id"]})
        result.append(
            (
                doc["delivery_status"],
                (doc.get("channel_message_id") or "").replace(tag, "T"),
                (doc.get("delivery_error") or {}).get("code"),
                resends,
            )
        )
    orphans = await app.service.orphans.count_documents({"platform_message_id": f"wamid.{tag}.unknown"})
    return [result, orphans]


async def test_delivery_statuses_in_a_batch_end_as_they_end_one_by_one(app: App) -> None:
    from suara_ticketing import window

    async def acknowledgements(prefix: str) -> list[dict[str, Any]]:
        events = [whatsapp(f"Pohon tumbang di jalan {i}", number=f"{prefix}{i:03d}") for i in range(9)]
        await app.service.handle_inbound_batch(events)
        found = []
        for event in events:
            found.append(
                await app.service.messages.find_one(
                    {"conversation_key": event.conversation_key, "purpose": "acknowledgement"}
                )
            )
        return found

    one_acks = await acknowledgements("628160001")
    for poll in statuses_for(one_acks, "one"):
        for status in poll:
            await window.record_delivery(app.service, status)
    batch_acks = await acknowledgements("628160002")
    for poll in statuses_for(batch_acks, "batch"):
        await window.record_deliveries(app.service, poll)

    expected = await delivery_snapshot(app, one_acks, "one")
    assert await delivery_snapshot(app, batch_acks, "batch") == expected
    # What the response team sees on each acknowledgement.
    states = [row[0] for row in expected[0]]
    assert states == ["read", "read", "failed", "failed", "read", "delivered", "read", "delivered", "failed"]
    assert [row[3] for row in expected[0]] == [0, 0, 1, 1, 0, 0, 0, 0, 1]
    assert expected[1] == 1  # the unknown id waits as an orphan
    # Nothing else is left waiting: every status that overtook its report was applied when the report came.
    assert await app.service.orphans.count_documents({}) == 2  # the unknown id, for each run


async def test_a_status_kept_waiting_while_another_consumer_records_its_report_is_applied(app: App) -> None:
    """Two ticketing consumers: one finds no message for the platform's `delivered` and keeps it waiting; the other
    records the notifier's report in between (after the first looked, before it wrote). Each looks again after
    writing, so the status ends on the message, not waiting for a report that has already come."""
    from suara_shared.events import DeliveryState

    await app.service.handle_inbound_batch([whatsapp("Lampu jalan mati", number="628160003001")])
    ack = await app.service.messages.find_one({"conversation_key": "628160003001", "purpose": "acknowledgement"})
    assert ack is not None
    report = DeliveryStatus(
        channel=Channel.WHATSAPP,
        outbound_id=ack["outbound_id"],
        platform_message_id="wamid.race",
        status=DeliveryState.SENT,
    )
    await app.service.record_plain_deliveries([report])  # the other consumer, after this one's lookup
    delivered = DeliveryStatus(
        channel=Channel.WHATSAPP, platform_message_id="wamid.race", status=DeliveryState.DELIVERED
    )
    await app.service._keep_orphans("whatsapp", {"wamid.race": [delivered]})  # this one, having found nothing
    stored = await app.service.messages.find_one({"_id": ack["_id"]})
    assert stored is not None
    assert (await deliveries.overlay(app.service.deliveries, [stored]))[0]["delivery_status"] == "delivered"
    assert await app.service.orphans.count_documents({}) == 0
