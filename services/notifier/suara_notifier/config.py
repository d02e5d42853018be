"""The notifier's settings, read from the environment."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from suara_shared.settings import XApiSettings


class Settings(XApiSettings):
    """What the notifier needs: its port, where the channel sandbox is, how hard to retry a send, and each
    channel's credentials (a channel without them cannot send: its replies fail `channel_not_configured`).
    MONGODB_URI (from the base) is where the send ledger lives."""

    port: int = 8003
    #: The local stand-in for the Graph and X APIs, used by adapters when no real credentials are set.
    sandbox_url: str | None = None

    #: A transient platform error (5xx, rate limit) is retried this many times in all ...
    send_max_attempts: int = Field(default=10, ge=1)
    #: ... with exponential backoff and full jitter from this base up to the cap ...
    send_retry_base_seconds: float = Field(default=0.5, gt=0)
    send_retry_cap_seconds: float = Field(default=30.0, gt=0)
    #: ... and never for longer than this, so one bad reply cannot hold its partition for long.
    send_retry_budget_seconds: float = Field(default=120.0, gt=0)

    #: How long a notifier may hold a reply's claim in the send ledger for one send (a reply may take several
    #: platform calls: a template after refused text, a long text's parts). A notifier killed in the middle of a
    #: send keeps that reply's partition waiting this long before another decides about it.
    send_lease_seconds: float = Field(default=60.0, gt=0)

    #: How many finished outbound ids each process remembers, to absorb redeliveries without a database round trip.
    dedup_capacity: int = Field(default=50_000, ge=1)
    #: Conversations whose replies are sent side by side (each conversation's replies stay in order).
    send_concurrency: int = Field(default=16, ge=1, le=256)

    #: Meta's Graph API (WhatsApp, Messenger, Instagram); `make run` points it at the sandbox when no token is set.
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v23.0"
    graph_timeout_seconds: float = Field(default=10.0, gt=0)

    #: WhatsApp Cloud API sender: the business phone number's id and a system-user token.
    wa_phone_number_id: str | None = None
    wa_access_token: SecretStr | None = None
    #: The approved template sent outside the 24-hour customer-service window, its language, and what fills its
    #: body parameters {{1}}, {{2}}…, in order: `reference` (the ticket's) and/or `text` (the reply, on one line).
    wa_template_name: str = "suara_tanggapan_laporan"
    wa_template_language: str = "id"
    wa_template_parameters: str = "reference,text"
    #: Messages per second per business phone number (Cloud API default throughput: 80).
    wa_messages_per_second: float = Field(default=80.0, gt=0)
    #: A window closing within this many seconds counts as closed: the send must not race its end.
    wa_window_margin_seconds: float = Field(default=60.0, ge=0)

    #: Facebook Page (Messenger and comments) and Instagram professional account: ids and access tokens.
    fb_page_id: str | None = None
    fb_page_access_token: SecretStr | None = None
    ig_account_id: str | None = None
    ig_access_token: SecretStr | None = None
    #: Messenger and Instagram: past the 24-hour window a human agent's reply goes with the HUMAN_AGENT tag,
    #: up to this many days after the citizen's last message; later it fails with a clear reason.
    meta_human_agent_days: float = Field(default=7.0, ge=0)

    #: Base of the public status page; a reply post cut to 280 characters ends with the ticket's link on it.
    public_status_url: str = "http://127.0.0.1:8002/status"

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # A lease shorter than a send would let another notifier settle a reply whose call is still running.
        if self.send_lease_seconds < 2 * self.graph_timeout_seconds:
            raise ValueError(
                f"SEND_LEASE_SECONDS ({self.send_lease_seconds:g}) must be at least twice GRAPH_TIMEOUT_SECONDS "
                f"({self.graph_timeout_seconds:g}): one send may take more than one platform call"
            )
        return self

    @field_validator("wa_template_parameters")
    @classmethod
    def _template_parameters(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - {"reference", "text"})
        if unknown:
            raise ValueError(f"WA_TEMPLATE_PARAMETERS may name only reference and text, not {', '.join(unknown)}")
        return ",".join(names)
