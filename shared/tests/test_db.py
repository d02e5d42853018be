"""Group commit (`db.GroupWrites`): writes asked for together reach the database as one bulk write, and every
caller still gets its own outcome: its insert refused as a duplicate alone, its update matched or not, the
database's absence as an error it can wait out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from suara_devstack.infra import EmbeddedInfra, free_port
from suara_shared import db


class BulkWrites(monitoring.CommandListener):
    """Counts the write commands the driver sends, by name."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update"):
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_concurrent_writes_share_round_trips_and_keep_their_own_outcomes(database: db.Database) -> None:
    sends = database["sends"]
    await sends.insert_one({"_id": "taken", "owner": "other"})
    group = db.GroupWrites(sends)

    async def insert(key: str) -> str:
        try:
            await group.insert({"_id": key, "owner": "me"})
        except db.DuplicateKeyError:
            return "duplicate"
        return "inserted"

    outcomes = await asyncio.gather(*(insert(f"r{i}") for i in range(20)), insert("taken"))
    assert outcomes == ["inserted"] * 20 + ["duplicate"]
    assert await sends.count_documents({"owner": "me"}) == 20
    assert (await sends.find_one({"_id": "taken"}) or {})["owner"] == "other"  # the duplicate changed nothing

    # Updates: the one whose match fails is told so, the others are applied.
    matched = await asyncio.gather(
        *(group.update({"_id": f"r{i}", "owner": "me"}, {"$set": {"state": "sent"}}) for i in range(5)),
        group.update({"_id": "taken", "owner": "me"}, {"$set": {"state": "sent"}}),
    )
    assert matched == [True] * 5 + [False]
    assert await sends.count_documents({"state": "sent"}) == 5


async def test_twenty_concurrent_claims_are_one_bulk_write(infra: EmbeddedInfra, database: db.Database) -> None:
    listener = BulkWrites()
    client: AsyncMongoClient[db.Document] = AsyncMongoClient(infra.mongodb_uri, event_listeners=[listener])
    try:
        group = db.GroupWrites(client[database.name]["sends"])
        await asyncio.gather(*(group.insert({"_id": f"r{i}"}) for i in range(20)))
        assert listener.commands == ["insert"]
        await asyncio.gather(*(group.update({"_id": f"r{i}"}, {"$set": {"n": i}}) for i in range(20)))
        assert listener.commands == ["insert", "update"]
    finally:
        await client.close()


async def test_without_the_database_every_caller_gets_an_error_it_can_wait_out() -> None:
    client, database = db.connect(f"mongodb://127.0.0.1:{free_port()}/x", timeout_ms=300)
    try:
        group = db.GroupWrites(database["sends"])
        results = await asyncio.gather(*(group.insert({"_id": f"r{i}"}) for i in range(3)), return_exceptions=True)
        assert len(results) == 3
        assert all(isinstance(r, Exception) and db.is_unavailable(r) for r in results), results
    finally:
        await db.close(client)


class Gated:
    """The collection, with its bulk writes held at a gate: a group can be caught while it is at the database."""

    def __init__(self, collection: db.Collection) -> None:
        self.collection = collection
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def bulk_write(self, ops: list[Any], *, ordered: bool) -> Any:
        self.entered.set()
        await self.gate.wait()
        return await self.collection.bulk_write(ops, ordered=ordered)


async def test_stopping_mid_write_releases_every_caller_and_writes_nothing_afterwards(database: db.Database) -> None:
    """A service stopping cancels its tasks, the group's writer among them, while a group is at the database and
    more wait their turn: every caller is released (none waits for ever), and none of those writes is made after
    the stop, by a writer nobody waits for any more."""
    gated = Gated(database["sends"])
    group = db.GroupWrites(gated, most=2)  # type: ignore[arg-type]
    callers = [asyncio.create_task(group.insert({"_id": f"r{i}"})) for i in range(5)]
    await asyncio.wait_for(gated.entered.wait(), 5)
    writers = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "GroupWrites._write"]  # type: ignore[union-attr]
    assert len(writers) == 1
    writers[0].cancel()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    gated.gate.set()
    await asyncio.sleep(0.2)
    assert await database["sends"].count_documents({}) == 0
    # The group is not left stuck: the next write (after a restart of the work, say) goes through.
    await asyncio.wait_for(group.insert({"_id": "after"}), 5)
    assert await database["sends"].count_documents({}) == 1


