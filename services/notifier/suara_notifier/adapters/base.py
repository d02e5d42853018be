"""The one interface every outbound channel adapter implements, and the errors it may raise."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from suara_shared.events import Channel, DeliveryState, OutboundReply
from suara_shared.metrics import CHANNEL_TOKEN_VALID

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the platform answered when it took a message."""

    #: The platform's id of the sent message; delivery webhooks refer to it later.
    platform_message_id: str | None
    #: Usually SENT ("accepted"): the platform reports delivered and read on its own later.
    status: DeliveryState = DeliveryState.SENT
    #: Further ids when one reply became several platform messages (WhatsApp text over 4096 characters).
    more_platform_message_ids: tuple[str, ...] = ()
    #: The approved template sent instead of the text (WhatsApp, outside the 24-hour window).
    template: str | None = None


class SendError(Exception):
    """The platform did not take the message (or, with `partly_sent`, took only the first parts of a split one)."""

    def __init__(self, code: str, detail: str | None = None, *, title: str | None = None) -> None:
        super().__init__(f"{code}: {title or detail or 'send failed'}")
        self.code = code
        self.title = title
        self.detail = detail
        #: Some parts of a split reply were taken before this error: sending the whole reply again repeats them.
        self.partly_sent = False


class TransientSendError(SendError):
    """Worth trying again later: a 5xx, a timeout, a rate limit.

    `retry_after` carries the platform's own hint (e.g. X's rate-limit reset), in seconds."""

    def __init__(
        self, code: str, detail: str | None = None, *, title: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(code, detail, title=title)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """Will never succeed as it is, e.g. WhatsApp 131047 outside the 24-hour window: the reply ends failed."""

    def __init__(self, code: str, title: str | None = None, detail: str | None = None) -> None:
        super().__init__(code, detail, title=title)


class ChannelAdapter(ABC):
    """Sends replies on one channel. Raise TransientSendError or PermanentSendError; never swallow errors."""

    channel: Channel

    @abstractmethod
    async def send(self, reply: OutboundReply) -> SendResult:
        """Hand the reply to the platform and return what it answered."""

    async def mark_read(self, reply: OutboundReply) -> None:
        """Show the citizen's message `reply.reply_to` as read; platforms without read receipts ignore this."""
        return None

    #: False while the platform refuses the access token; set through `_set_token_valid`.
    _token_valid: bool = True

    def healthy(self) -> bool:
        """False while the adapter knows it cannot send at all (its access token was refused): readiness is red."""
        return self._token_valid

    def _set_token_valid(self, valid: bool) -> None:
        """Record whether the platform takes our token, in readiness and in `suara_channel_token_valid`."""
        if valid == self._token_valid:
            return
        self._token_valid = valid
        CHANNEL_TOKEN_VALID.labels(self.channel.value).set(1 if valid else 0)
        if valid:
            log.info("access token accepted again", extra={"channel": self.channel.value})

    def pace_by(self, share: Callable[[], float]) -> None:
        """Pace at `share()` of the platform's throughput limit (the part of the work this process holds);
        channels without a limit ignore this."""
        return None

    async def aclose(self) -> None:
        """Release what the adapter holds (HTTP clients); called once at shutdown."""
        return None
