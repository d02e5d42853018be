"""`python -m suara_ingest_wa` as a real process, and its settings read from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from suara_devstack.infra import EmbeddedInfra, default_env, free_port, spawn, stop_process
from suara_ingest_wa.config import Settings


@pytest.fixture
def service(infra: EmbeddedInfra) -> Iterator[str]:
    """The service started the way `make run` starts it; its base URL once it answers `/healthz`."""
    port = free_port()
    env = {**os.environ, **default_env(), "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap, "PORT": str(port)}
    proc = spawn([sys.executable, "-m", "suara_ingest_wa"], log=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # a bound on the wait (about 30 s), not a speed requirement
            assert proc.poll() is None, f"ingest-wa exited with {proc.returncode}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("ingest-wa did not come up")
        yield base
    finally:
        stop_process(proc)


def test_module_runs_the_service_on_port_from_env(service: str) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "dev-only-verify-token", "hub.challenge": "42"}
    response = httpx.get(f"{service}/webhooks/whatsapp", params=params, timeout=5)
    assert (response.status_code, response.text) == (200, "42")
    assert httpx.get(f"{service}/readyz", timeout=5).status_code == 200


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "18001")
    monkeypatch.setenv("META_APP_SECRET", "s3cret-from-env")
    monkeypatch.setenv("META_VERIFY_TOKEN", "token-from-env")
    settings = Settings()
    assert settings.port == 18001
    assert settings.meta_app_secret.get_secret_value() == "s3cret-from-env"
    assert settings.meta_verify_token.get_secret_value() == "token-from-env"


def test_production_refuses_placeholder_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("META_APP_SECRET", "META_VERIFY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUARA_ENV", "production")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()
    monkeypatch.setenv("META_APP_SECRET", "a-real-app-secret")
    monkeypatch.setenv("META_VERIFY_TOKEN", "a-real-verify-token")
    assert Settings().suara_env == "production"
