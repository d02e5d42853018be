"""The response team's console: hand-written static pages served at `/console/`, talking only to this API."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .. import live

#: Everything comes from this origin; media previews are blob: URLs made from authenticated fetches.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The pages are small; a new release must reach the team at once.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """The console's files, with headers that keep the page to its own origin."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the console at `/console/` and the API calls only it needs."""
    app.include_router(live.router)
    directory = str(resources.files(__package__).joinpath("static"))

    @app.get("/console", include_in_schema=False)
    async def console_root() -> Any:
        return RedirectResponse("/console/", status_code=308)

    app.mount("/console", ConsoleFiles(directory=directory, html=True), name="console")
