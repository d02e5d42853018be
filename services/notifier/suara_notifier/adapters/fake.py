"""A scripted adapter for tests: answers with a given sequence of results and errors. Never registered."""

from __future__ import annotations

from collections.abc import Iterable

from suara_shared.events import Channel, OutboundReply

from .base import ChannelAdapter, SendResult


class ScriptedAdapter(ChannelAdapter):
    """Each send takes the next outcome of the script (the last one repeats): a result is returned, an
    exception raised; each read receipt the next of `receipts`. Records what it was asked to send and mark read."""

    def __init__(
        self,
        channel: Channel,
        script: Iterable[SendResult | Exception],
        *,
        receipts: Iterable[Exception | None] = (),
    ) -> None:
        self.channel = channel
        self._script = list(script)
        if not self._script:
            raise ValueError("a script needs at least one outcome")
        #: Outcomes of the read receipts asked for, in turn (None: given); past the script, every one is given.
        self._receipts = list(receipts)
        self.sent: list[str] = []
        self.marked: list[str | None] = []
        self.closed = False

    async def mark_read(self, reply: OutboundReply) -> None:
        self.marked.append(reply.reply_to)
        outcome = self._receipts.pop(0) if self._receipts else None
        if outcome is not None:
            raise outcome

    async def send(self, reply: OutboundReply) -> SendResult:
        self.sent.append(reply.outbound_id)
        outcome = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def aclose(self) -> None:
        self.closed = True
