"""The lookups made for every message and every delivery status are answered from an index, on the embedded
database as on MongoDB. A lookup that walks the whole collection is invisible with a handful of tickets and takes
the database's time from everything else once there are thousands: a status a second then backs the whole desk up
(chaos saw the consumer stall for minutes behind such scans)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from suara_shared.events import Channel, DeliveryStatus
from suara_ticketing import conversations
from suara_ticketing.live import changed_since, ticked_since
from suara_ticketing.tickets.service import THREADABLE, by_platform_ids, orphans_of
from suara_ticketing.tickets.workflow import SURVEYED, conversation_tickets

from .conftest import App


async def plan(
    app: App, collection: str, query: dict[str, Any], *, sort: dict[str, int] | None = None
) -> dict[str, Any]:
    database = app.service.messages.database
    find: dict[str, Any] = {"find": collection, "filter": query, **({"sort": sort} if sort else {})}
    explained = await database.command({"explain": find, "verbosity": "queryPlanner"})
    winning: dict[str, Any] = explained["queryPlanner"]["winningPlan"]
    return winning


def stages(node: dict[str, Any]) -> list[str]:
    return [node.get("stage", ""), *(stages(node["inputStage"]) if "inputStage" in node else [])]


@pytest.mark.parametrize(
    "field, ids",
    [
        ("channel_message_id", ["wamid.one"]),
        ("channel_message_id", ["wamid.one", "wamid.two"]),
        ("channel_message_ids", ["wamid.one"]),
    ],
)
async def test_a_delivery_status_finds_its_message_through_an_index(app: App, field: str, ids: list[str]) -> None:
    winning = await plan(app, "messages", by_platform_ids("whatsapp", field, ids))
    assert "COLLSCAN" not in stages(winning)
    assert "IXSCAN" in stages(winning)


SINCE = {"$gte": datetime(2026, 11, 29, tzinfo=UTC)}


@pytest.mark.parametrize(
    "collection, query",
    [
        # An echo of a reply whose id is not known yet is matched by its text among the recent replies.
        ("messages", conversations.messages("facebook", "dm:6543210987654321", "outbound", created_at=SINCE)),
        # Messenger's receipt by watermark moves every reply before it.
        ("messages", conversations.messages("facebook", "dm:6543210987654321", "outbound", created_at={"$lte": 1})),
        # Every agent's reply and resolution looks for the comment it answers; the window for the last message.
        ("messages", conversations.messages("instagram", "media:1:2", "inbound")),
        # A citizen's "5" looks for the finished ticket whose survey it answers.
        ("tickets", conversation_tickets("whatsapp", "6281234567890", SURVEYED)),
        ("tickets", conversation_tickets("whatsapp", "6281234567890", THREADABLE)),
        # Every minute, the sweep's overdue tickets, one active status at a time.
        ("tickets", {"status": "open", "due_at": {"$lt": datetime(2026, 11, 29, tzinfo=UTC)}}),
    ],
    ids=[
        "echo",
        "watermark",
        "comment answered",
        "survey answer",
        "thread",
        "sweep",
    ],
)
async def test_what_echoes_replies_surveys_and_the_sweep_read_is_found_through_an_index(
    app: App, collection: str, query: dict[str, Any]
) -> None:
    """Named with a field more than their index (an echo's text and author, a comment's `removed`, a survey's
    date, an overdue ticket's flag), these lookups had the embedded database read every message of the channel or
    every ticket: twice per reply on Messenger and Instagram (the mixed bench's database worked twice as hard per
    message), once per agent's reply (0.5 s at 20,000 messages), once per survey answer (0.26 s at 10,000
    tickets), once a minute for the sweep. Its explain is not always faithful (it says COLLSCAN for some filters
    it serves from an index in fact), so each of these was also timed at that size."""
    winning = await plan(app, collection, query, sort={"created_at": -1})
    assert "COLLSCAN" not in stages(winning)
    assert "IXSCAN" in stages(winning)


@pytest.mark.parametrize(
    "channel, ids",
    [("whatsapp", ["wamid.one"]), (None, ["wamid.one"]), (None, ["wamid.one", "wamid.two"])],
)
async def test_a_send_report_finds_the_statuses_waiting_for_it_through_an_index(
    app: App, channel: str | None, ids: list[str]
) -> None:
    winning = await plan(app, "delivery_orphans", orphans_of(channel, ids))
    assert "COLLSCAN" not in stages(winning)
    assert "IXSCAN" in stages(winning)


async def test_statuses_of_messages_suara_never_sent_do_not_pile_up(app: App) -> None:
    """A status whose message never turns up (a reply typed in the WhatsApp Business app, say) waits a week, then
    the database drops it: the orphans stay few, so looking them up stays cheap."""
    status = DeliveryStatus(channel=Channel.WHATSAPP, platform_message_id="wamid.typed-by-hand", status="delivered")
    await app.service.record_delivery(status)
    waiting = await app.service.orphans.find_one({"platform_message_id": "wamid.typed-by-hand"})
    assert waiting is not None and waiting["stored_at"] is not None
    ttl = [
        spec for spec in (await app.service.orphans.index_information()).values() if spec["key"] == [("stored_at", 1)]
    ]
    assert ttl and ttl[0]["expireAfterSeconds"] == 7 * 24 * 3600


@pytest.mark.parametrize("scope", [{}, {"department": "dpupr"}], ids=["whole desk", "department agent"])
async def test_the_consoles_poll_for_changes_reads_only_the_changed_tickets(app: App, scope: dict[str, Any]) -> None:
    """Every open console asks every 2.5 s what changed since its last look (`live.changes`); reading every ticket
    for that, each time, for each agent, would keep the database busy with a year's tickets."""
    query = changed_since(datetime(2026, 11, 29, tzinfo=UTC), scope)
    winning = await plan(app, "tickets", query, sort={"updated_at": -1})
    assert "COLLSCAN" not in stages(winning)
    assert "IXSCAN" in stages(winning)


async def test_the_consoles_poll_reads_only_the_recent_ticks_and_the_tickets_they_name(app: App) -> None:
    """Beside the changed tickets, the poll reads the replies' delivery ticks of the last moments (a busy day makes
    thousands), and for a department's agent keeps those of their department's tickets, looked up by reference."""
    winning = await plan(app, "ticket_ticks", ticked_since(datetime(2026, 11, 29, tzinfo=UTC)), sort={"at": -1})
    assert "COLLSCAN" not in stages(winning)
    assert "IXSCAN" in stages(winning)
    named = {"_id": {"$in": ["RMB-2026-000001", "RMB-2026-000002"]}}
    assert "COLLSCAN" not in stages(await plan(app, "tickets", named))
