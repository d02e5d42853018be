"""Where citizens' files are kept: one GridFS bucket in the database, each file named by its channel and media id
(`metadata.key`, unique). Ticketing keeps the platforms' files there; ingest-social the web form's photos."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from . import db

#: The bucket (`media.files`, `media.chunks`).
BUCKET = "media"


def key(channel: str, media_id: str) -> str:
    return f"{channel}:{media_id}"


async def ensure_index(database: db.Database) -> None:
    """One file per key: two writers keeping one file at once keep it once (each service that writes asks)."""
    await database[f"{BUCKET}.files"].create_index("metadata.key", unique=True)


async def find(database: db.Database, channel: str, media_id: str) -> db.Document | None:
    """The kept file's GridFS record (its `_id`, `length` and `metadata`); None when it is not kept."""
    return await database[f"{BUCKET}.files"].find_one(
        {"metadata.key": key(channel, media_id)}, {"metadata": 1, "length": 1}
    )


async def put(
    database: db.Database, channel: str, media_id: str, source: Any, *, filename: str, metadata: Mapping[str, Any]
) -> None:
    """Keep `source` (bytes or a binary file) under its key with its metadata (`mime_type`, `size`, `sha256`,
    `filename`...), unless a file is kept under it already. A writer that dies mid-upload leaves chunks no file
    names, never a file that cannot be read."""
    if await find(database, channel, media_id) is not None:
        return
    bucket = db.files(database, BUCKET)
    upload = bucket.open_upload_stream(filename, metadata={**metadata, "key": key(channel, media_id)})
    try:
        await upload.write(source)
        await upload.close()
    except db.FileExists:  # kept meanwhile by another writer: drop this copy's chunks
        with contextlib.suppress(db.NoFile):
            await bucket.delete(upload._id)
