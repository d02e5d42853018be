"""A bounded fuzz of the ticketing API from its own OpenAPI (schemathesis): whatever arrives, never a 5xx.

The app runs in-process (ASGI, lifespan and all) against a database of its own on the real embedded server; only
the server-error check is asserted, since a 4xx for nonsense input is the point. Hypothesis is bounded to a few
examples per operation so that the whole run stays within a minute or two."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from suara_devstack.infra import EmbeddedInfra
from suara_shared import db
from suara_ticketing.config import Settings
from suara_ticketing.main import create_app

from .conftest import TOKEN

BASE = "http://testserver"
# The schema alone (no connection is made until an app's lifespan starts).
schema = schemathesis.openapi.from_dict(create_app(Settings(admin_api_token=TOKEN)).openapi())


@pytest.fixture(scope="module")
def client(infra: EmbeddedInfra) -> Iterator[TestClient]:
    name = f"fuzz{random.getrandbits(40):x}"
    app = create_app(
        Settings(
            kafka_bootstrap_servers=infra.bootstrap,
            kafka_enable_idempotence=False,
            mongodb_uri=infra.database_uri(name),
            admin_api_token=TOKEN,
            ticketing_roles="api",
        )
    )
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as running:
        yield running

    async def drop() -> None:
        mongo, _ = db.connect(infra.mongodb_uri)
        await mongo.drop_database(name)
        await db.close(mongo)

    asyncio.run(drop())


def _send(client: TestClient, case: schemathesis.Case[Any]) -> Any:
    kwargs = case.as_transport_kwargs(base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"})
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    kwargs.pop("cookies", None)
    kwargs.pop("auth", None)
    return client.request(**kwargs)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail_with_a_server_error(case: schemathesis.Case[Any], client: TestClient) -> None:
    response = _send(client, case)
    case.validate_response(response, checks=[not_a_server_error])
