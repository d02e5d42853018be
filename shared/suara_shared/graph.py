"""A small async client of Meta's Graph API (httpx): versioned base URL, bearer token, typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

#: Graph error codes worth retrying later: Graph's own "temporary" and throttling codes, and WhatsApp's
#: throughput, pair-rate and "something went wrong" codes (channels.md §1.7). Everything else is permanent.
TRANSIENT_CODES = frozenset(
    {
        1,  # API unknown, "possibly a temporary issue"
        2,  # API service temporarily unavailable
        4,  # application request limit
        17,  # user request limit
        32,  # page request limit
        341,  # application limit
        613,  # calls within one hour exceeded
        *range(80001, 80015),  # business use-case rate limits (80007: WhatsApp Business Account)
        130429,  # WhatsApp: Cloud API throughput reached
        131000,  # WhatsApp: something went wrong
        131016,  # WhatsApp: service unavailable
        131056,  # WhatsApp: (business, consumer) pair rate limit
        133004,  # WhatsApp: server temporarily unavailable
    }
)
#: The access token expired or was revoked: nothing sent with it can succeed until someone replaces it.
TOKEN_INVALID_CODES = frozenset({190})
#: Hosts that may see the bearer token when a download URL comes from an API answer (media, attachments).
META_MEDIA_HOST_SUFFIXES = ("fbsbx.com", "facebook.com", "fbcdn.net", "whatsapp.net", "cdninstagram.com")


def on_meta_host(url: str) -> bool:
    """Whether the URL is on one of Meta's hosts (the Graph API, its CDNs)."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == s or host.endswith("." + s) for s in META_MEDIA_HOST_SUFFIXES)


class GraphError(Exception):
    """The Graph API did not do what was asked. Carries Meta's error fields for the ticket and the logs."""

    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"({code if code is not None else status}) {message}")
        self.message = message
        self.status = status
        self.code = code
        self.subcode = subcode
        self.error_type = error_type
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.retry_after = retry_after

    @property
    def code_text(self) -> str:
        """Meta's code as text (`131026`), else `http_<status>`, else `network`, for tickets and metric labels."""
        if self.code is not None:
            return str(self.code)
        return f"http_{self.status}" if self.status is not None else "network"

    @property
    def detail_text(self) -> str:
        """What a person reads on the ticket: Meta's details, then the message, and the trace id to quote."""
        parts = [self.details or self.message]
        if self.fbtrace_id:
            parts.append(f"fbtrace_id {self.fbtrace_id}")
        return "; ".join(parts)


class TransientGraphError(GraphError):
    """Worth retrying with backoff: a 5xx, a 429, a throttling code, the network."""

    transient = True


class PermanentGraphError(GraphError):
    """Retrying the same call cannot help."""


class TokenInvalid(PermanentGraphError):
    """Error 190: the access token expired or was revoked."""


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(response: httpx.Response) -> GraphError:
    """Meta's `{"error": {message, type, code, error_subcode, error_data.details, fbtrace_id}}` as a typed error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = _int(error.get("code"))
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    fields: dict[str, Any] = {
        "status": response.status_code,
        "code": code,
        "subcode": _int(error.get("error_subcode")),
        "error_type": error.get("type") if isinstance(error.get("type"), str) else None,
        "details": details if isinstance(details, str) else None,
        "fbtrace_id": error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None,
        "retry_after": _retry_after(response),
    }
    message = error.get("message")
    message = message if isinstance(message, str) and message else response.reason_phrase or "Graph API error"
    if code in TOKEN_INVALID_CODES:
        return TokenInvalid(message, **fields)
    if code in TRANSIENT_CODES or response.status_code == 429 or response.status_code >= 500:
        return TransientGraphError(message, **fields)
    return PermanentGraphError(message, **fields)


class GraphClient:
    """Calls `<base_url>/<version>/<path>` with `Authorization: Bearer <token>`; raises GraphError subclasses.

    Channel-neutral: WhatsApp, Messenger and Instagram adapters each hold one with their own token."""

    def __init__(
        self,
        *,
        base_url: str,
        version: str,
        access_token: str,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self._token = access_token
        self._trusted_host = urlsplit(self.base_url).hostname or ""
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            headers={"User-Agent": "suara-graph-client"},
            follow_redirects=False,
        )

    def url(self, path: str) -> str:
        """The versioned URL of a Graph path such as `106540352242922/messages`."""
        return f"{self.base_url}/{self.version}/{path.lstrip('/')}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One Graph call; its JSON answer on 2xx, else the typed error."""
        try:
            response = await self._http.request(method, self.url(path), params=params, json=json, headers=self._auth())
        except httpx.HTTPError as exc:
            # The call may or may not have reached Meta; the caller's retry decides (sends are retried too).
            raise TransientGraphError(f"network error: {type(exc).__name__}") from exc
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise PermanentGraphError(
                    "the Graph API answered something that is not a JSON object", status=response.status_code
                )
            return body
        raise error_from_response(response)

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, *, json: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, json=json)

    def _may_see_token(self, url: str) -> bool:
        """Whether the URL is on Meta's hosts (its CDNs included) or the API's own (a fake's, in development)."""
        return (urlsplit(url).hostname or "").lower() == self._trusted_host or on_meta_host(url)

    @asynccontextmanager
    async def download(self, url: str, *, token: bool = True) -> AsyncIterator[httpx.Response]:
        """Stream a file from a URL an API answer gave (e.g. WhatsApp media), with the bearer token only if the
        host is Meta's or the API's own, and never with `token=False` (a signed CDN link needs none). The response
        is open inside the block: read it with `aiter_bytes()`."""
        headers = self._auth() if token and self._may_see_token(url) else {}
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if not response.is_success:
                    await response.aread()
                    raise error_from_response(response)
                yield response
        except httpx.HTTPError as exc:
            raise TransientGraphError(f"network error: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._http.aclose()
