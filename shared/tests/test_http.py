"""What an operator reads off /metrics: every request counted under its route's template and status class."""

from __future__ import annotations

import gc

import httpx
import pytest
from fastapi import FastAPI

from suara_shared import http
from suara_shared.http import install_error_handlers, ops_router
from suara_shared.settings import ServiceSettings


async def _ok() -> bool:
    return True


def _count(text: str, path: str, status: str) -> float:
    for line in text.splitlines():
        if line.startswith("suara_http_requests_total{") and f'route="{path}"' in line and f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_requests_are_counted_by_route_template_and_status_class() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(ops_router({"nothing": _ok}))

    @app.get("/items/{item}")
    async def item(item: int) -> dict[str, int]:
        if item == 13:
            raise RuntimeError("unlucky")
        return {"item": item}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as client:
        before = (await client.get("/metrics")).text
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
        assert (await client.get("/items/x")).status_code == 422
        assert (await client.get("/items/13")).status_code == 500
        assert (await client.get("/nowhere")).status_code == 404
        after = (await client.get("/metrics")).text
    for path, status, added in (
        ("/items/{item}", "2xx", 2),
        ("/items/{item}", "4xx", 1),
        ("/items/{item}", "5xx", 1),
        ("unmatched", "4xx", 1),
    ):
        assert _count(after, path, status) - _count(before, path, status) == added, (path, status)


def test_what_startup_built_is_left_out_of_full_collections_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection walked everything the process had loaded, stopping ingest-wa's event loop for 60-76 ms
    with webhooks waiting; `serve` freezes it all before the first request, so such a pass walks only what
    requests created since."""
    frozen_when_served: list[int] = []
    monkeypatch.setattr(http, "configure_logging", lambda *_: None)
    monkeypatch.setattr(http.uvicorn, "run", lambda *_, **__: frozen_when_served.append(gc.get_freeze_count()))
    gc.unfreeze()
    try:
        http.serve(FastAPI(), ServiceSettings(), service="test", port=0)
        # Everything alive at that point: far more than the app alone (every module, class and function).
        assert frozen_when_served and frozen_when_served[0] > 10_000
    finally:
        gc.unfreeze()
