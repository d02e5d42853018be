"""The web form, its JSON API and the kiosks take a limited number of complaints per client: past it the client
gets 429 with `Retry-After` (in Bahasa Indonesia on the pages, with what the citizen typed kept), and nothing is
published. `X-Forwarded-For` counts only from trusted proxies. The platforms' webhooks are never limited.

The app runs in-process with a recording publisher and a clock the tests move, so no test waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from suara_devstack.hostile import RecordingPublisher, published
from suara_ingest_social.config import Settings
from suara_ingest_social.limits import RateLimiter, client_key, parse_networks
from suara_ingest_social.main import create_app
from suara_ingest_social.webhooks import signature

COMPLAINT = {"text": "Lampu jalan di depan Balai Desa Tireman mati sejak seminggu.", "name": "Dewi"}
KIOSK = "/kiosk/33.17.10.2034"
SECRET = "rate-test-meta-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class App:
    """ingest-social in-process (recording publisher, a settable clock), reached from any client address."""

    def __init__(self, **settings: Any) -> None:
        config = Settings(meta_app_secret=SecretStr(SECRET), **settings)
        self.clock = Clock()
        self.publisher = RecordingPublisher(config)
        self.app = create_app(config)
        self.app.state.settings = config
        self.app.state.publisher = self.publisher
        self.app.state.ticketing = httpx.AsyncClient(base_url="http://127.0.0.1:9")
        limiter: RateLimiter = self.app.state.form_limiter
        limiter._clock = self.clock
        self.limiter = limiter
        self.runner = asyncio.Runner()

    def post(self, path: str, *, ip: str = "203.0.113.7", **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(ip, 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://suara.test") as client:
                return await client.post(path, **kwargs)

        return self.runner.run(call())

    def complain(self, *, ip: str = "203.0.113.7", headers: dict[str, str] | None = None) -> httpx.Response:
        return self.post("/api/v1/web/complaints", ip=ip, json=COMPLAINT, headers=headers)

    def published(self) -> int:
        return len(published(self.publisher.records)[0])

    def close(self) -> None:
        self.runner.run(self.app.state.ticketing.aclose())
        self.runner.close()


@pytest.fixture
def social() -> Iterator[App]:
    app = App(web_form_rate_per_minute=10, web_form_burst=10)
    yield app
    app.close()


def test_the_eleventh_complaint_in_a_minute_gets_429_with_retry_after_and_is_not_published(social: App) -> None:
    for _ in range(10):
        assert social.complain().status_code == 202
    refused = social.complain()
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "6"  # 10 a minute: the next one in 6 s
    assert refused.json()["retry_after"] == 6
    assert social.published() == 10


def test_the_limit_refills_at_its_rate(social: App) -> None:
    for _ in range(10):
        social.complain()
    social.clock.now += 5.9
    assert social.complain().status_code == 429
    social.clock.now += 0.2
    assert social.complain().status_code == 202
    assert social.complain().status_code == 429
    social.clock.now += 60
    assert [social.complain().status_code for _ in range(11)] == [202] * 10 + [429]


def test_a_refused_body_is_refused_for_its_rate_before_its_content(social: App) -> None:
    for _ in range(10):
        social.complain()
    invalid = social.post("/api/v1/web/complaints", json={"text": "short"})
    assert invalid.status_code == 429


def test_other_clients_are_not_held_back_by_one(social: App) -> None:
    for _ in range(11):
        social.complain(ip="203.0.113.7")
    assert social.complain(ip="203.0.113.8").status_code == 202
    # One IPv6 subscriber is its /64: a new address in it is no new client; another /64 is.
    for n in range(10):
        assert social.complain(ip=f"2001:db8:1:2::{n + 1:x}").status_code == 202
    assert social.complain(ip="2001:db8:1:2:ffff::1").status_code == 429
    assert social.complain(ip="2001:db8:1:3::1").status_code == 202


def test_the_form_says_so_in_bahasa_indonesia_and_keeps_what_was_typed(social: App) -> None:
    form = {"text": "Jalan rusak parah di depan SD Negeri 2 Lasem, banyak lubang.", "name": "Sari"}
    for _ in range(10):
        assert social.post("/lapor", data=form).status_code == 303
    refused = social.post("/lapor", data=form)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "6"
    assert refused.headers["content-type"].startswith("text/html")
    assert "Terlalu banyak laporan dikirim dari jaringan Anda" in refused.text
    assert "silakan kirim lagi dalam 6 detik" in refused.text
    assert "Jalan rusak parah di depan SD Negeri 2 Lasem, banyak lubang." in refused.text
    assert social.published() == 10


def test_the_kiosk_is_limited_too_and_keeps_what_was_typed(social: App) -> None:
    form = {"text": "Saluran air di Desa Tireman tersumbat sampah.", "name": "Parno"}
    for _ in range(10):
        assert social.post(KIOSK, data=form).status_code == 200
    refused = social.post(KIOSK, data=form)
    assert refused.status_code == 429
    assert "Terlalu banyak laporan" in refused.text and "Saluran air di Desa Tireman tersumbat sampah." in refused.text
    assert social.published() == 10


def test_the_form_the_api_and_the_kiosk_share_one_allowance(social: App) -> None:
    for _ in range(4):
        social.complain()
        social.post("/lapor", data=COMPLAINT)
    social.post(KIOSK, data=COMPLAINT)
    social.post(KIOSK, data=COMPLAINT)
    assert social.complain().status_code == 429


def test_a_forwarded_for_header_is_ignored_unless_it_comes_from_a_trusted_proxy(social: App) -> None:
    for n in range(11):
        last = social.complain(headers={"X-Forwarded-For": f"198.51.100.{n}"})
    assert last.status_code == 429, "a client cannot pick a fresh address for each complaint"


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance() -> None:
    app = App(web_form_rate_per_minute=10, web_form_burst=10, trusted_proxies="10.0.0.0/8")
    try:
        for n in range(10):
            # The proxy appends the address it saw; what the client wrote before it is not believed.
            headers = {"X-Forwarded-For": f"198.51.100.{n}, 192.0.2.50"}
            assert app.complain(ip="10.1.2.3", headers=headers).status_code == 202
        assert app.complain(ip="10.1.2.3", headers={"X-Forwarded-For": "192.0.2.50"}).status_code == 429
        assert app.complain(ip="10.9.9.9", headers={"X-Forwarded-For": "192.0.2.51"}).status_code == 202
    finally:
        app.close()


def test_platform_webhooks_are_never_limited(social: App) -> None:
    body = json.dumps({"object": "page", "entry": []}).encode()
    headers = {"X-Hub-Signature-256": signature.meta_sign(body, SECRET), "Content-Type": "application/json"}
    for _ in range(10):
        social.complain(ip="173.252.127.1")
    answers = {social.post("/webhooks/facebook", ip="173.252.127.1", content=body, headers=headers).status_code
               for _ in range(30)}  # fmt: skip
    assert answers == {200}


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    app = App(web_form_rate_per_minute=0)
    try:
        assert {app.complain().status_code for _ in range(30)} == {202}
        assert len(app.limiter) == 0
    finally:
        app.close()


# --- the pieces ----------------------------------------------------------------------------------------------


def test_memory_stays_bounded_however_many_clients_come() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=10, burst=10, max_clients=1000, clock=clock)
    for n in range(5000):
        limiter.take(f"client-{n}")
    assert len(limiter) == 1000
    # The most recent clients are remembered; the oldest were forgotten first.
    assert limiter.take("client-4999") == 0.0 and len(limiter) == 1000
    # A bucket idle long enough to be full again is dropped: it knows nothing a new one would not.
    clock.now += 60
    limiter.take("somebody")
    assert len(limiter) == 1


def test_client_key_believes_only_what_trusted_proxies_added() -> None:
    trusted = parse_networks("10.0.0.0/8, 192.168.1.7")
    assert client_key("203.0.113.7", "198.51.100.1", trusted) == "203.0.113.7"
    assert client_key("10.0.0.2", "198.51.100.1, 203.0.113.9", trusted) == "203.0.113.9"
    assert client_key("10.0.0.2", "198.51.100.1, 203.0.113.9, 192.168.1.7", trusted) == "203.0.113.9"
    assert client_key("10.0.0.2", "not-an-ip, 10.0.0.3", trusted) == "10.0.0.3"
    assert client_key("10.0.0.2", "", trusted) == "10.0.0.2"
    assert client_key(None, None, trusted) == "unknown"
    assert client_key("2001:db8::1", None, ()) == "2001:db8::/64"


def test_a_bad_trusted_proxy_stops_the_service_at_start_naming_it() -> None:
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings(trusted_proxies="10.0.0.0/8, not-a-network")
