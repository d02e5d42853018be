"""The notifier's settings, read from the environment."""

from __future__ import annotations

from pydantic import Field

from suara_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """What the notifier needs: its port, where the channel sandbox is, and how hard to retry a send.

    Platform credentials (Meta, X) arrive with the adapters that use them."""

    port: int = 8003
    #: The local stand-in for the Graph and X APIs, used by adapters when no real credentials are set.
    sandbox_url: str | None = None

    #: A transient platform error (5xx, rate limit) is retried this many times in all ...
    send_max_attempts: int = Field(default=6, ge=1)
    #: ... with exponential backoff and full jitter from this base up to the cap ...
    send_retry_base_seconds: float = Field(default=0.5, gt=0)
    send_retry_cap_seconds: float = Field(default=30.0, gt=0)
    #: ... and never for longer than this, so one bad reply cannot hold its partition for long.
    send_retry_budget_seconds: float = Field(default=120.0, gt=0)

    #: How many completed outbound ids are remembered to absorb redeliveries.
    dedup_capacity: int = Field(default=50_000, ge=1)
