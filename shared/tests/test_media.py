"""Where citizens' files are kept (suara_shared.media), against the embedded database: a file is kept once under
its key, whoever writes it and however many write it at once."""

from __future__ import annotations

import asyncio

from suara_shared import db, media

PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 1200  # 300 KiB: two GridFS chunks


async def test_a_file_written_by_many_at_once_is_kept_once_and_leaves_no_stray_chunks(database: db.Database) -> None:
    """Ticketing's keepers (one per pod) and a redelivered web form may write the same file at the same moment: it
    is kept once, readable whole, and a writer that lost the race leaves none of its chunks behind."""
    await media.ensure_index(database)
    metadata = {"mime_type": "image/jpeg", "size": len(PHOTO)}

    await asyncio.gather(
        *(media.put(database, "web", "f00d", PHOTO, filename="lubang.jpg", metadata=metadata) for _ in range(4))
    )
    await media.put(database, "web", "f00d", b"other bytes", filename="lain.jpg", metadata=metadata)

    found = await media.find(database, "web", "f00d")
    assert found is not None and found["metadata"]["key"] == "web:f00d" and found["length"] == len(PHOTO)
    stream = await db.files(database, media.BUCKET).open_download_stream(found["_id"])
    assert await stream.read() == PHOTO
    assert await database[f"{media.BUCKET}.files"].count_documents({}) == 1
    assert await database[f"{media.BUCKET}.chunks"].count_documents({"files_id": {"$ne": found["_id"]}}) == 0
    assert await media.find(database, "whatsapp", "f00d") is None  # the key is the channel's too
