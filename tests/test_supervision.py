"""A service that crashes under the supervisor is reported and comes back, never silently gone."""

from __future__ import annotations

import time

import httpx
import pytest

from suara_devstack.stack import Stack
from suara_devstack.testing import url

pytestmark = pytest.mark.e2e


def test_crashed_service_is_reported_and_restarted(stack: Stack) -> None:
    stack.kill_service("ingest-wa")
    reports = stack.watch_once()
    assert len(reports) == 1 and reports[0].startswith("ingest-wa exited with code -9")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert stack.watch_once() == []
        try:
            if httpx.get(url(stack, "ingest-wa", "/healthz"), timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError("ingest-wa was not restarted")
    assert "ingest-wa" in stack.running
