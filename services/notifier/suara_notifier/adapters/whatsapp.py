"""WhatsApp Cloud API: text replies (split at 4096 characters, quoting the citizen), the approved template outside
the 24-hour window, read receipts, and Meta's errors turned into a retry, a template fallback or a failure."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from suara_shared.events import Channel, OutboundReply, utcnow
from suara_shared.graph import GraphClient, GraphError, TokenInvalid, TransientGraphError
from suara_shared.metrics import CHANNEL_TOKEN_VALID

from ..config import Settings
from ..ratelimit import RateLimiter
from .base import ChannelAdapter, PermanentSendError, SendError, SendResult, TransientSendError
from .public import fit

log = logging.getLogger(__name__)

#: Longest `text.body` the Cloud API takes (channels.md §1.6); longer replies go as several messages.
MAX_TEXT = 4096
#: Template parameters may hold no newline, tab or run of more than four spaces, and are kept short.
MAX_TEMPLATE_PARAMETER = 1000
#: Meta's "re-engagement message": free-form text refused because the 24-hour window has closed.
WINDOW_CLOSED = "131047"
#: How many half-sent long replies are remembered, so a retry does not send their first parts again.
_PROGRESS_CAPACITY = 1000


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Cut a reply into parts of at most `limit` characters, at a line break or space where there is one."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = max(rest.rfind("\n", 0, limit + 1), rest.rfind(" ", 0, limit + 1))
        if cut < limit // 2:  # no break in the second half: cut in the word rather than send a tiny part
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def one_line(text: str, limit: int = MAX_TEMPLATE_PARAMETER, *, link: str | None = None) -> str:
    """A template parameter: whitespace runs (newlines included) become one space, cut at a word with an ellipsis
    and `link` (the ticket's status page, where the whole reply is) kept whole at its end."""
    return fit(re.sub(r"\s+", " ", text).strip(), limit, link=link)


def _send_error(exc: GraphError) -> SendError:
    if isinstance(exc, TransientGraphError):
        return TransientSendError(exc.code_text, exc.detail_text, title=exc.message, retry_after=exc.retry_after)
    return PermanentSendError(exc.code_text, exc.message, exc.detail_text)


class WhatsAppAdapter(ChannelAdapter):
    """Sends on one business phone number, never faster than its rate."""

    channel = Channel.WHATSAPP

    def __init__(
        self,
        *,
        graph: GraphClient,
        phone_number_id: str,
        template_name: str,
        template_language: str,
        template_parameters: tuple[str, ...],
        limiter: RateLimiter,
        window_margin: timedelta = timedelta(seconds=60),
        status_url: str = "",
    ) -> None:
        self._graph = graph
        self._phone_number_id = phone_number_id
        self._template_name = template_name
        self._template_language = template_language
        self._template_parameters = template_parameters
        self._limiter = limiter
        self._window_margin = window_margin
        self._status_url = status_url.rstrip("/")
        #: outbound_id -> ids of the parts already accepted, for a long reply whose later part failed transiently.
        self._progress: OrderedDict[str, list[str]] = OrderedDict()
        CHANNEL_TOKEN_VALID.labels(self.channel.value).set(1)

    @classmethod
    def from_settings(cls, settings: Settings) -> WhatsAppAdapter:
        assert settings.wa_access_token is not None and settings.wa_phone_number_id
        return cls(
            graph=GraphClient(
                base_url=settings.meta_graph_url,
                version=settings.meta_graph_version,
                access_token=settings.wa_access_token.get_secret_value(),
                timeout=settings.graph_timeout_seconds,
            ),
            phone_number_id=settings.wa_phone_number_id,
            template_name=settings.wa_template_name,
            template_language=settings.wa_template_language,
            template_parameters=tuple(n for n in settings.wa_template_parameters.split(",") if n),
            limiter=RateLimiter(settings.wa_messages_per_second),
            window_margin=timedelta(seconds=settings.wa_window_margin_seconds),
            status_url=settings.public_status_url,
        )

    def pace_by(self, share: Callable[[], float]) -> None:
        self._limiter.share = share

    # --- sending -------------------------------------------------------------------------------------------

    async def send(self, reply: OutboundReply) -> SendResult:
        """Text inside the customer-service window, the approved template outside it (or when Meta says so)."""
        if self._window_closed(reply):
            return await self._send_template(reply)
        try:
            return await self._send_text(reply)
        except PermanentSendError as exc:
            if exc.code != WINDOW_CLOSED:
                raise
            # Our clock or the citizen's timestamps said the window was open; Meta knows better.
            log.info("whatsapp window closed at Meta; sending the template instead", extra=_ids(reply))
            return await self._send_template(reply)

    def _window_closed(self, reply: OutboundReply) -> bool:
        if reply.window_expires_at is None:
            return False  # unknown: try the text; Meta answers 131047 if it was closed after all
        return utcnow() + self._window_margin >= reply.window_expires_at

    async def _send_text(self, reply: OutboundReply) -> SendResult:
        parts = split_text(reply.text)
        done = self._progress.get(reply.outbound_id, [])
        for index in range(len(done), len(parts)):
            payload: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": reply.recipient,
                "type": "text",
                "text": {"preview_url": False, "body": parts[index]},
            }
            if index == 0 and reply.reply_to:
                payload["context"] = {"message_id": reply.reply_to}
            try:
                done.append(await self._message(payload))
            except SendError as exc:
                if done:
                    self._remember_progress(reply.outbound_id, done)
                    exc.partly_sent = True
                raise
        self._progress.pop(reply.outbound_id, None)
        return SendResult(platform_message_id=done[0] or None, more_platform_message_ids=tuple(filter(None, done[1:])))

    def _remember_progress(self, outbound_id: str, done: list[str]) -> None:
        self._progress[outbound_id] = done
        self._progress.move_to_end(outbound_id)
        while len(self._progress) > _PROGRESS_CAPACITY:
            self._progress.popitem(last=False)

    async def _send_template(self, reply: OutboundReply) -> SendResult:
        if not self._template_name:
            raise PermanentSendError(
                "window_closed",
                "Customer-service window closed",
                "the citizen's last message is over 24 hours old and no template is configured (WA_TEMPLATE_NAME)",
            )
        # A reply longer than a template's parameter is cut there; the citizen reads it whole on the status page.
        link = f"{self._status_url}/{reply.ticket_reference}" if self._status_url and reply.ticket_reference else None
        values = {"reference": reply.ticket_reference or "-", "text": one_line(reply.text, link=link)}
        template: dict[str, Any] = {"name": self._template_name, "language": {"code": self._template_language}}
        if self._template_parameters:
            parameters = [{"type": "text", "text": values[name]} for name in self._template_parameters]
            template["components"] = [{"type": "body", "parameters": parameters}]
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": reply.recipient,
            "type": "template",
            "template": template,
        }
        message_id = await self._message(payload)
        log.info("whatsapp template sent", extra={**_ids(reply), "template": self._template_name})
        return SendResult(platform_message_id=message_id or None, template=self._template_name)

    async def mark_read(self, reply: OutboundReply) -> None:
        """Blue ticks on the citizen's message (and, on their phone, on every message before it)."""
        await self._call({"messaging_product": "whatsapp", "status": "read", "message_id": reply.reply_to})

    async def _message(self, payload: dict[str, Any]) -> str:
        """Send one message; return the wamid that statuses will name."""
        answer = await self._call(payload)
        messages = answer.get("messages")
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        message_id = first.get("id")
        if not isinstance(message_id, str) or not message_id:
            # Accepted, so it may well arrive: failing it would invite a resend. Its statuses cannot be matched.
            log.warning("whatsapp accepted a message without giving its id")
            return ""
        return message_id

    async def _call(self, payload: dict[str, Any]) -> dict[str, Any]:
        await self._limiter.acquire()
        try:
            answer = await self._graph.post(f"{self._phone_number_id}/messages", json=payload)
        except TokenInvalid as exc:
            if self._token_valid:  # said once, when it turns; the readiness check and the gauge stay red
                log.error(
                    "whatsapp access token refused (error 190): every send fails until WA_ACCESS_TOKEN is replaced",
                    extra={"subcode": exc.subcode, "fbtrace_id": exc.fbtrace_id},
                )
            self._set_token_valid(False)
            raise _send_error(exc) from exc
        except GraphError as exc:
            raise _send_error(exc) from exc
        self._set_token_valid(True)
        return answer

    async def aclose(self) -> None:
        await self._graph.aclose()


def _ids(reply: OutboundReply) -> dict[str, str | None]:
    return {"outbound_id": reply.outbound_id, "ticket_reference": reply.ticket_reference}
