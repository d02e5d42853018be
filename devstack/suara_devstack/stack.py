"""The whole of Suara as processes on one machine: infra first, then the services, each watched.

Used by `make run` (through `suara-dev run`) and by the end-to-end tests, so both start things the same way."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .infra import BACKGROUND, EmbeddedInfra, default_env, spawn, stop_process

log = logging.getLogger("suara.devstack")

#: Any of these set means real Meta credentials: then nothing is pointed at the sandbox behind the user's back.
META_TOKENS = ("WA_ACCESS_TOKEN", "FB_PAGE_ACCESS_TOKEN", "IG_ACCESS_TOKEN")
SANDBOX_WA_TOKEN = "dev-only-sandbox-wa-token"  # noqa: S105 - a placeholder, refused in production
#: The business number the sandbox's WhatsApp plays (suara_devstack.sandbox.whatsapp.PHONE_NUMBER_ID).
SANDBOX_WA_PHONE_NUMBER_ID = "106540352242922"
#: The Page, Instagram account and X account the sandbox plays (suara_devstack.sandbox.social), with dev tokens.
SANDBOX_SOCIAL_ENV = {
    "FB_PAGE_ID": "109876543210987",
    "FB_PAGE_ACCESS_TOKEN": "dev-only-sandbox-fb-token",
    "IG_ACCOUNT_ID": "17841400000000001",
    "IG_ACCESS_TOKEN": "dev-only-sandbox-ig-token",
}
SANDBOX_X_ENV = {
    "X_BEARER_TOKEN": "dev-only-sandbox-x-bearer",
    "X_CONSUMER_KEY": "dev-only-sandbox-x-key",
    "X_CONSUMER_SECRET": "dev-only-sandbox-x-secret",
    "X_ACCESS_TOKEN": "dev-only-sandbox-x-token",
    "X_ACCESS_TOKEN_SECRET": "dev-only-sandbox-x-token-secret",
    "X_USER_ID": "1700000000000000000",
}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    #: Settings of this process alone, over the stack's (e.g. `TICKETING_ROLES` for a consumer-only ticketing).
    env: tuple[tuple[str, str], ...] = ()
    #: How far below the webhook path it runs (`infra.BACKGROUND` for what Kafka buffers for).
    nice: int = 0


def default_services(*, base_port: int = 8000) -> list[ServiceSpec]:
    """The four services and the channel sandbox, on the contract's ports (8000–8003, 8009) by default."""
    return [
        ServiceSpec("ticketing", "suara_ticketing", base_port, nice=BACKGROUND),
        ServiceSpec("ingest-wa", "suara_ingest_wa", base_port + 1),
        ServiceSpec("ingest-social", "suara_ingest_social", base_port + 2),
        ServiceSpec("notifier", "suara_notifier", base_port + 3, nice=BACKGROUND),
        ServiceSpec("sandbox", "suara_devstack.sandbox", base_port + 9, nice=BACKGROUND),
    ]


@dataclass
class Running:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    started: float
    restarts: int = 0


