"""A scripted adapter for tests: answers with a given sequence of results and errors. Never registered."""

from __future__ import annotations

from collections.abc import Iterable

from suara_shared.events import Channel, OutboundReply

from .base import ChannelAdapter, SendResult


class ScriptedAdapter(ChannelAdapter):
    """Each send takes the next outcome of the script (the last one repeats): a result is returned, an
    exception raised. Records the outbound ids it was asked to send."""

    def __init__(self, channel: Channel, script: Iterable[SendResult | Exception]) -> None:
        self.channel = channel
        self._script = list(script)
        if not self._script:
            raise ValueError("a script needs at least one outcome")
        self.sent: list[str] = []
        self.closed = False

    async def send(self, reply: OutboundReply) -> SendResult:
        self.sent.append(reply.outbound_id)
        outcome = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def aclose(self) -> None:
        self.closed = True
