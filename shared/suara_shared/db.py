"""The one place that knows the MongoDB driver (PyMongo's async API)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)

Document = dict[str, Any]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]

__all__ = [
    "Collection",
    "Database",
    "Document",
    "DuplicateKeyError",
    "MongoUnavailable",
    "PyMongoError",
    "ReturnDocument",
    "UpdateOne",
    "close",
    "connect",
    "is_unavailable",
    "ping",
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


def is_unavailable(exc: BaseException) -> bool:
    """Return True when the error is the database being unreachable, not a problem with the data."""
    return isinstance(exc, MongoUnavailable)
