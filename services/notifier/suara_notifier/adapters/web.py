"""The web channel: the reply is shown on the citizen's status page, so there is nothing to send."""

from __future__ import annotations

from suara_shared.events import Channel, DeliveryState, OutboundReply

from .base import ChannelAdapter, SendResult


class WebAdapter(ChannelAdapter):
    """Delivered at once: the ticketing service already holds the reply that the status page shows."""

    channel = Channel.WEB

    async def send(self, reply: OutboundReply) -> SendResult:
        """The reply is its own platform message, with its outbound id."""
        return SendResult(platform_message_id=reply.outbound_id, status=DeliveryState.DELIVERED)
