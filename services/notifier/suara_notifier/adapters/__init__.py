"""The registry of outbound channel adapters: one factory per channel, one map from channel to adapter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from tweepy.asynchronous import AsyncClient

from suara_shared.events import Channel
from suara_shared.graph import GraphClient

from ..config import Settings
from .base import ChannelAdapter, PermanentSendError, SendError, SendResult, TransientSendError
from .meta import FacebookAdapter, InstagramAdapter
from .web import WebAdapter
from .whatsapp import WhatsAppAdapter
from .x import RewritingSession, XAdapter

__all__ = [
    "FACTORIES",
    "AdapterRegistry",
    "ChannelAdapter",
    "PermanentSendError",
    "SendError",
    "SendResult",
    "TransientSendError",
]

log = logging.getLogger(__name__)

#: Builds a channel's adapter from the settings, or returns None when the channel cannot send yet
#: (no credentials and no sandbox); replies on such a channel end failed with `channel_not_configured`.
AdapterFactory = Callable[[Settings], ChannelAdapter | None]


def _whatsapp(settings: Settings) -> ChannelAdapter | None:
    """Configured by WA_PHONE_NUMBER_ID and WA_ACCESS_TOKEN (`make run` sets sandbox values when they are unset)."""
    if settings.wa_access_token is None or not settings.wa_phone_number_id:
        return None
    return WhatsAppAdapter.from_settings(settings)


def _graph(settings: Settings, token: str) -> GraphClient:
    return GraphClient(
        base_url=settings.meta_graph_url,
        version=settings.meta_graph_version,
        access_token=token,
        timeout=settings.graph_timeout_seconds,
    )


def _facebook(settings: Settings) -> ChannelAdapter | None:
    """Configured by FB_PAGE_ID and FB_PAGE_ACCESS_TOKEN: Messenger and the Page's comments."""
    if settings.fb_page_access_token is None or not settings.fb_page_id:
        return None
    return FacebookAdapter(
        graph=_graph(settings, settings.fb_page_access_token.get_secret_value()),
        node_id=settings.fb_page_id,
        human_agent_days=settings.meta_human_agent_days,
    )


def _instagram(settings: Settings) -> ChannelAdapter | None:
    """Configured by IG_ACCOUNT_ID and IG_ACCESS_TOKEN: direct messages, comments and mentions."""
    if settings.ig_access_token is None or not settings.ig_account_id:
        return None
    return InstagramAdapter(
        graph=_graph(settings, settings.ig_access_token.get_secret_value()),
        node_id=settings.ig_account_id,
        human_agent_days=settings.meta_human_agent_days,
    )


def _x(settings: Settings) -> ChannelAdapter | None:
    """Configured by the four user-context credentials X_CONSUMER_KEY/SECRET and X_ACCESS_TOKEN/SECRET."""
    secrets = (
        settings.x_consumer_key,
        settings.x_consumer_secret,
        settings.x_access_token,
        settings.x_access_token_secret,
    )
    if any(s is None for s in secrets):
        return None
    key, secret, token, token_secret = (s.get_secret_value() for s in secrets if s is not None)
    bearer = settings.x_bearer_token.get_secret_value() if settings.x_bearer_token else None
    client = AsyncClient(
        bearer_token=bearer,
        consumer_key=key,
        consumer_secret=secret,
        access_token=token,
        access_token_secret=token_secret,
        return_type=dict,
    )
    session = RewritingSession(settings.x_api_url)
    client.session = session
    return XAdapter(client=client, session=session, status_url=settings.public_status_url)


#: Every channel Suara can send on. Adding a channel is one module under adapters/ and one line here.
FACTORIES: Mapping[Channel, AdapterFactory] = {
    Channel.WEB: lambda _settings: WebAdapter(),
    Channel.WHATSAPP: _whatsapp,
    Channel.FACEBOOK: _facebook,
    Channel.INSTAGRAM: _instagram,
    Channel.X: _x,
}


class AdapterRegistry:
    """The adapters that can send right now, found by channel."""

    def __init__(self, adapters: Iterable[ChannelAdapter]) -> None:
        self._by_channel: dict[Channel, ChannelAdapter] = {}
        for adapter in adapters:
            if adapter.channel in self._by_channel:
                raise ValueError(f"two adapters for channel {adapter.channel}")
            self._by_channel[adapter.channel] = adapter

    @classmethod
    def from_settings(cls, settings: Settings) -> AdapterRegistry:
        """Build every adapter whose channel is configured; say which channels cannot send."""
        built = {channel: factory(settings) for channel, factory in FACTORIES.items()}
        registry = cls(adapter for adapter in built.values() if adapter is not None)
        missing = sorted(str(c) for c in Channel if c not in registry.channels)
        log.info(
            "outbound adapters ready",
            extra={"channels": ",".join(sorted(map(str, registry.channels))), "not_configured": ",".join(missing)},
        )
        return registry

    @property
    def channels(self) -> frozenset[Channel]:
        return frozenset(self._by_channel)

    def get(self, channel: Channel) -> ChannelAdapter | None:
        """The channel's adapter, or None when the channel is not configured."""
        return self._by_channel.get(channel)

    def pace_by(self, share: Callable[[], float]) -> None:
        """Every adapter with a throughput limit paces at `share()` of it (see `RateLimiter`)."""
        for adapter in self._by_channel.values():
            adapter.pace_by(share)

    def unhealthy(self) -> list[Channel]:
        """Channels whose adapter knows it cannot send (e.g. its access token was refused)."""
        return [channel for channel, adapter in self._by_channel.items() if not adapter.healthy()]

    async def aclose(self) -> None:
        """Close every adapter; one failing to close does not keep the others open."""
        results = await asyncio.gather(*(a.aclose() for a in self._by_channel.values()), return_exceptions=True)
        for adapter, result in zip(self._by_channel.values(), results, strict=True):
            if isinstance(result, Exception):
                log.warning(
                    "adapter did not close cleanly", extra={"channel": str(adapter.channel), "error": repr(result)}
                )
