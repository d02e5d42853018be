"""The settings every service shares, read from the environment; production refuses placeholder secrets."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
    #: How long a consumer may go unheard before the broker gives its partitions to another (heartbeats go every
    #: third of it). Apache Kafka accepts 6-300 s by default (`group.min/max.session.timeout.ms`). The embedded
    #: broker also holds every join of a group for half of it, waiting for other members: `make run` says 6 s.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=300_000)
    #: How the clients reach the broker. PLAINTEXT for the embedded broker; in a cluster (Strimzi) SASL_SSL with
    #: SCRAM-SHA-512 credentials, or SSL with a client certificate (mTLS). The CA file verifies the broker.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    mongodb_uri: str = "mongodb://127.0.0.1:27017/suara"

    @model_validator(mode="after")
    def _kafka_credentials(self) -> ServiceSettings:
        # Caught here, at start, rather than as an authentication failure on every connection attempt.
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        return self

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


class XApiSettings(ServiceSettings):
    """The X account's API access, read by every service that talks to X (ingest-social polls, the notifier
    replies): the API base (the sandbox under `make run`), the app's bearer token, the user-context credentials."""

    x_api_url: str = "https://api.x.com"
    x_bearer_token: SecretStr | None = None
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
