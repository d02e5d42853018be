"""The sandbox's demo page (`/demo`): the citizens' phones side by side, next to links to the console and the web
form, so a newcomer running `make run` plays citizen and agent at once."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic_settings import BaseSettings, SettingsConfigDict

router = APIRouter(include_in_schema=False)

#: Each phone and the sandbox pages that may play it, best first; a channel whose page is not built yet says so.
PHONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("WhatsApp", ("/phone",)),
    ("Messenger", ("/phone/messenger", "/messenger", "/social")),
    ("Instagram", ("/phone/instagram", "/instagram", "/social")),
    ("X", ("/phone/x", "/x", "/social")),
)


class DemoLinks(BaseSettings):
    """Where the other processes of `make run` listen (the supervisor passes these to every process)."""

    model_config = SettingsConfigDict(extra="ignore")

    ticketing_url: str = "http://127.0.0.1:8000"
    ingest_social_url: str = "http://127.0.0.1:8002"


def _paths(routes: Iterable[Any]) -> Iterator[str]:
    """Every route path, looking into included routers (newer FastAPI keeps them as one wrapping route; the
    sandbox's routers have no prefix)."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield path
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _paths(inner.routes)


def _served(request: Request) -> set[str]:
    return set(_paths(request.app.routes))


def render(served: set[str], links: DemoLinks) -> str:
    panels = []
    for name, candidates in PHONES:
        page = next((p for p in candidates if p in served), None)
        if page is None:
            body = '<p class="soon">Segera hadir: halaman ponsel kanal ini sedang dibuat.</p>'
        else:
            src = html.escape(page, quote=True)
            body = f'<iframe src="{src}" title="Ponsel {html.escape(name)}"></iframe><a href="{src}">Buka sendiri</a>'
        panels.append(f'<section class="phone"><h2>{html.escape(name)}</h2>{body}</section>')
    console = html.escape(links.ticketing_url.rstrip("/") + "/console/", quote=True)
    form = html.escape(links.ingest_social_url.rstrip("/") + "/", quote=True)
    kiosk = html.escape(links.ingest_social_url.rstrip("/") + "/kiosk/33.17.10.2034", quote=True)
    return f"""<!doctype html><html lang="id"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Demo Suara</title><style>
body{{margin:0;font:15px/1.45 system-ui,sans-serif;background:#eef1f4;color:#1b1b1b}}
header{{background:#0b4f8a;color:#fff;padding:.75rem 1rem}} header a{{color:#fff}}
.phones{{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:1rem;padding:1rem}}
.phone{{background:#222;border-radius:1.5rem;padding:.75rem;color:#fff;display:flex;flex-direction:column;gap:.4rem}}
.phone h2{{margin:0;font-size:1rem;text-align:center}} .phone a{{color:#cde}}
iframe{{width:100%;height:600px;border:0;border-radius:1rem;background:#fff}}
.soon{{background:#fff;color:#4a4a4a;border-radius:1rem;padding:2rem 1rem;text-align:center;min-height:200px}}
</style></head><body><header><h1>Demo Suara: jadi warga dan petugas sekaligus</h1>
<p>Tulis dari ponsel di bawah, lalu jawab dari <a href="{console}" target="_blank">konsol petugas</a>
(token <code>dev-only-admin-token</code>). Warga tanpa media sosial memakai <a href="{form}" target="_blank">formulir
web</a> atau <a href="{kiosk}" target="_blank">kios desa</a>.</p></header>
<main class="phones">{"".join(panels)}</main></body></html>"""


@router.get("/demo", response_class=HTMLResponse)
async def demo(request: Request) -> HTMLResponse:
    return HTMLResponse(render(_served(request), DemoLinks()))
