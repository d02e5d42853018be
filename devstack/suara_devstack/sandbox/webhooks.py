"""Posting webhooks to Suara as Meta does: signed with the app secret, retried with backoff until answered 200,
a bounded number in flight.

On aiohttp rather than httpx: the sandbox stands in for the platforms on the very machine `make bench` measures,
and its webhook posts were most of its CPU (py-spy at 500/s: 59 % of the sandbox's samples inside httpx, the
sandbox 22 % of all the CPU the run spent; aiohttp costs about a third as much per request)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter
from typing import Any

import aiohttp


def sign(body: bytes, app_secret: str) -> str:
    """`X-Hub-Signature-256` of a body, as Meta computes it (channels.md §1.5). Written here, not taken from
    ingest's `signature.sign`: the stand-in for the platform must not share a mistake with the code it tests."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookPoster:
    """One platform's webhook deliveries to one Suara endpoint, over a connection pool of its own."""

    def __init__(self, *, app_secret: str, attempts: int, in_flight: int, timeout: float = 10.0) -> None:
        self.app_secret = app_secret
        self.attempts = attempts
        #: Every answer the endpoint gave (or the error instead of one), over all attempts, by status or error name.
        self.answers: Counter[str] = Counter()
        self._gate = asyncio.Semaphore(in_flight)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, record: dict[str, Any]) -> bool:
        """Post `body` until `url` answers 200, backing off up to 30 s between tries; False if it never did.
        `record` is kept up to date with the attempts made and the last answer."""
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, self.app_secret)}
        for attempt in range(self.attempts):
            record["attempts"] = attempt + 1
            try:
                async with self._gate, self._client().post(url, data=body, headers=headers) as response:
                    await response.read()
                answer: str | int = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                answer = type(exc).__name__
            record["status"] = answer
            self.answers[str(answer)] += 1
            if answer == 200:
                return True
            await asyncio.sleep(min(30.0, 0.25 * 2**attempt))
        return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running loop, on first use
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=aiohttp.TCPConnector(limit=0))
        return self._session
