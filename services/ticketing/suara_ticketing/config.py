"""Settings of the ticketing service."""

from __future__ import annotations

from pydantic import SecretStr, field_validator

from suara_shared.settings import ServiceSettings


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

    @field_validator("ticket_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.isalpha() or not value.isupper() or not 2 <= len(value) <= 10:
            raise ValueError("TICKET_PREFIX must be 2-10 upper-case letters, e.g. RMB")
        return value

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.ticketing_roles.split(",") if r.strip())
