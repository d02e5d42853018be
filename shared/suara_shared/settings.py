"""The settings every service shares, read from the environment; production refuses placeholder secrets."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

#: Values that `make run` uses for development. A service in production refuses to start with any of them.
DEV_SECRET_PREFIX = "dev-only-"  # noqa: S105 - the marker of placeholders, not a secret


class ServiceSettings(BaseSettings):
    """Base of every service's settings."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    suara_env: Literal["development", "production"] = "development"
    service_host: str = "127.0.0.1"
    log_level: str = "INFO"

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    #: Idempotent producers need a broker that supports them: on for Apache Kafka, off for the embedded broker.
    kafka_enable_idempotence: bool = True
    kafka_client_id: str = "suara"

    mongodb_uri: str = "mongodb://127.0.0.1:27017/suara"

    def secret_fields(self) -> dict[str, SecretStr | None]:
        """The secrets this service holds, by setting name."""
        return {name: value for name, value in self if isinstance(value, SecretStr)}

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> ServiceSettings:
        for name, value in self.secret_fields().items():
            if value is None:
                continue
            secret = value.get_secret_value()
            if secret.startswith(DEV_SECRET_PREFIX) or secret in {"", "changeme", "change-me"}:
                if self.suara_env == "production":
                    raise ValueError(
                        f"{name.upper()} holds a placeholder; set a real secret before starting in production"
                    )
                log.warning(
                    "setting %s uses a development placeholder; never run it like this in production", name.upper()
                )
        return self
