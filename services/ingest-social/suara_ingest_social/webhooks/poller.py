"""The X poller: mentions of our account and direct-message events, read through tweepy's AsyncClient and
published like webhooks. Its cursors live in the database (`x_cursors`, ingest-social's only collection), saved
after each page the broker acknowledged, so a restart neither repeats nor misses anything; polling is paced by
X's `x-rate-limit-*` headers and pauses until the reset time after a 429."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from tweepy import HTTPException, TooManyRequests, TweepyException
from tweepy.asynchronous import AsyncClient
from yarl import URL

from suara_shared import db, topics
from suara_shared.events import Channel, Event, InboundMessage
from suara_shared.kafka import BrokerUnavailable, Publisher
from suara_shared.metrics import WEBHOOK_EVENTS

from ..config import Settings
from . import x

log = logging.getLogger(__name__)

#: tweepy's hard-coded host; requests to it go to `X_API_URL` instead (channels.md §5.2).
TWEEPY_HOST = "https://api.twitter.com"
COLLECTION = "x_cursors"
TWEET_FIELDS = ["created_at", "conversation_id", "author_id", "referenced_tweets", "in_reply_to_user_id"]
DM_FIELDS = ["id", "text", "sender_id", "created_at", "dm_conversation_id", "event_type"]


class RewritingSession:
    """What tweepy's AsyncClient needs of a session (`request`, `close`), sending to `base_url` instead of X's
    host, and keeping the rate-limit headers of the last answer for the poller's pacing."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self.rate_limit: dict[str, str] = {}

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        text = str(url)
        target: Any = url
        if text.startswith(TWEEPY_HOST):
            # Already encoded by tweepy when it signed the request (OAuth 1.0a): keep it exactly so.
            target = URL(self.base_url + text[len(TWEEPY_HOST) :], encoded=True)
        return _Recording(self._session.request(method, target, **kwargs), self)

    async def close(self) -> None:
        await self._session.close()


class _Recording:
    def __init__(self, inner: Any, session: RewritingSession) -> None:
        self._inner = inner
        self._session = session

    async def __aenter__(self) -> Any:
        response = await self._inner.__aenter__()
        self._session.rate_limit = {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-rate")}
        return response

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)


def make_client(settings: Settings) -> tuple[AsyncClient, RewritingSession]:
    """An AsyncClient with the settings' credentials, talking to `X_API_URL`. Call inside the event loop."""

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    client = AsyncClient(
        bearer_token=secret(settings.x_bearer_token),
        consumer_key=secret(settings.x_consumer_key),
        consumer_secret=secret(settings.x_consumer_secret),
        access_token=secret(settings.x_access_token),
        access_token_secret=secret(settings.x_access_token_secret),
        return_type=dict,
    )
    session = RewritingSession(settings.x_api_url)
    client.session = session
    return client, session


