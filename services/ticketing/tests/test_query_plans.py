"""The lookups made for every message and every delivery status are answered from an index, on the embedded
database as on MongoDB. A lookup that walks the whole collection is invisible with a handful of tickets and takes
the database's time from everything else once there are thousands: a status a second then backs the whole desk up
(chaos saw the consumer stall for minutes behind such scans)."""

from __future__ import annotations

from typing import Any

import pytest

from suara_ticketing.tickets.service import by_platform_ids

from .conftest import App


async def plan(app: App, collection: str, query: dict[str, Any]) -> dict[str, Any]:
    database = app.service.messages.database
    explained = await database.command({"explain": {"find": collection, "filter": query}, "verbosity": "queryPlanner"})
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
