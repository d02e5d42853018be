"""Settings of the ticketing service."""

from __future__ import annotations

from datetime import time

from pydantic import Field, SecretStr, field_validator

from suara_shared.settings import ServiceSettings

DEV_OPEN311_KEY = "dev-only-open311-key"


class Settings(ServiceSettings):
    port: int = 8000
    admin_api_token: SecretStr = SecretStr("dev-only-admin-token")
    ticket_prefix: str = "RMB"
    #: Where citizens can check a ticket, named in acknowledgements (`<url>/<reference>`).
    public_status_url: str = "http://127.0.0.1:8002/status"
    #: Which parts run in this process: the HTTP API, the consumer of inbound messages and delivery statuses.
    #: In a cluster they run as separate Deployments so that they scale apart.
    ticketing_roles: str = "api,consumer"
    #: Seconds after which an outbound message or event still unpublished is handed to the broker again.
    outbox_retry_seconds: float = 5.0
    #: The operator's routing file (categories, departments, keywords, priorities); empty: the one shipped.
    routing_rules_file: str = ""
    #: A citizen writing within this many working days of a resolution reopens the ticket; later, a new ticket
    #: linked to the old one is opened.
    reopen_window_working_days: int = Field(default=5, ge=0, le=60)
    #: A resolved ticket without a citizen's reply closes by itself after this many working days (SP4N-LAPOR!: 10).
    auto_close_working_days: int = Field(default=10, ge=1, le=60)
    #: A satisfaction answer (1-5) is taken this many calendar days after the survey was sent.
    survey_window_days: int = Field(default=14, ge=1, le=90)
    #: How often deadlines, automatic closing and the status gauge are checked (consumer role).
    sweep_seconds: float = Field(default=60.0, gt=0)
    #: Office hours (WIB) on working days, for the figures in working hours.
    office_hours: str = "08:00-16:00"
    #: Keys accepted by Open311 `POST requests.json`, comma-separated. Unset in development: `dev-only-open311-key`;
    #: unset in production: Open311 submissions are refused.
    open311_api_keys: SecretStr | None = None
    #: Citizens' media (WhatsApp photos, voice notes…) is fetched from the Graph API with the channel's token,
    #: refused over `media_max_bytes`, and kept in the database (suara_ticketing.media); `<DATA_DIR>/media-scratch`
    #: holds each file while it is checked.
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v23.0"
    wa_phone_number_id: str | None = None
    wa_access_token: SecretStr | None = None
    media_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    data_dir: str = "var"

    @field_validator("ticket_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.isalpha() or not value.isupper() or not 2 <= len(value) <= 10:
            raise ValueError("TICKET_PREFIX must be 2-10 upper-case letters, e.g. RMB")
        return value

    @field_validator("office_hours")
    @classmethod
    def _office_hours(cls, value: str) -> str:
        start, _, end = value.partition("-")
        try:
            opens, closes = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
        except ValueError:
            raise ValueError("OFFICE_HOURS must look like 08:00-16:00") from None
        if opens >= closes:
            raise ValueError("OFFICE_HOURS must open before it closes, e.g. 08:00-16:00")
        return value

    @property
    def office_window(self) -> tuple[time, time]:
        start, _, end = self.office_hours.partition("-")
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())

    @property
    def open311_keys(self) -> frozenset[str]:
        """The accepted Open311 keys; empty means Open311 submissions are refused."""
        if self.open311_api_keys is None:
            return frozenset({DEV_OPEN311_KEY}) if self.suara_env == "development" else frozenset()
        raw = self.open311_api_keys.get_secret_value()
        return frozenset(k.strip() for k in raw.split(",") if k.strip())

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.ticketing_roles.split(",") if r.strip())