class XPoller:
    """Polls mentions (bearer token) and, with user-context credentials, direct-message events."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        session: RewritingSession,
        cursors: db.Collection,
        publisher: Publisher,
        user_id: str,
        interval: float,
        poll_dms: bool,
        page_size: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._session = session
        self._cursors = cursors
        self._publisher = publisher
        self._user_id = user_id
        self._interval = interval
        self._poll_dms = poll_dms
        self._page_size = page_size
        self._clock = clock
        self._stopping = asyncio.Event()
        #: stream -> unix time before which it is not polled (X's 429 reset, or a spent rate-limit window).
        self.paused_until: dict[str, float] = {}
        self.last_error: str | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Poll until stopped; waits the interval between rounds, longer while every stream is paused."""
        await self._load_pauses()
        while not self._stopping.is_set():
            await self.poll_once()
            wait = self._interval
            if self.paused_until:
                soonest = min(self.paused_until.values()) - self._clock()
                wait = max(wait, min(soonest, 15 * 60))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(wait, 0.05))

    async def poll_once(self) -> int:
        """One round over both streams; returns how many messages were published. Never raises for X's or the
        broker's errors: they are logged, and the next round starts where the cursor stayed."""
        published = 0
        streams = [("mentions", self._mentions)]
        if self._poll_dms:
            streams.append(("dm_events", self._dm_events))
        for stream, poll in streams:
            if self._clock() < self.paused_until.get(stream, 0):
                continue
            try:
                published += await poll(stream)
                self.last_error = None
            except TooManyRequests as exc:
                until = float(exc.reset_time) if exc.reset_time else self._clock() + self._interval
                await self._pause(stream, until)
                log.warning("x rate limit hit; polling paused", extra={"stream": stream, "until": until})
            except (HTTPException, TweepyException, aiohttp.ClientError, TimeoutError) as exc:
                self.last_error = type(exc).__name__
                log.warning(
                    "x poll failed; next round resumes from the saved cursor",
                    extra={"stream": stream, "error": repr(exc)[:300]},
                )
            except BrokerUnavailable as exc:
                self.last_error = "broker_unavailable"
                log.warning("broker did not take polled x messages; retried next round", extra={"error": repr(exc)})
        return published

    # --- streams -------------------------------------------------------------------------------------------

    async def _mentions(self, stream: str) -> int:
        key = f"{stream}:{self._user_id}"
        cursor = await self._cursors.find_one({"_id": key}) or {}
        published = 0
        while True:
            params: dict[str, Any] = {
                "expansions": ["author_id"],
                "tweet_fields": TWEET_FIELDS,
                "user_fields": ["username", "name"],
                "max_results": self._page_size,
            }
            if cursor.get("since_id"):
                params["since_id"] = cursor["since_id"]
            if cursor.get("pagination_token"):
                params["pagination_token"] = cursor["pagination_token"]
            page = await self._client.get_users_mentions(self._user_id, user_auth=False, **params)
            await self._pace(stream)
            body = _mapping(page)
            meta = _mapping(body.get("meta"))
            users = x.users_by_id(_mapping(body.get("includes")))
            tweets = [t for t in body.get("data") or [] if isinstance(t, Mapping)]
            messages = [m for t in tweets if (m := x.mention(t, users, own_id=self._user_id)) is not None]
            await self._publish(list(reversed(messages)))  # oldest first: a thread's order
            published += len(messages)
            pending = cursor.get("pending_newest") or meta.get("newest_id")
            next_token = meta.get("next_token")
            if next_token and tweets:
                cursor = {**cursor, "pending_newest": pending, "pagination_token": next_token}
            else:
                newest = pending or cursor.get("since_id")
                cursor = {"since_id": newest, "pending_newest": None, "pagination_token": None}
            await self._save(key, cursor)
            if not cursor.get("pagination_token"):
                return published

    async def _dm_events(self, stream: str) -> int:
        key = f"{stream}:{self._user_id}"
        cursor = await self._cursors.find_one({"_id": key}) or {}
        newest_known = x.id_order(str(cursor.get("newest_id") or "0"))
        published = 0
        while True:
            params: dict[str, Any] = {
                "dm_event_fields": DM_FIELDS,
                "event_types": "MessageCreate",
                "expansions": ["sender_id"],
                "user_fields": ["username", "name"],
                "max_results": self._page_size,
            }
            if cursor.get("pagination_token"):
                params["pagination_token"] = cursor["pagination_token"]
            page = await self._client.get_direct_message_events(**params)
            await self._pace(stream)
            body = _mapping(page)
            meta = _mapping(body.get("meta"))
            users = x.users_by_id(_mapping(body.get("includes")))
            events = [e for e in body.get("data") or [] if isinstance(e, Mapping)]
            fresh = [e for e in events if x.id_order(str(e.get("id"))) > newest_known]
            messages = [m for e in fresh if (m := x.dm_event(e, users, own_id=self._user_id)) is not None]
            await self._publish(list(reversed(messages)))
            published += len(messages)
            seen = [str(e.get("id")) for e in fresh]
            pending = max([cursor.get("pending_newest") or "0", *seen], key=x.id_order)
            reached_known = len(fresh) < len(events)
            next_token = meta.get("next_token")
            if next_token and events and not reached_known:
                cursor = {**cursor, "pending_newest": pending, "pagination_token": next_token}
            else:
                newest = max([pending, str(cursor.get("newest_id") or "0")], key=x.id_order)
                cursor = {
                    "newest_id": newest if newest != "0" else None,
                    "pending_newest": None,
                    "pagination_token": None,
                }
            await self._save(key, cursor)
            if not cursor.get("pagination_token"):
                return published

    # --- plumbing ------------------------------------------------------------------------------------------

    async def _publish(self, messages: list[InboundMessage]) -> None:
        if not messages:
            return
        items: list[tuple[str, Event, bytes | None]] = [(topics.INBOUND, m, m.partition_key) for m in messages]
        await self._publisher.publish_many(items)
        for message in messages:
            WEBHOOK_EVENTS.labels(Channel.X.value, "echo" if message.metadata.get("echo") else message.kind.value).inc()

    async def _save(self, key: str, cursor: Mapping[str, Any]) -> None:
        fields = {k: v for k, v in cursor.items() if k != "_id"}
        await self._cursors.update_one({"_id": key}, {"$set": fields}, upsert=True)

    async def _pace(self, stream: str) -> None:
        """A spent window (`x-rate-limit-remaining: 0`) pauses the stream until `x-rate-limit-reset`."""
        headers = self._session.rate_limit
        remaining, reset = headers.get("x-rate-limit-remaining", ""), headers.get("x-rate-limit-reset", "")
        if remaining == "0" and reset.isdigit():
            await self._pause(stream, float(reset))

    async def _pause(self, stream: str, until: float) -> None:
        self.paused_until[stream] = until
        await self._cursors.update_one(
            {"_id": f"{stream}:{self._user_id}"}, {"$set": {"paused_until": until}}, upsert=True
        )

    async def _load_pauses(self) -> None:
        """A pause outlives a restart: X would only answer 429 again."""
        for stream in ("mentions", "dm_events"):
            doc = await self._cursors.find_one({"_id": f"{stream}:{self._user_id}"}, {"paused_until": 1})
            until = (doc or {}).get("paused_until")
            if isinstance(until, int | float) and until > self._clock():
                self.paused_until[stream] = float(until)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