async def test_increment_gives_each_concurrent_caller_its_own_number(database: db.Database) -> None:
    """The numbering of a conversation's messages: twenty writers at once each get a different next number."""
    tickets = database["tickets"]
    await tickets.insert_one({"_id": "RMB-2026-000001", "message_count": 1, "status": "new"})
    after = await asyncio.gather(
        *(db.increment(tickets, "RMB-2026-000001", "message_count", also={"status": "open"}) for _ in range(20))
    )
    assert sorted(doc["message_count"] for doc in after if doc) == list(range(2, 22))
    assert all(doc and doc["status"] == "open" for doc in after)
    stored = await tickets.find_one({"_id": "RMB-2026-000001"})
    assert stored is not None and stored["message_count"] == 21 and stored["status"] == "open"
    assert await db.increment(tickets, "RMB-2026-999999", "message_count") is None


async def test_increment_does_not_use_find_and_modify(infra: EmbeddedInfra, database: db.Database) -> None:
    """The embedded database answers findAndModify by reading the whole collection: increment never asks it."""
    listener = BulkWrites()
    seen: list[str] = []
    listener.started = lambda event: seen.append(event.command_name)  # type: ignore[method-assign]
    client: AsyncMongoClient[db.Document] = AsyncMongoClient(infra.mongodb_uri, event_listeners=[listener])
    try:
        tickets = client[database.name]["tickets"]
        await tickets.insert_one({"_id": "T1"})
        seen.clear()
        assert (await db.increment(tickets, "T1", "message_count") or {}).get("message_count") == 1
        assert "findAndModify" not in seen and "update" in seen
    finally:
        await client.close()


async def test_guarded_upserts_skip_what_the_guard_refuses_and_count_what_they_wrote(database: db.Database) -> None:
    """A status that never moves backwards: a write is refused where the document holds as high a rank."""
    ranks = database["ranks"]
    await ranks.insert_many([{"_id": "a", "rank": 1}, {"_id": "b", "rank": 3}])

    def to(key: str, rank: int) -> db.UpdateOne:
        return db.UpdateOne({"_id": key, "rank": {"$lt": rank}}, {"$set": {"rank": rank}}, upsert=True)

    assert await db.upsert_guarded(ranks, [to("a", 2), to("b", 2), to("c", 1)]) == 2
    assert {d["_id"]: d["rank"] async for d in ranks.find()} == {"a": 2, "b": 3, "c": 1}
    assert await db.upsert_guarded(ranks, [to("a", 2), to("b", 3)]) == 0
    assert await db.upsert_guarded(ranks, []) == 0  # nothing to write is no error


async def test_guarded_upserts_raise_every_error_but_the_guard_refusing(database: db.Database) -> None:
    ranks = database["ranks"]
    await ranks.insert_one({"_id": "a", "rank": 1})
    with pytest.raises(db.PyMongoError):  # an update the server cannot apply is an error, not a refusal
        await db.upsert_guarded(ranks, [db.UpdateOne({"_id": "a"}, {"$inc": {"_id": 1}}, upsert=True)])


async def test_a_long_in_list_is_asked_in_parts_and_finds_everything(
    infra: EmbeddedInfra, database: db.Database
) -> None:
    """The embedded database's cost per value of an `$in` grows with the list: `find_in` asks 50 at a time."""
    listener = BulkWrites()
    seen: list[dict[str, Any]] = []
    listener.started = lambda event: seen.append(event.command)  # type: ignore[method-assign]
    client: AsyncMongoClient[db.Document] = AsyncMongoClient(infra.mongodb_uri, event_listeners=[listener])
    try:
        messages = client[database.name]["messages"]
        await messages.insert_many([{"_id": f"m{i}", "channel": "whatsapp" if i % 2 else "web"} for i in range(240)])
        seen.clear()
        wanted = [f"m{i}" for i in range(120)] + ["not-there"]
        found = await db.find_in(messages, "_id", wanted, where={"channel": "whatsapp"}, projection={"_id": 1})
        assert sorted(d["_id"] for d in found) == sorted(f"m{i}" for i in range(1, 120, 2))
        finds = [c for c in seen if "find" in c]
        assert [len(c["filter"]["_id"]["$in"]) for c in finds] == [50, 50, 21]
        assert all(c["filter"]["channel"] == "whatsapp" for c in finds)
        assert await db.find_in(messages, "_id", []) == []
    finally:
        await client.close()
