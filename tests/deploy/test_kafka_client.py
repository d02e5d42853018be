"""How a deployed service reaches Strimzi's Kafka: the SASL/TLS settings reach aiokafka's producer and consumer,
the producer is idempotent with acks=all, and the defaults stay the plaintext of `make run`."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from deploykit import container_env, rendered

from suara_shared import kafka
from suara_shared.events import Event
from suara_shared.kafka import BrokerUnavailable, ConsumerLoop, Publisher, Route
from suara_shared.settings import ServiceSettings

CA = Path(__file__).resolve().parent / "kafka-test-ca.crt"


def _prod_settings() -> ServiceSettings:
    """ServiceSettings as the prod notifier pod gets them (its password as Strimzi would generate it), pointed
    at a port where no broker listens."""
    prod = rendered("prod")
    deployment = prod.get("Deployment", "suara-notifier")
    assert deployment is not None
    values = {k.lower(): s.value for k, s in container_env(prod, deployment).named.items() if s.value is not None}
    values.update(
        kafka_sasl_password="k8s-generated-password",
        kafka_ssl_cafile=str(CA),
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing listens on the discard port
    )
    return ServiceSettings.model_validate(values)


class _Recorded:
    """What the last client was built with (the real aiokafka class still builds and checks it)."""

    kwargs: dict[str, Any]


def _recording(base: type[Any]) -> type[Any]:
    class Recording(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            _Recorded.kwargs = kwargs
            super().__init__(*args, **kwargs)

        async def start(self) -> None:
            raise KafkaError("no broker in this test")

    return Recording


def test_the_cluster_settings_become_aiokafka_security_options() -> None:
    options = kafka.client_options(_prod_settings())
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "suara-notifier"
    assert options["sasl_plain_password"] == "k8s-generated-password"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname, "the broker's certificate is checked"
    assert context.get_ca_certs(), "the cluster CA from KAFKA_SSL_CAFILE is trusted"


def test_sasl_without_credentials_stops_the_service_at_start_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        ServiceSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="suara-notifier")


def test_the_defaults_stay_plaintext_for_the_embedded_broker() -> None:
    assert kafka.client_options(ServiceSettings()) == {"security_protocol": "PLAINTEXT"}


async def test_the_publisher_hands_them_to_an_idempotent_acks_all_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "AIOKafkaProducer", _recording(AIOKafkaProducer))
    with pytest.raises(BrokerUnavailable):
        await Publisher(_prod_settings()).start()
    sent = _Recorded.kwargs
    assert sent["acks"] == "all" and sent["enable_idempotence"] is True
    assert sent["security_protocol"] == "SASL_SSL" and sent["sasl_plain_username"] == "suara-notifier"
    assert isinstance(sent["ssl_context"], ssl.SSLContext)


async def test_the_consumer_loop_hands_them_to_its_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "AIOKafkaConsumer", _recording(AIOKafkaConsumer))
    settings = _prod_settings()
    loop = ConsumerLoop(
        settings,
        group_id="suara-notifier",
        routes={"suara.outbound.v1": Route(Event, _ignore)},
        publisher=Publisher(settings),
    )
    monkeypatch.setattr(kafka, "backoff", lambda *_a, **_k: 0.0)

    async def stop_after_first_attempt(_seconds: float) -> None:
        loop.stop()

    monkeypatch.setattr(loop, "_sleep", stop_after_first_attempt)
    await loop.run()
    got = _Recorded.kwargs
    assert got["security_protocol"] == "SASL_SSL" and got["sasl_mechanism"] == "SCRAM-SHA-512"
    assert got["sasl_plain_password"] == "k8s-generated-password" and got["group_id"] == "suara-notifier"


async def _ignore(_event: Event, _record: Any) -> None:
    return None
