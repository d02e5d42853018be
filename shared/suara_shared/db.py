"""The one place that knows the MongoDB driver (PyMongo's async API)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, TypeVar

from gridfs.asynchronous import AsyncGridFSBucket
from gridfs.errors import FileExists, NoFile
from pymongo import AsyncMongoClient, InsertOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteError,
)

Document = dict[str, Any]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]
#: Files of any size, in chunks: `<name>.files` and `<name>.chunks` (GridFS).
Bucket = AsyncGridFSBucket

__all__ = [
    "Bucket",
    "Collection",
    "Database",
    "Document",
    "DuplicateKeyError",
    "FileExists",
    "GroupWrites",
    "MongoUnavailable",
    "NoFile",
    "PyMongoError",
    "ReturnDocument",
    "UpdateOne",
    "close",
    "connect",
    "files",
    "find_in",
    "increment",
    "is_unavailable",
    "parts",
    "ping",
    "upsert_guarded",
]

#: Errors that mean "the database is not there right now", worth waiting out rather than giving up on a message.
MongoUnavailable: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)


def connect(uri: str, *, timeout_ms: int = 5000) -> tuple[AsyncMongoClient[Document], Database]:
    """Open a client (connections are made lazily) and return it with the URI's default database."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        appname="suara",
    )
    return client, client.get_default_database(default="suara")


def files(database: Database, name: str) -> Bucket:
    """A bucket of files kept in the database itself (GridFS): replicated and backed up with it, and the same for
    every pod, where a pod's disk is neither."""
    return AsyncGridFSBucket(database, bucket_name=name)


async def ping(db: Database) -> bool:
    """Return True when the database answers."""
    try:
        await db.command("ping")
    except PyMongoError:
        return False
    return True


async def close(client: AsyncMongoClient[Document]) -> None:
    """Close the client and its connections."""
    await client.close()


async def increment(collection: Collection, _id: Any, field: str, *, also: Document | None = None) -> Document | None:
    """Add one to `field` of the document `_id` (setting `also` with it) atomically, and return the document as
    read with both applied (a field another writer changed meanwhile may be older); None when there is none.

    A compare-and-set on the field's value, retried if another writer came in between, where findAndModify would
    take one round trip: the embedded database answers findAndModify by reading the whole collection to write the
    one document it found (70 ms a call at 10,000 documents; this costs 2 ms at any size). `also` must name
    top-level fields."""
    while True:
        doc = await collection.find_one({"_id": _id})
        if doc is None:
            return None
        current = doc.get(field)
        update: Document = {"$inc": {field: 1}}
        if also:
            update["$set"] = also
        if (await collection.update_one({"_id": _id, field: current}, update)).matched_count == 1:
            doc.update(also or {})
            doc[field] = (current or 0) + 1
            return doc


async def upsert_guarded(collection: Collection, writes: list[UpdateOne]) -> int:
    """Apply upserts whose match is an `_id` with a guard (`{"_id": k, "rank": {"$lt": r}}`), `PART` to a command,
    and return how many documents they inserted or changed. Where the document exists but fails its guard, the
    upsert's insert collides on the `_id`: that is the guard refusing, and the write is skipped. Any other error is
    raised."""
    done = 0
    for part in parts(writes):
        try:
            result: dict[str, Any] = dict((await collection.bulk_write(part, ordered=False)).bulk_api_result)
        except BulkWriteError as exc:
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise
            result = dict(exc.details)
        done += int(result.get("nUpserted", 0)) + int(result.get("nModified", 0))
    return done


#: The most values one `$in` carries, and the most documents one write command carries. The embedded database's
#: cost per value or document grows with the length of the list: per value of an `$in` found through an index,
#: 0.07 ms in lists of 50, 0.15 of 200, 0.32 of 500, 1.2 of 2,000 (6,000 documents); per ticket of an
#: `update_many`, 0.37 ms for 50, 0.92 for 500 (measured). A longer list goes as several of this many.
PART = 50

T = TypeVar("T")


def parts(values: Iterable[T]) -> list[list[T]]:
    """`values` cut into lists of at most `PART`, each for one `$in` or one write command."""
    items = list(values)
    return [items[i : i + PART] for i in range(0, len(items), PART)]


async def find_in(
    collection: Collection,
    field: str,
    values: Iterable[Any],
    where: Document | None = None,
    projection: Document | None = None,
) -> list[Document]:
    """The documents matching `where` whose `field` is one of `values`, asked `PART` values at a time (see
    `parts`)."""
    found: list[Document] = []
    for part in parts(values):
        found += await collection.find({**(where or {}), field: {"$in": part}}, projection).to_list(None)
    return found


def is_unavailable(exc: BaseException) -> bool:
    """Return True when the error is the database being unreachable, not a problem with the data."""
    return isinstance(exc, MongoUnavailable)


class GroupWrites:
    """Single-document writes to one collection that callers ask for at about the same moment, sent as one bulk
    write (a group commit): while one group is with the database the next one gathers. Each caller still waits
    for its own write to be acknowledged and gets its own outcome, so nothing a caller may assume changes; the
    database sees one round trip for many (one per write costs the embedded database about three times as much).

    Updates must be safe to apply twice: when a group's updates did not all match, each is applied again alone to
    learn which did."""

    def __init__(self, collection: Collection, *, most: int = 256) -> None:
        self._collection = collection
        self._most = most
        #: (document to insert, None) or (match, update), with the caller's future.
        self._pending: list[tuple[Document, Document | None, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, document: Document) -> None:
        """Insert `document`; raises DuplicateKeyError when its `_id` is taken."""
        await self._ask(document, None)

    async def update(self, match: Document, update: Document) -> bool:
        """Apply `update` to the document `match` finds; True when one matched."""
        return await self._ask(match, update)

    async def _ask(self, first: Document, update: Document | None) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((first, update, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        await asyncio.sleep(0)  # the callers ready to ask in this turn of the loop join the first group
        while self._pending:
            group, self._pending = self._pending[: self._most], self._pending[self._most :]
            try:
                outcomes = await self._write_group([(first, update) for first, update, _ in group])
            except asyncio.CancelledError:  # shutting down: nobody is left waiting for ever, nothing written later
                for _, _, done in [*group, *self._pending]:
                    done.cancel()
                self._pending = []
                raise
            except Exception as exc:  # the database away, say: every caller of the group gets the error
                outcomes = [exc] * len(group)
            for (_, _, done), outcome in zip(group, outcomes, strict=True):
                if done.done():
                    continue  # its caller was cancelled
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    async def _write_group(self, writes: list[tuple[Document, Document | None]]) -> list[bool | BaseException]:
        ops = [InsertOne(first) if update is None else UpdateOne(first, update) for first, update in writes]
        try:
            result: dict[str, Any] = dict((await self._collection.bulk_write(ops, ordered=False)).bulk_api_result)
        except BulkWriteError as exc:
            result = dict(exc.details)
        outcomes: list[bool | BaseException] = [True] * len(ops)
        for error in result.get("writeErrors", []):
            kind = DuplicateKeyError if error.get("code") == 11000 else WriteError
            outcomes[error["index"]] = kind(error.get("errmsg", "write error"), error.get("code"), error)
        updates = [i for i, (_, update) in enumerate(writes) if update is not None and outcomes[i] is True]
        if updates and result.get("nMatched", 0) < len(updates):
            for i in updates:  # which did not match: each again, alone (rare: a claim another process took)
                match, update = writes[i]
                assert update is not None
                outcomes[i] = (await self._collection.update_one(match, update)).matched_count == 1
        return outcomes
