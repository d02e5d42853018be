"""Limits of what one request, and one client, may send: bodies over 1 MiB get 413 before any handler reads them
(the web form with photos: over its own limit, which its Content-Length must declare); a client filing complaints
faster than the web form's rate gets 429."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from prometheus_client import Counter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suara_shared.http import error_body

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """Buffers each request body up to `max_bytes` and answers 413 past it.

    Buffering (instead of counting while the handler reads) lets the refusal be a clean 413 whatever the
    handler does with the body, and the bodies this service takes are small: a form or a webhook batch.

    The paths of `larger` (the forms with photos; a key ending with `/` covers the paths under it) take multipart
    bodies up to their own limit, unbuffered: one must
    declare its length (411 otherwise; browsers always do), 413 past the limit, and the server reads no more than
    it declared."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES, larger: Mapping[str, int] = {}) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        if (limit := self._larger(scope["path"])) is not None and _multipart(scope):
            declared = self._declared_length(scope)
            if declared is None:
                await _refuse(scope, receive, send, 411, "length_required", "send the body with a Content-Length")
            elif declared > limit:
                await _too_large(scope, receive, send, limit)
            else:
                await self.app(scope, receive, send)
            return
        if (self._declared_length(scope) or 0) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _larger(self, path: str) -> int | None:
        """The limit of a path of `larger`: named exactly, or under a key that ends with a slash."""
        if path in self.larger:
            return self.larger[path]
        under = (limit for key, limit in self.larger.items() if key.endswith("/") and path.startswith(key))
        return next(under, None)

    @staticmethod
    def _declared_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _too_large(scope, receive, send, self.max_bytes)


def _multipart(scope: Scope) -> bool:
    return any(
        name == b"content-type" and value.lower().startswith(b"multipart/form-data")
        for name, value in scope.get("headers", ())
    )


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    await _refuse(scope, receive, send, 413, "payload_too_large", f"request body larger than {size}")


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    response = JSONResponse(error_body(code, message), status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the buffered body over once, then waits on the real one (for disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


# --- how often one client may file a complaint ----------------------------------------------------------------


def parse_networks(spec: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """`"10.0.0.0/8, 192.168.1.7"` as networks (a bare address is a network of one); ValueError names a bad one."""
    networks = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {part!r}") from None
    return tuple(networks)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


def client_key(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPv4Network | IPv6Network]) -> str:
    """Who is asking, as a rate-limit key: the peer's address; through trusted proxies, the nearest address in
    `X-Forwarded-For` that is not one of them (the ones left of it are whatever the client chose to send).
    An IPv6 client is its /64: one subscriber holds a whole /64 and could otherwise take a fresh bucket each time."""
    address = _address(peer or "")
    if address is not None and forwarded_for and any(address in net for net in trusted):
        for hop in reversed(forwarded_for.split(",")):
            forwarded = _address(hop)
            if forwarded is None:
                break  # not an address: nothing left of it can be believed either
            address = forwarded
            if not any(forwarded in net for net in trusted):
                break
    if address is None:
        return "unknown"
    if address.version == 6:
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimiter:
    """Token buckets, one per client: `burst` submissions at once, then `per_minute`.

    Memory stays bounded: a bucket idle long enough to have refilled says nothing a new one would not, so such
    buckets are dropped as they age; past `max_clients`, the least recently seen client is forgotten (and so
    forgiven) first."""

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        #: client -> (tokens left, when they were counted), least recently seen first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Spend one submission of `client`: 0.0 when allowed, else the seconds until the next one is."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        self._forget_idle(now)
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        while self._buckets:
            client, (_, then) = next(iter(self._buckets.items()))
            if now - then < full_after:
                return
            del self._buckets[client]


RATE_LIMITED = Counter(
    "suara_web_form_rate_limited_total",
    "Complaint submissions refused because their client sent too many (web form, its API, kiosks)",
    ["route"],
)
