"""Messenger and Instagram through the Graph API: direct messages by the Send API (RESPONSE inside the 24-hour
window, the HUMAN_AGENT tag up to 7 days, later failed with a clear reason), public replies under comments
(masked: no personal data in public), private replies to commenters, and Meta's errors turned into a retry or a
failure with Meta's code; a refused token or a revoked permission turns readiness and the token gauge red."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from suara_shared.events import Channel, OutboundReply, utcnow
from suara_shared.graph import GraphClient, GraphError, TokenInvalid, TransientGraphError
from suara_shared.metrics import CHANNEL_TOKEN_VALID
from suara_shared.public import public_text

from .base import ChannelAdapter, PermanentSendError, SendError, SendResult, TransientSendError
from .whatsapp import split_text

log = logging.getLogger(__name__)

#: The 24-hour standard messaging window (channels.md §2.3).
WINDOW = timedelta(hours=24)
#: Graph's permission errors (#200–#299, e.g. 200 "permission denied", 230 "requires pages_messaging"): a
#: permission was revoked; like an expired token, nothing on this channel can succeed until someone fixes it.
PERMISSION_CODES = range(200, 300)
WINDOW_CLOSED = "window_closed"
#: A reply on a comment thread with no comment left to go under: its author removed every one.
COMMENT_REMOVED = "comment_removed"


def send_error(exc: GraphError) -> SendError:
    if isinstance(exc, TransientGraphError):
        return TransientSendError(exc.code_text, exc.detail_text, title=exc.message, retry_after=exc.retry_after)
    code = exc.code_text if exc.subcode is None else f"{exc.code_text}/{exc.subcode}"
    return PermanentSendError(code, exc.message, exc.detail_text)


class MetaMessagingAdapter(ChannelAdapter):
    """One Page or Instagram account. The thread's key says which path a reply takes: `dm:` the Send API, a
    comment thread a reply under the citizen's comment (or, asked for, a private reply)."""

    #: The edge that takes a public reply under a comment (`comments` on Facebook, `replies` on Instagram).
    comment_edge: str
    #: Longest text one message takes (Messenger 2000, Instagram 1000 characters); longer replies are split.
    max_text: int
    #: Whether a message inside the window names `messaging_type: RESPONSE` (Messenger does; Instagram's
    #: documented request leaves it out).
    names_response_type: bool

    def __init__(self, *, graph: GraphClient, node_id: str, human_agent_days: float = 7.0) -> None:
        self._graph = graph
        self._node_id = node_id
        self._human_agent = timedelta(days=human_agent_days)
        CHANNEL_TOKEN_VALID.labels(self.channel.value).set(1)

    # --- paths -----------------------------------------------------------------------------------------------

    async def send(self, reply: OutboundReply) -> SendResult:
        if reply.conversation_key.startswith("dm:"):
            return await self._direct(reply)
        comment_id = reply.reply_context.comment_id if reply.reply_context else None
        if comment_id is None:
            # A commenter's id is not a messaging id: a direct message to it would reach no one.
            raise PermanentSendError(
                COMMENT_REMOVED,
                "Comment removed",
                "the citizen removed their comment: there is nothing left on the post to reply under",
            )
        if reply.private:
            return await self._private(reply, comment_id)
        return await self._public(reply, comment_id)

    async def _direct(self, reply: OutboundReply) -> SendResult:
        """A direct message to the citizen's scoped id, as the window allows."""
        fields: dict[str, Any] = {}
        expires = reply.window_expires_at
        now = utcnow()
        if expires is None or now < expires:
            if self.names_response_type:
                fields["messaging_type"] = "RESPONSE"
        elif now < expires - WINDOW + self._human_agent:
            fields.update(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
        else:
            days = self._human_agent.days
            raise PermanentSendError(
                WINDOW_CLOSED,
                "Messaging window closed",
                f"the citizen's last message is over {days} days old: Meta takes no message until they write again",
            )
        ids = []
        for part in split_text(reply.text, self.max_text):
            body = {"recipient": {"id": reply.recipient}, **fields, "message": {"text": part}}
            answer = await self._call(f"{self._node_id}/messages", body)
            ids.append(str(answer.get("message_id") or ""))
        return SendResult(platform_message_id=ids[0] or None, more_platform_message_ids=tuple(filter(None, ids[1:])))

    async def _private(self, reply: OutboundReply, comment_id: str) -> SendResult:
        """Meta's private reply: one message to the commenter's inbox, once per comment, within 7 days."""
        text = split_text(reply.text, self.max_text)[0]
        body = {"recipient": {"comment_id": comment_id}, "message": {"text": text}}
        answer = await self._call(f"{self._node_id}/messages", body)
        return SendResult(platform_message_id=str(answer.get("message_id") or "") or None)

    async def _public(self, reply: OutboundReply, comment_id: str) -> SendResult:
        """A public reply under the comment: everyone reads it, so no personal data goes in it."""
        answer = await self._call(f"{comment_id}/{self.comment_edge}", {"message": public_text(reply.text)})
        return SendResult(platform_message_id=str(answer.get("id") or "") or None)

    # --- plumbing --------------------------------------------------------------------------------------------

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self._graph.post(path, json=body)
        except GraphError as exc:
            if isinstance(exc, TokenInvalid) or (exc.code is not None and exc.code in PERMISSION_CODES):
                if self._token_valid:
                    log.error(
                        "access token or permission refused: every reply on this channel fails until it is fixed",
                        extra={"channel": self.channel.value, "code": exc.code_text, "fbtrace_id": exc.fbtrace_id},
                    )
                self._set_token_valid(False)
            raise send_error(exc) from exc
        self._set_token_valid(True)
        return answer

    async def aclose(self) -> None:
        await self._graph.aclose()


class FacebookAdapter(MetaMessagingAdapter):
    """The Page: Messenger (`POST /{page-id}/messages`) and comments (`POST /{comment-id}/comments`)."""

    channel = Channel.FACEBOOK
    comment_edge = "comments"
    max_text = 2000
    names_response_type = True


class InstagramAdapter(MetaMessagingAdapter):
    """The professional account: DMs (`POST /{ig-id}/messages`), comments (`POST /{ig-comment-id}/replies`) and
    mentions (`POST /{ig-user-id}/mentions`)."""

    channel = Channel.INSTAGRAM
    comment_edge = "replies"
    max_text = 1000
    names_response_type = False

    async def send(self, reply: OutboundReply) -> SendResult:
        if reply.conversation_key.startswith("mention:") and reply.reply_context and not reply.private:
            context = reply.reply_context
            body = {"media_id": context.post_id, "comment_id": context.comment_id, "message": public_text(reply.text)}
            answer = await self._call(f"{self._node_id}/mentions", {k: v for k, v in body.items() if v})
            return SendResult(platform_message_id=str(answer.get("id") or "") or None)
        return await super().send(reply)
