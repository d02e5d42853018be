"""`suara-dev run`: everything on one machine, in the foreground, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from .infra import EmbeddedInfra
from .stack import Stack, default_services

_COLOURS = ["36", "32", "35", "33", "34", "31"]


def _echo_factory() -> tuple[object, threading.Lock]:
    lock = threading.Lock()
    names: dict[str, str] = {}

    def echo(name: str, line: str) -> None:
        colour = names.setdefault(name, _COLOURS[len(names) % len(_COLOURS)])
        with lock:
            if sys.stdout.isatty():
                print(f"\033[{colour}m{name:>13} |\033[0m {line}", flush=True)
            else:
                print(f"{name:>13} | {line}", flush=True)

    return echo, lock


def run(args: argparse.Namespace) -> int:
    data_dir = Path(os.environ.get("DATA_DIR", "var")).resolve()
    broker = urlsplit("//" + os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092").split(",")[0])
    database = urlsplit(os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/suara"))
    infra = EmbeddedInfra(
        data_dir=data_dir, log_dir=data_dir / "logs", broker_port=broker.port or 9092, db_port=database.port or 27017
    )
    echo, _ = _echo_factory()
    services = default_services(base_port=int(os.environ.get("SUARA_BASE_PORT", "8000")))
    stack = Stack(infra=infra, services=services, echo=echo)  # type: ignore[arg-type]
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\nsuara: {signal.Signals(signum).name} received, stopping everything…", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"suara: starting the embedded broker and database (data in {data_dir})…", flush=True)
    try:
        stack.start(timeout=args.timeout)
    except Exception as exc:
        print(f"suara: could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    env = stack.service_env()
    print(_banner(stack, env), flush=True)
    try:
        while not stop.wait(1.0):
            for report in stack.watch_once():
                print(f"suara: !!! {report}", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        print("suara: stopped.", flush=True)
    return 0


def _banner(stack: Stack, env: dict[str, str]) -> str:
    port = {s.name: s.port for s in stack.services}
    lines = [
        "",
        "Suara is up.",
        f"  Citizen web form        http://127.0.0.1:{port['ingest-social']}/",
        f"  Status page             http://127.0.0.1:{port['ingest-social']}/status/<reference>",
        f"  Ticket API              http://127.0.0.1:{port['ticketing']}/api/v1/tickets",
        f"  API documentation       http://127.0.0.1:{port['ticketing']}/docs",
        f"  WhatsApp webhook        http://127.0.0.1:{port['ingest-wa']}/webhooks/whatsapp",
        f"  Notifier (metrics)      http://127.0.0.1:{port['notifier']}/metrics",
        f"  Channel sandbox         http://127.0.0.1:{port['sandbox']}/",
        f"  Citizen's WhatsApp      http://127.0.0.1:{port['sandbox']}/phone",
        f"  Response-team console   http://127.0.0.1:{port['ticketing']}/console/",
        f"  Demo: phones + console  http://127.0.0.1:{port['sandbox']}/demo",
        f"  Village kiosk (Tireman) http://127.0.0.1:{port['ingest-social']}/kiosk/33.17.10.2034",
        f"  Broker (Kafka)          {stack.infra.bootstrap}",
        f"  Database (MongoDB)      {stack.infra.mongodb_uri}",
        "",
        f"  WARNING: development secrets. API token: {env['ADMIN_API_TOKEN']}",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["chaos"]:
        from .chaos import main as chaos_main

        return chaos_main(argv[1:])
    parser = argparse.ArgumentParser(prog="suara-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start everything in the foreground")
    run_parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    measure_parser = sub.add_parser("measure", help="tickets per second stored by a running stack's consumer")
    measure_parser.add_argument("--messages", type=int, default=1000)
    # Listed for --help; `chaos` and `bench` parse their own options (suara-dev chaos --help).
    sub.add_parser("bench", help="load the embedded stack with signed webhooks and measure it", add_help=False)
    sub.add_parser(
        "chaos", help="fault injection: kill, freeze and stop parts of the stack, count what was lost", add_help=False
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "measure":
        import asyncio

        from .measure import measure

        print(asyncio.run(measure(args.messages)))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
