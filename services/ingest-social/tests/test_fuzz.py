"""A bounded fuzz of ingest-social's public API from its own OpenAPI (schemathesis): the complaint API, the status
lookup and the webhooks' handshakes and POSTs; whatever arrives, never a 5xx.

The app runs in-process with a recording publisher (nothing reaches a broker) and a ticketing that knows no
complaint, so that a 503 could only be a bug; the property tests in test_hostile_input.py go deeper into the
webhooks' bodies, which their signatures keep out of reach here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from suara_devstack.hostile import RecordingPublisher, published
from suara_ingest_social.config import Settings
from suara_ingest_social.main import create_app

BASE = "http://testserver"
CONFIG = Settings(
    meta_app_secret=SecretStr("fuzz-meta-secret"),
    x_consumer_secret=SecretStr("fuzz-x-secret"),
    web_form_rate_per_minute=0,
)
schema = schemathesis.openapi.from_dict(create_app(CONFIG).openapi())


def _no_such_complaint(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"error_code": "not_found", "message": "no such ticket"})


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(CONFIG)
    # What the lifespan would open, without a broker or a ticketing behind it (the lifespan is not entered).
    app.state.settings = CONFIG
    app.state.publisher = RecordingPublisher(CONFIG)
    app.state.ticketing = httpx.AsyncClient(
        base_url="http://ticketing", transport=httpx.MockTransport(_no_such_complaint)
    )
    yield TestClient(app, base_url=BASE, raise_server_exceptions=False)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail_with_a_server_error(case: schemathesis.Case[Any], client: TestClient) -> None:
    publisher: RecordingPublisher = client.app.state.publisher  # type: ignore[attr-defined]
    publisher.records.clear()
    kwargs = case.as_transport_kwargs(base_url=BASE)
    data = kwargs.pop("data", None)
    if isinstance(data, bytes | str):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    kwargs.pop("cookies", None)
    kwargs.pop("auth", None)
    response = client.request(**kwargs)
    case.validate_response(response, checks=[not_a_server_error])
    # What was published, if anything, is what the consumers can read; only an accepted complaint publishes.
    messages, _ = published(publisher.records)
    assert len(messages) == (1 if response.status_code == 202 else 0)
