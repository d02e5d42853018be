"""Settings of the ingest-wa service, read from the environment."""

from __future__ import annotations

from pydantic import SecretStr

from suara_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """ServiceSettings plus the port and the Meta secrets (placeholders are refused in production)."""

    port: int = 8001
    meta_app_secret: SecretStr = SecretStr("dev-only-meta-app-secret")
    meta_verify_token: SecretStr = SecretStr("dev-only-verify-token")
