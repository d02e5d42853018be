"""Settings of the ingest-social service, read from the environment."""

from __future__ import annotations

from suara_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """What ingest-social needs: its port, where ticketing answers, and how citizens reach the status page."""

    port: int = 8002
    #: Ticketing's base URL, for the public status lookups behind `/status/{key}`.
    ticketing_url: str = "http://127.0.0.1:8000"
    #: Public base of the status page (e.g. behind a reverse proxy); unset: derived from each request.
    public_status_url: str | None = None
    #: Seconds to wait for ticketing before telling the citizen to try again.
    ticketing_timeout_seconds: float = 5.0
