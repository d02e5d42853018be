"""Open311 GeoReport v2: discovery, services, filing a request through the broker, reading requests back."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from suara_shared import topics
from suara_shared.events import InboundMessage
from suara_ticketing.config import DEV_OPEN311_KEY

from .conftest import App, web_message

NO_AUTH = {"Authorization": ""}


async def _published(app: App, submission: str) -> InboundMessage:
    """The inbound event the POST put on the broker (what ingest-social's web complaints look like too)."""
    consumer = AIOKafkaConsumer(
        topics.INBOUND,
        bootstrap_servers=app.settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        for _ in range(20):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    try:
                        event = InboundMessage.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue  # other tests put poison messages on the shared topic
                    if event.platform_message_id == submission:
                        return event
    finally:
        await consumer.stop()
    raise AssertionError(f"request {submission} never reached the inbound topic")


async def test_discovery_and_services_describe_the_endpoint_and_categories(app: App) -> None:
    discovery = (await app.client.get("/open311/v2/discovery.json", headers=NO_AUTH)).json()
    assert discovery["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert discovery["endpoints"][0]["url"].endswith("/open311/v2")
    services = (await app.client.get("/open311/v2/services.json", headers=NO_AUTH)).json()
    codes = {s["service_code"]: s for s in services}
    assert codes["air_bersih"]["group"].startswith("Perumda Air Minum") and codes["air_bersih"]["metadata"] is False
    assert "PLN" in codes["listrik"]["description"]


async def test_a_request_filed_with_a_key_becomes_a_ticket_like_a_web_complaint(app: App) -> None:
    form = {
        "api_key": DEV_OPEN311_KEY,
        "service_code": "jalan_jembatan",
        "lat": "-6.7086",
        "long": "111.3410",
        "address_string": "Jl. Pemuda, Leteh, Rembang",
        "description": "Lubang besar di Jl. Pemuda dekat alun-alun, sudah ada pengendara jatuh",
        "first_name": "Rina",
        "phone": "0812-3456-7000",
    }
    created = await app.client.post("/open311/v2/requests.json", data=form, headers=NO_AUTH)
    assert created.status_code == 201, created.text
    token = created.json()[0]["token"]
    pending = await app.client.get(f"/open311/v2/tokens/{token}.json", headers=NO_AUTH)
    assert pending.status_code == 404 and pending.json()[0]["code"] == 404

    event = await _published(app, token)
    assert event.channel == "web" and event.metadata["category"] == "jalan_jembatan"
    await app.service.handle_inbound(event)  # what the ticketing consumer does with it

    reference = (await app.client.get(f"/open311/v2/tokens/{token}.json", headers=NO_AUTH)).json()[0][
        "service_request_id"
    ]
    one = (await app.client.get(f"/open311/v2/requests/{reference}.json", headers=NO_AUTH)).json()
    assert len(one) == 1
    request = one[0]
    assert request["status"] == "open" and request["service_code"] == "jalan_jembatan"
    assert request["agency_responsible"] == "Dinas Pekerjaan Umum dan Penataan Ruang"
    assert request["lat"] == -6.7086 and "Kecamatan Rembang" in request["address"]
    assert request["expected_datetime"] and "Rina" not in str(one) and "3456" not in str(one)
    ticket = (await app.client.get(f"/api/v1/tickets/{reference}")).json()
    assert ticket["citizen"]["display_name"] == "Rina" and ticket["citizen"]["phone"] == "+6281234567000"

    await app.client.patch(f"/api/v1/tickets/{reference}", json={"status": "resolved"})
    closed = (await app.client.get("/open311/v2/requests.json", params={"status": "closed"}, headers=NO_AUTH)).json()
    assert [r["service_request_id"] for r in closed] == [reference]
    assert (await app.client.get("/open311/v2/requests.json", params={"status": "open"}, headers=NO_AUTH)).json() == []
    by_code = await app.client.get("/open311/v2/requests.json", params={"service_code": "air_bersih"}, headers=NO_AUTH)
    assert by_code.json() == []


async def test_requests_from_other_channels_and_confidential_reports_stay_private(app: App) -> None:
    await app.service.handle_inbound(web_message("Air PDAM keruh sejak pagi", name="Tono"))
    secret = web_message("Pungli di pelayanan KTP kecamatan")
    secret = secret.model_copy(update={"metadata": {**secret.metadata, "confidential": True}})
    await app.service.handle_inbound(secret)
    public = (await app.client.get("/open311/v2/requests.json", headers=NO_AUTH)).json()
    assert len(public) == 1 and public[0]["description"] is None and public[0]["lat"] is None
    assert "Tono" not in str(public)
    ids = [t["reference"] for t in (await app.client.get("/api/v1/tickets")).json()["items"]]
    hidden = next(r for r in ids if r != public[0]["service_request_id"])
    assert (await app.client.get(f"/open311/v2/requests/{hidden}.json", headers=NO_AUTH)).status_code == 404


async def test_bad_requests_get_open311_errors_and_publish_nothing(app: App) -> None:
    base = {"service_code": "lingkungan", "address_string": "Pasar Lasem", "description": "Sampah menumpuk di pasar"}
    cases = [
        ({**base, "api_key": "wrong"}, 403, "api_key"),
        ({**base}, 400, "api_key"),
        ({**base, "api_key": DEV_OPEN311_KEY, "service_code": "ufo"}, 400, "service_code"),
        ({**base, "api_key": DEV_OPEN311_KEY, "address_string": ""}, 400, "location"),
        ({**base, "api_key": DEV_OPEN311_KEY, "lat": "-6.7"}, 400, "lat and long"),
        ({**base, "api_key": DEV_OPEN311_KEY, "description": "pendek"}, 400, "description"),
        ({**base, "api_key": DEV_OPEN311_KEY, "phone": "12"}, 400, "phone"),
    ]
    for form, status, field in cases:
        response = await app.client.post("/open311/v2/requests.json", data=form, headers=NO_AUTH)
        assert response.status_code == status, (form, response.text)
        assert response.json()[0]["code"] == status and field in response.json()[0]["description"]
    missing = await app.client.get("/open311/v2/requests/RMB-2026-999999.json", headers=NO_AUTH)
    assert missing.status_code == 404
