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
