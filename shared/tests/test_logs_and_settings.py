"""What an operator relies on: logs that never show a citizen's phone, NIK or words, and a production service
that refuses to start with a placeholder secret."""

from __future__ import annotations

import logging

import orjson
import pytest
from pydantic import SecretStr, ValidationError

from suara_shared.logs import JsonFormatter
from suara_shared.settings import ServiceSettings


def _line(msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("suara.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    parsed: dict[str, object] = orjson.loads(JsonFormatter("ticketing").format(record))
    return parsed


def test_log_lines_mask_phone_numbers_and_niks_and_drop_message_text() -> None:
    line = _line(
        "citizen %s with NIK %s wrote",
        "0812-3456-7890",
        "3317101201900001",
        text="Rumah saya di Jl. Kartini 5 kebanjiran",
        reference="RMB-2026-000042",
        phone="+6281234567890",
    )
    dumped = orjson.dumps(line).decode()
    for secret in ("3456-7890", "81234567890", "3317101201900001", "Kartini"):
        assert secret not in dumped
    assert line["text"] == "[redacted 38 chars]"
    assert line["reference"] == "RMB-2026-000042"  # references stay readable: they are how operators search
    assert line["service"] == "ticketing" and line["level"] == "info"


def test_log_lines_mask_exceptions_too() -> None:
    try:
        raise ValueError("bad phone 081298765432")
    except ValueError:
        import sys

        record = logging.LogRecord("suara.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = orjson.loads(JsonFormatter("notifier").format(record))
    assert "ValueError" in line["exc"] and "98765432" not in line["exc"]


class _WithSecret(ServiceSettings):
    api_token: SecretStr = SecretStr("dev-only-token")


def test_a_validation_error_in_a_log_line_names_the_field_not_the_citizens_words() -> None:
    from suara_shared.events import InboundMessage

    words = "Jembatan di dusun kami ambruk sejak kemarin sore"
    try:
        try:
            InboundMessage.model_validate({"channel": "web", "text": words, "sender": "not a sender"})
        except ValidationError as exc:
            raise RuntimeError("could not take the complaint") from exc
    except RuntimeError as exc:
        record = logging.LogRecord("suara.test", logging.ERROR, __file__, 1, "unhandled error", (), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
        line = orjson.loads(JsonFormatter("ingest-social").format(record))
    assert words not in line["exc"] and "ambruk" not in line["exc"]
    assert "sender" in line["exc"] and "could not take the complaint" in line["exc"]
    assert "test_logs_and_settings.py" in line["exc"]  # still a traceback an operator can follow


def test_production_refuses_placeholder_secrets_development_allows_them() -> None:
    with pytest.raises(ValidationError, match="API_TOKEN holds a placeholder"):
        _WithSecret(suara_env="production")
    assert _WithSecret(suara_env="development").api_token.get_secret_value() == "dev-only-token"
    assert _WithSecret(suara_env="production", api_token=SecretStr("s3cr3t-from-the-vault")).suara_env == "production"


def test_a_session_timeout_no_broker_would_keep_a_consumer_by_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`KAFKA_SESSION_TIMEOUT_MS` is read from the environment; a value that would drop every consumer between two
    heartbeats, or keep a dead one's partitions for hours, stops the service at start and names the variable."""
    monkeypatch.setenv("KAFKA_SESSION_TIMEOUT_MS", "6000")
    assert ServiceSettings().kafka_session_timeout_ms == 6000
    for wrong in ("500", "3600000", "ten seconds"):
        monkeypatch.setenv("KAFKA_SESSION_TIMEOUT_MS", wrong)
        with pytest.raises(ValidationError, match="kafka_session_timeout_ms"):
            ServiceSettings()
    monkeypatch.delenv("KAFKA_SESSION_TIMEOUT_MS")
    assert ServiceSettings().kafka_session_timeout_ms == 10_000  # aiokafka's own default, for Apache Kafka
