"""What `make bench` reports besides its timings: the CPU time each process spent (a service whose work is done
by a child process is charged with it), shown busiest first with its share and its cost per message; and the
database's own account of the commands the load cost it, per collection; and, with `--catch-up`, how fast a
ticketing that was down while the load was sent works off the backlog."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest

from suara_devstack.bench import (
    DEFAULT_MIX,
    FB_PAGE_ID,
    IG_ACCOUNT_ID,
    KINDS,
    Result,
    Sent,
    _children,
    addressee,
    bucket_quantile,
    catch_up_figures,
    collect,
    count_copies,
    cpu_seconds,
    database_top,
    endpoints,
    messages_query,
    parse_mix,
    schedule,
    send_load,
    summarise,
    table,
    tickets_query,
    top_difference,
)
from suara_devstack.infra import EmbeddedInfra, default_env
from suara_devstack.measure import web_complaint
from suara_devstack.stack import Stack, default_services
from suara_devstack.testing import _free_base, _infra, eventually, url
from suara_shared import db, topics
from suara_shared.events import Event
from suara_shared.kafka import Publisher
from suara_shared.settings import ServiceSettings
from suara_ticketing.tickets.service import TicketService

BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


LOAD = {
    "e2e_per_s": 50.0,
    "acked_per_s": 40.0,
    "webhook_p50_ms": 5.0,
    "webhook_p99_ms": 20.0,
    "stored_p50_ms": 100.0,
    "stored_p99_ms": 300.0,
    "ack_p50_ms": 200.0,
    "ack_p99_ms": 600.0,
    "sent": 1000,
    "accepted": 1000,
    "stored": 1000,
    "acknowledged": 1000,
    "tickets": 1000,
    "lost": 0,
    "duplicated_messages": 0,
    "duplicated_acks": 0,
}


def test_cpu_seconds_counts_a_process_and_the_children_doing_its_work() -> None:
    # A wrapper that only waits on a child that burns 0.5 s of CPU: the wrapper is charged with the child's time.
    wrapper = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {BUSY.format(seconds=0.5)!r}, 'x'])\n"
            "import time; time.sleep(30)\n",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        seen = alone = 0.0
        while time.monotonic() < deadline and seen < 0.4:
            time.sleep(0.2)
            seen = max(seen, cpu_seconds(wrapper.pid))
            alone = cpu_seconds(wrapper.pid, children=False)
        # The child's time is on the wrapper's, while it runs and once it is done (the wrapper waited for it).
        assert seen >= 0.4
        while _children(wrapper.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _children(wrapper.pid)
        assert cpu_seconds(wrapper.pid) >= 0.45  # all of the child's 0.5 s, counted since it ended
        # The bench's own process is counted alone: its children are the stack's processes, listed on their own.
        assert alone < 0.3
    finally:
        wrapper.kill()
        wrapper.wait()
    assert cpu_seconds(wrapper.pid) == 0.0  # gone: nothing to read, no crash


def test_table_lists_cpu_busiest_first_with_share_and_cost_per_message() -> None:
    result = Result(
        settings={"rate": 100.0},
        machine={},
        ceilings={"broker_produce_per_s": 10_000.0, "db_upserts_per_s": 1_000.0},
        load=LOAD,
        cpu_seconds={"ticketing": 2.0, "database": 6.0, "ingest-wa": 2.0},
    )
    lines = [line for line in table(result).splitlines() if line.startswith("CPU ")]
    assert [line.split()[1] for line in lines] == ["database", "ticketing", "ingest-wa"]
    assert "60%" in lines[0] and "6.00 ms per message" in lines[0]
    assert "5.0% of the database ceiling" in table(result)


async def test_the_databases_work_is_counted_per_collection_and_kind_of_command(
    infra: EmbeddedInfra, database: db.Database
) -> None:
    """`make bench` reads the database's `top` before and after the load: what the load did to each collection,
    by kind of command, and the time the database says it spent; collections it did not touch are left out."""
    idle = database["idle"]
    await idle.insert_one({"_id": 1})
    before = await database_top(infra.mongodb_uri)
    busy = database["busy"]
    await busy.insert_many([{"_id": i} for i in range(3)])  # one command, however many documents
    for i in range(3):
        await busy.update_one({"_id": i}, {"$set": {"seen": True}})
    assert await busy.find_one({"_id": 2}) is not None
    await busy.delete_one({"_id": 0})
    assert await busy.count_documents({}) == 2  # an aggregate: neither find nor write
    done = top_difference(before, await database_top(infra.mongodb_uri))
    assert "idle" not in done
    work = done["busy"]
    assert (work["insert"], work["update"], work["find"], work["delete"]) == (1, 3, 1, 1)
    assert work["other"] >= 1 and work["count"] == 6 + work["other"] and work["micros"] > 0


def test_table_lists_the_databases_work_per_message_busiest_first() -> None:
    result = Result(
        settings={"rate": 100.0},
        machine={},
        ceilings={"broker_produce_per_s": 10_000.0, "db_upserts_per_s": 1_000.0},
        load={**LOAD, "stored": 100},
        database={
            "tickets": {"count": 10, "micros": 50_000, "update": 10},
            "messages": {"count": 300, "micros": 200_000, "find": 250, "update": 50},
        },
    )
    lines = [line for line in table(result).splitlines() if line.startswith("database on ")]
    assert [line.split()[2] for line in lines] == ["messages", "tickets"]
    assert "2.00 ms" in lines[0] and "2.50 find, 0.50 update" in lines[0]
    assert "0.50 ms" in lines[1] and "0.10 update" in lines[1]


def test_with_follow_ups_a_citizens_acknowledgement_is_timed_from_their_first_message() -> None:
    """`--per-citizen 2`: Siti writes twice, Budi once; one acknowledgement each, answering the first message."""
    sent = [
        Sent("whatsapp", "wamid.1", "siti", "siti", at=100.0, latency=0.004, status=200),
        Sent("whatsapp", "wamid.2", "budi", "budi", at=100.5, latency=0.004, status=200),
        Sent("whatsapp", "wamid.3", "siti", "siti", at=103.0, latency=0.004, status=200),
    ]
    gathered = {
        "ok": {s.key: s for s in sent},
        "stored": {("whatsapp", "wamid.1"): 101.0, ("whatsapp", "wamid.2"): 101.5, ("whatsapp", "wamid.3"): 103.5},
        "acks": {("whatsapp", "siti"): [102.0], ("whatsapp", "budi"): [104.5]},
        "tickets": 2,
        "inbound": 3,
    }
    result = Result(settings={"rate": 1.0, "per_citizen": 2}, machine={})
    summarise(result, sent, gathered)
    assert result.load["acknowledged"] == 2 and result.load["duplicated_acks"] == 0
    assert sorted(ms for _, ms in result.series["ack_ms"]) == [2000.0, 4000.0]  # not Siti's 102 - 103 < 0
    assert result.load["stored_p50_ms"] == 1000.0  # every message timed to its own storing


def test_each_channel_of_the_mix_has_its_own_figures_and_the_web_waits_for_no_acknowledgement() -> None:
    """A mixed load: the table shows each channel's part; a web complaint counts as stored, with no
    acknowledgement at the sandbox (its status page shows it), and is neither lost nor awaited."""
    sent = [
        Sent("whatsapp", "wamid.1", "62812", "62812", at=100.0, latency=0.004, status=200),
        Sent("web", "sub-1", "sub-1", "", at=100.1, latency=0.009, status=202),
        Sent("x", "dm:1", "dm:9", "9", at=100.2, latency=0.006, status=200),
        Sent("x", "dm:2", "dm:8", "8", at=100.3, latency=0.006, status=503),  # refused five times
    ]
    ok = {s.key: s for s in sent if s.status != 503}
    gathered = {
        "ok": ok,
        "stored": {("whatsapp", "wamid.1"): 101.0, ("web", "sub-1"): 100.6, ("x", "dm:1"): 101.2},
        "acks": {("whatsapp", "62812"): [102.0], ("x", "dm:9"): [102.2, 102.4]},
        "answered": 2,
        "tickets": 3,
        "inbound": 3,
    }
    result = Result(
        settings={"rate": 4.0},
        machine={},
        ceilings={"broker_produce_per_s": 10_000.0, "db_upserts_per_s": 1_000.0},
    )
    summarise(result, sent, gathered)
    load = result.load
    assert (load["sent"], load["accepted"], load["refused"], load["stored"], load["lost"]) == (4, 3, 1, 3, 0)
    assert load["acknowledged"] == 2 and load["duplicated_acks"] == 1  # X's citizen was answered twice
    channels = load["kinds"]
    assert list(channels) == ["whatsapp", "web", "x"]
    assert channels["web"]["stored"] == 1 and channels["web"]["acknowledged"] == 0
    assert (channels["x"]["sent"], channels["x"]["accepted"], channels["x"]["acknowledged"]) == (2, 1, 1)
    rows = {line.split(":")[0].strip(): line for line in table(result).splitlines() if line.startswith("  ")}
    assert "1 / 1 / –" in rows["web"] and "2 / 1 / 1" in rows["x"]


def test_a_mix_is_read_from_its_shares_and_spread_evenly_over_the_load() -> None:
    assert parse_mix("whatsapp=80, web=8,facebook=4,instagram_comment=4,x_mention=4,x=0") == {
        "whatsapp": 80,
        "web": 8,
        "facebook": 4,
        "instagram_comment": 4,
        "x_mention": 4,
    }
    assert sum(parse_mix(DEFAULT_MIX).values()) == 100
    for wrong, says in (
        ("whatsapp=80,telegram=20", "unknown kind 'telegram'"),
        ("whatsapp=lots", "whole number"),
        ("whatsapp=0", "no channel"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_mix(wrong)
    order = schedule({"whatsapp": 3, "web": 1}, 40)
    assert order.count("whatsapp") == 30 and order.count("web") == 10
    # Every stretch of four carries the shares, not one channel after the other.
    assert all(order[i : i + 4].count("web") == 1 for i in range(0, 40, 4))


def test_the_acknowledgements_are_told_apart_from_other_calls_to_the_sandbox() -> None:
    """What `collect` counts as an acknowledgement sent: the message calls of each platform, addressed to a
    citizen or under their comment or post; not a WhatsApp read receipt, nor Messenger's typing indicator, nor a
    private reply, nor a post of our own, nor a media upload."""
    page, ig = FB_PAGE_ID, IG_ACCOUNT_ID
    calls = [
        ("POST", "/v23.0/106540352242922/messages", {"to": "62812", "type": "text", "text": {"body": "x"}}),
        ("POST", "/v23.0/106540352242922/messages", {"status": "read", "message_id": "wamid.1"}),
        ("POST", f"/v23.0/{page}/messages", {"recipient": {"id": "7001"}, "message": {"text": "x"}}),
        ("POST", f"/v23.0/{page}/messages", {"recipient": {"id": "7001"}, "sender_action": "typing_on"}),
        ("POST", f"/v23.0/{ig}/messages", {"recipient": {"id": "8001"}, "message": {"text": "x"}}),
        ("POST", "/2/dm_conversations/with/9001/messages", {"text": "x"}),
        ("POST", "/v23.0/555_101/comments", {"message": "x"}),
        ("POST", "/v23.0/17900000000000042/replies", {"message": "x"}),
        ("POST", f"/v23.0/{page}/messages", {"recipient": {"comment_id": "555_101"}, "message": {"text": "x"}}),
        ("POST", "/2/tweets", {"text": "x", "reply": {"in_reply_to_tweet_id": "1801"}}),
        ("POST", "/2/tweets", {"text": "an announcement"}),
        ("POST", "/v23.0/106540352242922/media", {"file": "x"}),
        ("GET", "/2/users/1700000000000000000/mentions", None),
    ]
    found = [addressee({"method": m, "path": p, "body": b}) for m, p, b in calls]
    assert found == [
        ("whatsapp", "62812"),
        None,
        ("facebook", "7001"),
        None,
        ("instagram", "8001"),
        ("x", "9001"),
        ("facebook_comment", "555_101"),
        ("instagram_comment", "17900000000000042"),
        None,  # a private reply to the commenter: not the acknowledgement under the comment
        ("x_mention", "1801"),
        None,
        None,
        None,
    ]


async def test_a_mixed_load_is_taken_stored_and_acknowledged_on_every_channel(stack: Stack) -> None:
    """The bench's own requests, built and signed as each platform sends them, through the real services: every
    kind's messages (direct ones, comments, mentions, web complaints) are accepted, stored once on a ticket of
    their own, and answered on their channel, once (the web's on its status page)."""
    mix = dict.fromkeys(KINDS, 1)
    sent = await send_load(endpoints(stack), rate=40.0, seconds=1.0, concurrency=4, run=uuid.uuid4().hex[:8], mix=mix)
    assert sorted({s.kind for s in sent}) == sorted(mix) and {s.status for s in sent} <= {200, 202}
    gathered = await collect(stack, sent, within=90)
    gathered.update(await count_copies(stack, gathered["ok"]))
    result = Result(settings={"rate": 20.0}, machine={})
    summarise(result, sent, gathered)
    load = result.load
    assert (load["accepted"], load["stored"], load["lost"], load["duplicated_messages"]) == (40, 40, 0, 0)
    assert load["tickets"] == 40
    assert load["answered"] == 35 and load["acknowledged"] == 35 and load["duplicated_acks"] == 0
    assert {k: (f["stored"], f["acknowledged"]) for k, f in load["kinds"].items()} == {
        kind: (5, 0 if kind == "web" else 5) for kind in KINDS
    }


def test_the_brokers_share_of_the_webhook_latency_comes_from_what_the_run_added_to_the_histogram() -> None:
    """The bench reads ingest-wa's `suara_kafka_publish_seconds` before and after sending: only the run's own
    publications count (not the ones before it), and a quantile is the upper bound of its bucket."""
    before = {0.003: 500.0, 0.01: 500.0, 0.05: 500.0, float("inf"): 500.0}  # 500 fast ones before the run
    after = {0.003: 550.0, 0.01: 580.0, 0.05: 599.0, float("inf"): 600.0}  # the run: 50 / 30 / 19 / 1 of 100
    assert bucket_quantile(before, after, 50) == 0.003
    assert bucket_quantile(before, after, 80) == 0.01
    assert bucket_quantile(before, after, 99) == 0.05
    assert bucket_quantile(before, after, 100) == float("inf")
    assert bucket_quantile(after, after, 50) is None  # nothing published during the run


async def test_the_benchs_own_reads_look_only_at_the_runs_messages_and_tickets(database: db.Database) -> None:
    """While it waits and when it counts copies, the bench reads the database it measures: those reads must not
    walk the whole collection (a regular expression over the messages' ids did, and the database's CPU the bench
    reported included it). With ticketing's own indexes, they look at the run's documents only."""
    await TicketService(
        database=database, publisher=cast(Any, None), prefix="suara", status_url="http://127.0.0.1/status"
    ).ensure_indexes()
    now = datetime.now(UTC)
    others = [
        {
            "_id": f"in:whatsapp:wamid.other-{i}",
            "channel": "whatsapp",
            "channel_message_id": f"wamid.other-{i}",
            "conversation_key": f"62811{i:06d}",
            "direction": "inbound",
            "stored_at": now,
        }
        for i in range(1500)
    ]
    run = [
        {
            "_id": f"in:whatsapp:wamid.run-{i}",
            "channel": "whatsapp",
            "channel_message_id": f"wamid.run-{i}",
            "conversation_key": f"62812{i:06d}",
            "direction": "inbound",
            "stored_at": now,
        }
        for i in range(5)
    ]
    await database["messages"].insert_many([*others, *run])
    await database["tickets"].insert_many(
        [
            {
                "_id": f"RMB-{m['_id']}",
                "channel": "whatsapp",
                "conversation_key": m["conversation_key"],
                "status": "new",
                "created_at": now,
            }
            for m in [*others, *run]
        ]
    )
    wamids = [m["channel_message_id"] for m in run] + ["wamid.run-never-stored"]
    citizens = [m["conversation_key"] for m in run]
    for collection, query, found in (
        ("messages", messages_query("whatsapp", wamids), 5),
        ("tickets", tickets_query("whatsapp", citizens), 5),
    ):
        assert await database[collection].count_documents(query) == found
        explained = await database.command(
            {"explain": {"find": collection, "filter": query}, "verbosity": "executionStats"}
        )
        assert explained["executionStats"]["nReturned"] == found
        assert explained["executionStats"]["totalDocsExamined"] <= found


def test_catch_up_rates_come_from_when_the_backlog_was_stored_and_when_ticketing_was_started() -> None:
    """`--catch-up`: ticketing was started at 200.0 and answered at 201.5; it stored the 4 messages waiting for it
    from 203.0 to 205.0. Its pace once going counts from its first message stored, what the operator waited from
    its start."""
    stored = {"wamid.0": 203.0, "wamid.1": 203.5, "wamid.2": 204.0, "wamid.3": 205.0}
    figures = catch_up_figures(stored, backlog=4, restarted_at=200.0, healthy_at=201.5, ceiling=100.0)
    assert figures == {
        "catch_up_backlog": 4,
        "catch_up_healthy_s": 1.5,
        "catch_up_first_stored_s": 3.0,
        "catch_up_drain_s": 5.0,
        "catch_up_per_s": 2.0,  # 4 / (205 - 203)
        "catch_up_from_restart_per_s": 0.8,  # 4 / (205 - 200)
        "catch_up_of_db_ceiling": 0.02,
    }


def test_the_catch_up_rows_are_in_the_table_only_in_catch_up_mode() -> None:
    figures = catch_up_figures(
        {"wamid.0": 203.0, "wamid.1": 205.0}, backlog=2, restarted_at=200.0, healthy_at=201.5, ceiling=100.0
    )
    ceilings = {"broker_produce_per_s": 10_000.0, "db_upserts_per_s": 100.0}
    caught_up = table(
        Result(settings={"rate": 100.0, "catch_up": True}, machine={}, ceilings=ceilings, load={**LOAD, **figures})
    )
    rows = {line.split("  ")[0]: line for line in caught_up.splitlines()}
    assert "2 msg" in rows["backlog (ticketing down while sending)"]
    assert "include the downtime" in rows["backlog (ticketing down while sending)"]
    assert "1.0 msg/s" in rows["catch-up (first → last ticket stored)"]
    assert "1.0% of the database ceiling" in rows["catch-up (first → last ticket stored)"]
    assert "0.4 msg/s" in rows["catch-up (ticketing started → last stored)"]
    assert (
        "drained in 5.0 s (first ticket after 3.0 s, /healthz after 1.5 s)"
        in rows["catch-up (ticketing started → last stored)"]
    )
    usual = table(Result(settings={"rate": 100.0}, machine={}, ceilings=ceilings, load=LOAD))
    assert "catch-up" not in usual and "backlog" not in usual


async def test_a_ticketing_stopped_while_messages_arrive_stores_them_once_started_again() -> None:
    """What `--catch-up` stands on: `stop_service` takes ticketing down cleanly and keeps it down, what arrives
    meanwhile waits in the broker, and `start_service` brings it back, answering, to store all of it."""
    infra = _infra("catch-up")
    services = [spec for spec in default_services(base_port=_free_base()) if spec.name == "ticketing"]
    stack = Stack(infra=infra, services=services)
    await asyncio.to_thread(stack.start, timeout=60)
    settings = ServiceSettings.model_validate(
        {**{k.lower(): v for k, v in default_env().items()}, "kafka_bootstrap_servers": infra.bootstrap}
    )
    publisher = Publisher(settings, timeout=30)
    client, database = db.connect(infra.mongodb_uri)
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def consuming() -> bool:
                return (await http.get(url(stack, "ticketing", "/readyz"))).status_code == 200

            # Down as after an outage of a ticketing at work: its consumer was in its group, and leaves it.
            await eventually(consuming, within=60, what="ticketing's consumer running")
        before = stack.running["ticketing"].proc
        await asyncio.to_thread(stack.stop_service, "ticketing")
        # Its shutdown ran to the end (uvicorn then exits by the signal it got); it was not killed.
        assert before.returncode in (0, -signal.SIGTERM) and "ticketing" not in stack.running
        assert stack.watch_once() == []  # down on purpose: not a crash to restart
        waiting = [web_complaint(f"catch-up-{i}", f"Lampu jalan nomor {i} mati di Kecamatan Sluke") for i in range(3)]
        batch: list[tuple[str, Event, bytes | None]] = [(topics.INBOUND, m, m.partition_key) for m in waiting]
        await publisher.publish_many(batch)

        await asyncio.to_thread(stack.start_service, "ticketing")
        assert stack.running["ticketing"].proc.pid != before.pid
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(url(stack, "ticketing", "/healthz"))).status_code == 200
        query = {"submission_id": {"$in": [m.platform_message_id for m in waiting]}}

        async def all_stored() -> bool:
            return await database["tickets"].count_documents(query) == len(waiting)

        await eventually(all_stored, within=60, what="a ticket for each message sent while ticketing was down")
    finally:
        await publisher.stop()
        await db.close(client)
        await asyncio.to_thread(stack.stop)
