"""The Graph API client against local stand-ins of Meta (the channel sandbox, and a server misbehaving on
purpose): versioned URLs, the bearer token, and Meta's errors as typed, classified exceptions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from suara_devstack.infra import free_port
from suara_devstack.sandbox.app import create_app
from suara_devstack.testing import serve_app
from suara_shared.graph import GraphClient, GraphError, PermanentGraphError, TokenInvalid, TransientGraphError

SITI = "6281234567890"
SEND = {"messaging_product": "whatsapp", "to": SITI, "type": "text", "text": {"body": "Laporan diterima"}}


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    async with serve_app(create_app()) as url:
        yield url


@pytest.fixture
async def odd_meta() -> AsyncIterator[str]:
    """A Meta that answers an HTML 502, a 429 with Retry-After, and shows which calls carried a token."""
    app = FastAPI()

    @app.post("/v23.0/html/messages")
    async def html() -> PlainTextResponse:
        return PlainTextResponse("<html>Bad Gateway</html>", status_code=502)

    @app.post("/v23.0/busy/messages")
    async def busy() -> JSONResponse:
        error = {"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4}
        return JSONResponse({"error": error}, status_code=400, headers={"Retry-After": "7"})

    @app.get("/file")
    async def file(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.headers.get("authorization") or "no token")

    async with serve_app(app) as url:
        yield url


async def test_a_call_goes_to_the_versioned_url_with_the_bearer_token(sandbox: str) -> None:
    graph = GraphClient(base_url=sandbox + "/", version="v23.0", access_token="sandbox-token")
    try:
        answer = await graph.post("106540352242922/messages", json=SEND)
    finally:
        await graph.aclose()
    assert answer["messages"][0]["id"].startswith("wamid.")
    assert graph.url("/106540352242922/messages") == f"{sandbox}/v23.0/106540352242922/messages"


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        (130429, TransientGraphError, True),
        (131000, TransientGraphError, True),
        (131026, PermanentGraphError, False),
        (131047, PermanentGraphError, False),
        (190, TokenInvalid, False),
    ],
)
async def test_meta_errors_become_typed_errors_with_their_fields(
    sandbox: str, code: int, kind: type[Exception], transient: bool
) -> None:
    async with httpx.AsyncClient() as http:  # the sandbox's control API: the next send to Siti gets `code`
        await http.post(f"{sandbox}/_sandbox/whatsapp/recipients/{SITI}/script", json={"errors": [code]})
    graph = GraphClient(base_url=sandbox, version="v23.0", access_token="sandbox-token")
    try:
        with pytest.raises(kind) as caught:
            await graph.post("106540352242922/messages", json=SEND)
    finally:
        await graph.aclose()
    error = caught.value
    assert isinstance(error, GraphError)
    assert error.transient is transient
    assert error.code == code and error.code_text == str(code)
    assert error.fbtrace_id
    assert error.error_type == "OAuthException"
    if code == 190:
        assert error.subcode == 463
    else:
        assert error.details and error.details in error.detail_text


async def test_html_errors_throttling_hints_and_the_network_are_classified(odd_meta: str) -> None:
    graph = GraphClient(base_url=odd_meta, version="v23.0", access_token="t")
    nowhere = GraphClient(base_url=f"http://127.0.0.1:{free_port()}", version="v23.0", access_token="t", timeout=2)
    try:
        with pytest.raises(TransientGraphError) as html:
            await graph.post("html/messages", json={})
        assert (html.value.status, html.value.code, html.value.code_text) == (502, None, "http_502")
        with pytest.raises(TransientGraphError) as busy:
            await graph.post("busy/messages", json={})
        assert (busy.value.code, busy.value.retry_after) == (4, 7.0)
        with pytest.raises(TransientGraphError) as down:
            await nowhere.get("me")
        assert down.value.code_text == "network"
    finally:
        await graph.aclose()
        await nowhere.aclose()


async def test_downloads_show_the_token_only_to_the_api_host(odd_meta: str) -> None:
    graph = GraphClient(base_url=odd_meta, version="v23.0", access_token="secret-token")
    try:
        async with graph.download(f"{odd_meta}/file") as response:
            assert (await response.aread()) == b"Bearer secret-token"
        elsewhere = odd_meta.replace("127.0.0.1", "localhost")
        async with graph.download(f"{elsewhere}/file") as response:
            assert (await response.aread()) == b"no token"
    finally:
        await graph.aclose()
