"""The embedded infra as the services get it."""

from __future__ import annotations

from suara_shared import db
from suara_shared.settings import ServiceSettings


async def test_services_write_to_the_embedded_database_without_retryable_writes(settings: ServiceSettings) -> None:
    """The embedded server keeps the reply of every retryable write for 30 minutes and walks that list (past
    10,000 entries: sorts it) on every write: a busy hour made each write cost it 4.7 ms of CPU instead of 0.25 ms,
    and the whole desk slowed down with it. The services connect the way this URI says, so they must not ask for
    retryable writes from it (the broker's idempotence is off for the same kind of reason)."""
    client, database = db.connect(settings.mongodb_uri)
    try:
        assert client.options.retry_writes is False
        # Still the database the services use, and writes go through.
        assert database.name == "suara"
        await database["retryable_probe"].insert_one({"_id": "probe"})
        assert await database["retryable_probe"].find_one({"_id": "probe"}) == {"_id": "probe"}
    finally:
        await database["retryable_probe"].drop()
        await db.close(client)


async def test_the_embedded_database_keeps_no_oplog_of_the_services_writes(settings: ServiceSettings) -> None:
    """Advertised as a replica set, the embedded server writes an oplog entry for every document a write changes
    (for change streams, which Suara does not use): a second write each time, which the bench showed costing it CPU
    and the desk throughput. It runs standalone, so a write is written once."""
    client, database = db.connect(settings.mongodb_uri)
    try:
        probe = database["oplog_probe"]
        await probe.insert_one({"_id": "probe", "n": 0})
        await probe.update_one({"_id": "probe"}, {"$inc": {"n": 1}})
        assert await probe.find_one({"_id": "probe"}) == {"_id": "probe", "n": 1}
        assert await client["local"]["oplog.rs"].count_documents({"ns": f"{database.name}.oplog_probe"}) == 0
    finally:
        await database["oplog_probe"].drop()
        await db.close(client)
