"""Pytest fixtures: the real embedded broker and database, and the whole stack as processes.

Loaded as a plugin by the root conftest.py; every test suite in the repo can ask for these."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from suara_shared import db
from suara_shared.settings import ServiceSettings

from .infra import EmbeddedInfra, default_env, free_port, port_open
from .stack import Stack, default_services

T = TypeVar("T")
ARTIFACTS = Path(os.environ.get("SUARA_TEST_ARTIFACTS", "test-artifacts")).resolve()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_base() -> int:
    """A base port with base..base+9 all free, for one stack's services.

    Chosen below the kernel's ephemeral range: a port there may be the local end of any outgoing connection
    (the tests open many), and then nothing listens on it yet binding it fails."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(15000, max(15010, low - 20), 10)
        if all(_bindable(base + i) and not port_open(base + i) for i in range(10)):
            return base
    raise RuntimeError("no free block of ports")


def _infra(name: str) -> EmbeddedInfra:
    tmp = Path(tempfile.mkdtemp(prefix=f"suara-{name}-"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return EmbeddedInfra(
        data_dir=tmp / "data", log_dir=ARTIFACTS / "logs" / name, broker_port=free_port(), db_port=free_port()
    )


@pytest.fixture(scope="session")
def infra() -> Iterator[EmbeddedInfra]:
    """The embedded broker and database, on free ports, with data in a temporary folder, for the session."""
    emb = _infra("integration")
    emb.start()
    yield emb
    emb.stop()


@pytest.fixture(scope="session")
def settings(infra: EmbeddedInfra) -> ServiceSettings:
    """Settings pointing at the test infra, as a service would read them."""
    env = {**default_env(), "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap, "MONGODB_URI": infra.mongodb_uri}
    return ServiceSettings.model_validate({k.lower(): v for k, v in env.items()})


@pytest.fixture
async def database(infra: EmbeddedInfra) -> AsyncIterator[db.Database]:
    """A fresh, empty database on the embedded server for one test."""
    name = f"t{random.getrandbits(48):x}"
    client, _ = db.connect(infra.mongodb_uri)
    database = client[name]
    yield database
    await client.drop_database(name)
    await db.close(client)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Every service and the sandbox as real processes on free ports, with a broker and database of their own
    (so that what the integration tests left in the shared topics does not reach them)."""
    # X is polled every 2 s here (30 s under `make run`), so the X tests need not wait long for a mention. Every
    # test files its web complaints from 127.0.0.1: the form's per-client limit is raised far above what they send.
    env = {"X_POLL_INTERVAL_SECONDS": "2", "WEB_FORM_RATE_PER_MINUTE": "6000", "WEB_FORM_BURST": "1000"}
    st = Stack(infra=_infra("stack"), services=default_services(base_port=_free_base()), env=env)
    st.start(timeout=60)
    yield st
    st.stop()


def url(st: Stack, service: str, path: str = "") -> str:
    """Base URL of one service of a running stack."""
    port = next(s.port for s in st.services if s.name == service)
    return f"http://127.0.0.1:{port}{path}"


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, what: str = "the expected outcome"
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` if it never does within the bound."""
    deadline = asyncio.get_running_loop().time() + within
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what} within {within:.0f}s (last: {last!r})")


class _LocalServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test runner keeps Ctrl-C, and servers may stop in any order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, within: float = 10.0) -> AsyncIterator[str]:
    """Serve an ASGI app (the channel sandbox, a stand-in receiver) on a free local port for the block; yields
    its base URL. Real HTTP, in the test's own event loop."""
    port = free_port()
    server = _LocalServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + within
    while not server.started:
        if task.done() or asyncio.get_running_loop().time() > deadline:
            server.should_exit = True
            raise RuntimeError(f"local server on port {port} did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=within)