@dataclass
class Stack:
    """Infra plus service processes. Output of each service goes to `<log_dir>/<name>.log` and, if `echo`
    is given, line by line to it with the service's name in front."""

    infra: EmbeddedInfra
    services: list[ServiceSpec]
    env: dict[str, str] = field(default_factory=dict)
    echo: Callable[[str, str], None] | None = None
    running: dict[str, Running] = field(default_factory=dict)
    #: Services waiting to be restarted: (when, spec, restarts so far).
    restarts_due: list[tuple[float, ServiceSpec, int]] = field(default_factory=list)
    _stopping: bool = False

    def service_env(self) -> dict[str, str]:
        by_name = {s.name: s for s in self.services}
        env = {**os.environ, **default_env()}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.infra.bootstrap,
                "MONGODB_URI": self.infra.mongodb_uri,
                "DATA_DIR": str(self.infra.data_dir),
            }
        )
        if "ticketing" in by_name:
            env.setdefault("TICKETING_URL", f"http://127.0.0.1:{by_name['ticketing'].port}")
        if "sandbox" in by_name:
            sandbox = f"http://127.0.0.1:{by_name['sandbox'].port}"
            env.setdefault("SANDBOX_URL", sandbox)
            if not any(os.environ.get(name) for name in META_TOKENS):
                # No platform credentials: the Graph API is the sandbox, WhatsApp sends with a development token.
                env.setdefault("META_GRAPH_URL", sandbox)
                env.setdefault("WA_ACCESS_TOKEN", SANDBOX_WA_TOKEN)
                env.setdefault("WA_PHONE_NUMBER_ID", SANDBOX_WA_PHONE_NUMBER_ID)
                for name, value in SANDBOX_SOCIAL_ENV.items():
                    env.setdefault(name, value)
            if not os.environ.get("X_BEARER_TOKEN") and not os.environ.get("X_ACCESS_TOKEN"):
                # No X credentials: the X API is the sandbox too.
                env.setdefault("X_API_URL", sandbox)
                for name, value in SANDBOX_X_ENV.items():
                    env.setdefault(name, value)
        if "ingest-wa" in by_name:
            # The sandbox's phones post their signed webhooks here.
            env.setdefault("INGEST_WA_URL", f"http://127.0.0.1:{by_name['ingest-wa'].port}")
        if "ingest-social" in by_name:
            env.setdefault("PUBLIC_STATUS_URL", f"http://127.0.0.1:{by_name['ingest-social'].port}/status")
            # The sandbox's Facebook and Instagram citizens post their signed webhooks here.
            env.setdefault("INGEST_SOCIAL_URL", f"http://127.0.0.1:{by_name['ingest-social'].port}")
        env.update(self.env)
        return env

    def start(self, *, timeout: float = 60.0) -> None:
        """Start infra and every service; return once every service answers `/healthz`."""
        self.infra.start()
        try:
            self.start_services(timeout=timeout)
        except Exception:
            self.infra.stop()
            raise

    def _launch(self, spec: ServiceSpec, restarts: int = 0) -> None:
        env = {**self.service_env(), **dict(spec.env), "PORT": str(spec.port)}
        log_path = self.infra.log_dir / f"{spec.name}.log"
        output = log_path.open("ab") if self.echo is None else subprocess.PIPE
        proc = spawn([sys.executable, "-m", spec.module], log=output, env=env, nice=spec.nice)
        if self.echo is not None:
            threading.Thread(target=self._pump, args=(spec.name, proc, log_path), daemon=True).start()
        self.running[spec.name] = Running(spec, proc, time.monotonic(), restarts)

    def _pump(self, name: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        assert proc.stdout is not None and self.echo is not None
        with log_path.open("ab") as sink:
            for line in proc.stdout:
                sink.write(line)
                sink.flush()
                self.echo(name, line.decode(errors="replace").rstrip())

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.running)
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for name in list(pending):
                    run = self.running[name]
                    if run.proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {run.proc.returncode} while starting:\n{self.infra.log_tail(name)}"
                        )
                    try:
                        if client.get(f"http://127.0.0.1:{run.spec.port}/healthz").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(f"not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}")
                if pending:
                    time.sleep(0.1)

    def watch_once(self) -> list[str]:
        """Report any service that died and restart it with backoff; call this regularly from the main thread.

        Restarts happen here, not in a timer thread: a child's parent-death signal is bound to the thread that
        started it, so a child started from a short-lived thread would be killed as soon as that thread ends."""
        reports = []
        now = time.monotonic()
        for name, run in list(self.running.items()):
            code = run.proc.poll()
            if code is None or self._stopping:
                continue
            uptime = now - run.started
            restarts = 0 if uptime > 60 else run.restarts + 1
            delay = min(30.0, 0.5 * 2**restarts)
            reports.append(
                f"{name} exited with code {code} after {uptime:.1f}s; restarting in {delay:.1f}s "
                f"(log: {self.infra.log_dir / (name + '.log')})"
            )
            del self.running[name]
            self.restarts_due.append((now + delay, run.spec, restarts))
        for due in [d for d in self.restarts_due if d[0] <= now]:
            self.restarts_due.remove(due)
            if not self._stopping:
                self._launch(due[1], due[2])
        return reports

    def kill_service(self, name: str) -> None:
        """Kill -9 one service (fault tests); `restart_service` brings it back."""
        run = self.running[name]
        run.proc.kill()
        run.proc.wait(10)

    def restart_service(self, name: str) -> None:
        run = self.running.pop(name)
        stop_process(run.proc)
        self._launch(run.spec)
        self.wait_healthy(30)

    def stop_service(self, name: str) -> None:
        """Stop one service cleanly (it commits and leaves its consumer group) and keep it down, as in an outage;
        `start_service` brings it back. Not restarted by `watch_once`: it is no longer running."""
        stop_process(self.running.pop(name).proc, timeout=15)

    def start_service(self, name: str, *, timeout: float = 30.0) -> None:
        """Start again a service `stop_service` stopped, as the stack was given it; return once it answers
        `/healthz`."""
        self._launch(next(spec for spec in self.services if spec.name == name))
        self.wait_healthy(timeout)

    def start_services(self, *, timeout: float = 60.0) -> None:
        """Start every service against infra that is already up."""
        try:
            for spec in self.services:
                self._launch(spec)
            self.wait_healthy(timeout)
        except Exception:
            self.stop_services()
            raise

    def stop(self) -> None:
        """Stop the services first (they commit and close), then the database and broker."""
        self.stop_services()
        self.infra.stop()

    def stop_services(self) -> None:
        self._stopping = True
        runs = list(self.running.values())
        for run in runs:
            if run.proc.poll() is None:
                run.proc.terminate()
        for run in runs:
            stop_process(run.proc, timeout=15)
        self.running.clear()
