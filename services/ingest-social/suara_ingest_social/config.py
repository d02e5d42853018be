"""Settings of the ingest-social service, read from the environment."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from suara_shared.settings import XApiSettings

from .limits import parse_networks


class Settings(XApiSettings):
    """What ingest-social needs: its port, where ticketing answers, and how citizens reach the status page."""

    port: int = 8002
    #: Ticketing's base URL, for the public status lookups behind `/status/{key}`.
    ticketing_url: str = "http://127.0.0.1:8000"
    #: Public base of the status page (e.g. behind a reverse proxy); unset: derived from each request.
    public_status_url: str | None = None
    #: Seconds to wait for ticketing before telling the citizen to try again.
    ticketing_timeout_seconds: float = 5.0

    #: Meta webhooks (Facebook Page, Instagram): the app secret behind `X-Hub-Signature-256`, the handshake token.
    meta_app_secret: SecretStr = SecretStr("dev-only-meta-app-secret")
    meta_verify_token: SecretStr = SecretStr("dev-only-verify-token")
    #: The Page and the Instagram account Suara answers for: their own comments and messages are not citizens'.
    fb_page_id: str | None = None
    ig_account_id: str | None = None

    #: Complaints one client (IP address; IPv6: its /64) may file per minute through the web form, its API and the
    #: kiosks, after a first `web_form_burst` at once; 0 turns the limit off. Platform webhooks are never limited.
    web_form_rate_per_minute: float = Field(default=10.0, ge=0)
    web_form_burst: int = Field(default=10, ge=1)
    #: The largest photo the web form takes (up to 3 per complaint), in bytes. Photos are kept in the database
    #: (`MONGODB_URI`) with the tickets; a phone's photo is 1-5 MB.
    web_photo_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Photo bytes one pod takes per hour: past it, photos are refused (the complaint may go without) until it
    #: refills. 2 GiB is hundreds of times a kabupaten's normal day; it stops a flood filling the database's disk.
    web_photo_bytes_per_hour: int = Field(default=2 * 1024**3, ge=0)
    #: Reverse proxies (addresses or networks, comma-separated) whose `X-Forwarded-For` names the client, e.g. the
    #: ingress controller's pod network; unset, the peer's own address is the client, whatever the header says.
    trusted_proxies: str = ""

    #: X (credentials in XApiSettings): the account citizens mention or message.
    x_user_id: str | None = None
    #: Seconds between two polls of mentions and direct messages; X's rate-limit headers may stretch it.
    x_poll_interval_seconds: float = Field(default=30.0, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # refused at start, naming the entry, rather than ignored
        return value

    @property
    def x_polling(self) -> bool:
        """Mentions need the bearer token and the account's id; without them the poller stays off."""
        return self.x_bearer_token is not None and bool(self.x_user_id)
