"""The end-to-end latencies the dashboard and the alerts read are there once a complaint went through: receipt to
ticket stored (ticketing), reply created to sent (notifier), on the real processes of the stack."""

from __future__ import annotations

import re

import httpx
import pytest

from suara_devstack.stack import Stack
from suara_devstack.testing import eventually, url
from suara_shared.events import new_id

pytestmark = pytest.mark.e2e


def _count(text: str, metric: str, channel: str) -> float:
    """The `_count` sample of a histogram for one channel in Prometheus' text format (0 when absent)."""
    match = re.search(rf'^{metric}_count\{{channel="{channel}"\}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_a_web_complaint_shows_in_both_latency_histograms(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as http:

        async def counts() -> tuple[float, float]:
            stored = (await http.get(url(stack, "ticketing", "/metrics"))).text
            sent = (await http.get(url(stack, "notifier", "/metrics"))).text
            return (
                _count(stored, "suara_inbound_to_ticket_seconds", "web"),
                _count(sent, "suara_reply_to_platform_seconds", "web"),
            )

        before = await counts()
        filed = await http.post(
            url(stack, "ingest-social", "/api/v1/web/complaints"),
            json={"text": f"Jalan berlubang di Desa Tireman, mohon segera ditambal ({new_id()[:8]}).", "name": "Budi"},
        )
        assert filed.status_code == 202, filed.text

        async def both_grew() -> tuple[float, float] | None:
            now = await counts()
            return now if now[0] > before[0] and now[1] > before[1] else None

        # The complaint is stored (first histogram), then its acknowledgement is sent on the web channel (second).
        await eventually(both_grew, within=45, what="the complaint in both latency histograms")
