"""X through tweepy's AsyncClient: a mention gets a reply post (`in_reply_to_tweet_id`, masked, at most 280
characters with the status-page link), a direct message a direct message; rate limits wait for X's reset."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
from tweepy import Forbidden, HTTPException, TooManyRequests, TwitterServerError, Unauthorized
from tweepy.asynchronous import AsyncClient
from yarl import URL

from suara_shared.events import Channel, OutboundReply
from suara_shared.metrics import CHANNEL_TOKEN_VALID
from suara_shared.public import public_text

from .base import ChannelAdapter, PermanentSendError, SendResult, TransientSendError
from .public import fit

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"
#: A post's length limit; a direct message takes 10,000 characters.
MAX_POST = 280
MAX_DM = 10_000


class RewritingSession:
    """The session tweepy's AsyncClient uses, sending to `X_API_URL` instead of its hard-coded host."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        if self._session is None:  # created on first use, inside the running loop
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        text = str(url)
        target: Any = url
        if text.startswith(TWEEPY_HOST):
            target = URL(self.base_url + text[len(TWEEPY_HOST) :], encoded=True)
        return self._session.request(method, target, **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _code(exc: HTTPException) -> str:
    codes = [str(c) for c in exc.api_codes if c]
    return codes[0] if codes else f"http_{exc.response.status if exc.response is not None else 'error'}"


def _detail(exc: HTTPException) -> str:
    return "; ".join(str(m) for m in exc.api_messages if m) or str(exc)


class XAdapter(ChannelAdapter):
    """Posts replies and sends direct messages as our X account (OAuth 1.0a user context)."""

    channel = Channel.X

    def __init__(self, *, client: AsyncClient, session: RewritingSession, status_url: str) -> None:
        self._client = client
        self._session = session
        self._status_url = status_url.rstrip("/")
        CHANNEL_TOKEN_VALID.labels(self.channel.value).set(1)

    async def send(self, reply: OutboundReply) -> SendResult:
        context = reply.reply_context
        if reply.conversation_key.startswith("dm:") or context is None or not context.comment_id:
            answer = await self._call(
                self._client.create_direct_message, participant_id=reply.recipient, text=reply.text[:MAX_DM]
            )
            event_id = str(_data(answer).get("dm_event_id") or "")
            # As the DM poller names it, so that the echo of our own message is matched to this reply.
            return SendResult(platform_message_id=f"dm:{event_id}" if event_id else None)
        link = f"{self._status_url}/{reply.ticket_reference}" if reply.ticket_reference else None
        text = fit(public_text(reply.text), MAX_POST, link=link)
        answer = await self._call(self._client.create_tweet, text=text, in_reply_to_tweet_id=context.comment_id)
        return SendResult(platform_message_id=str(_data(answer).get("id") or "") or None)

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            answer = await method(**kwargs, user_auth=True)
        except TooManyRequests as exc:
            wait = max(0.0, exc.reset_time - time.time()) if exc.reset_time else None
            raise TransientSendError("429", _detail(exc), title="Too Many Requests", retry_after=wait) from exc
        except TwitterServerError as exc:
            raise TransientSendError(_code(exc), _detail(exc), title="X server error") from exc
        except (Unauthorized, Forbidden) as exc:
            # 401: the credentials were refused; 403 (channels.md §4.2): the app or account lost the permission.
            # Either way nothing on X can succeed until someone fixes it; the next send that works turns it green.
            if self._token_valid:
                log.error(
                    "x refused our credentials or permission: every reply on X fails until they are fixed",
                    extra={"code": _code(exc)},
                )
            self._set_token_valid(False)
            title = "Unauthorized" if isinstance(exc, Unauthorized) else "Forbidden"
            raise PermanentSendError(_code(exc), title, _detail(exc)) from exc
        except HTTPException as exc:
            raise PermanentSendError(_code(exc), "X refused the request", _detail(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSendError("network", type(exc).__name__) from exc
        self._set_token_valid(True)
        return answer

    async def aclose(self) -> None:
        await self._session.close()


def _data(answer: Any) -> dict[str, Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    return data if isinstance(data, dict) else {}
