"""`make chaos`: fault injection against the whole embedded stack, checked against the database and the sandbox.

It starts its own stack (broker, database, the services, the channel sandbox) on free ports, with ticketing's API
and consumer as two processes as in `deploy/`. Citizens write through the sandbox's phones, which post signed
WhatsApp webhooks and retry each until ingest-wa answers 200, as Meta does. Each fault is one scenario:

  consumer-kill       kill -9 the ticketing consumer (three times by default) while messages flow; the
                      supervisor restarts it
  broker-freeze       SIGSTOP the broker while webhooks flow (they get 503 and are retried), then SIGCONT
  database-stop       shut the database down while messages flow, start it again on the same files
  graph-errors        the sandbox answers the notifier's Graph API sends with 500 and 429 for a while
  duplicate-webhooks  the sandbox posts a share of the webhooks a second time

The broker and database scenarios also take web complaints, each submitted again after a 503 as its answer asks.
After each scenario it waits (bounded) until the system is quiet — the sandbox has nothing left to post, citizens'
messages and replies are consumed to the end of their topics, ticketing's outbox is empty (the delivery statuses'
backlog is reported, not waited for) — and counts: every message sent stored once and on one ticket, one ticket per
citizen, every ticket's acknowledgement received exactly once (by the sandbox; a web citizen's on the status page),
nothing new in the dead-letter topic, and proof that the fault really happened. It prints one line per fault,
writes bench-results/chaos-<time>.json, and exits non-zero if anything was lost or duplicated."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import re
import secrets
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from suara_shared import db, topics

from .infra import EmbeddedInfra, free_port
from .stack import ServiceSpec, Stack, default_services
from .testing import _free_base, url

log = logging.getLogger("suara.chaos")

FAULTS = ("consumer-kill", "broker-freeze", "database-stop", "graph-errors", "duplicate-webhooks")
CONSUMER = "ticketing-consumer"
#: Consumer groups and their topics. The first two must have committed to the end for the system to be quiet
#: (every citizen's message stored, every reply sent); the delivery statuses' backlog is reported, not waited for:
#: it does not change what is counted, and on the embedded database it can take far longer to drain.
GROUPS = {
    "suara-ticketing": topics.INBOUND,
    "suara-notifier": topics.OUTBOUND,
    "suara-ticketing-delivery": topics.DELIVERY,
}
#: Groups that must have committed to the end before the run counts: what citizens sent, what they are sent, and
#: the delivery statuses (so that each ticket shows its acknowledgement's last tick, as the desk would see it).
MUST_DRAIN = ("suara-ticketing", "suara-notifier", "suara-ticketing-delivery")
PARTITIONS = {t.name: t.partitions for t in topics.ALL_TOPICS}
#: An acknowledgement's delivery status on its ticket once the citizen has it (a web reply is delivered when stored).
SHOWN = ("delivered", "read")
REFERENCE = re.compile(r"\b[A-Z][A-Z0-9]*-\d{4}-\d{6}\b")
#: Citizens' messages: varied enough to be routed to different departments, never a `cek` or a survey answer.
TEXTS = (
    "Jalan berlubang di depan SD Negeri {n}, mohon segera diperbaiki",
    "Lampu penerangan jalan mati di gang {n} sejak seminggu",
    "Air PDAM tidak mengalir di rumah nomor {n} sudah tiga hari",
    "Sampah menumpuk di pinggir jalan dekat pasar, tumpukan ke-{n}",
    "Saluran air tersumbat di RT {n}, kalau hujan banjir",
)


@dataclass
class ChaosConfig:
    """Sizes and rates. The defaults are `make chaos`'s full run; `short()` is the version inside `make test`."""

    messages: int = 10_000  # consumer-kill
    fault_messages: int = 2_000  # every other scenario
    rate: float = 50.0  # messages per second the citizens send
    per_citizen: int = 2  # messages each citizen sends (the first opens the ticket, the others join it)
    kills: int = 3
    freeze_seconds: float = 15.0
    db_stop_seconds: float = 30.0
    graph_seconds: float = 20.0
    graph_ratio: float = 1.0
    graph_retry_after: float | None = None
    duplicate_ratio: float = 0.2
    #: broker-freeze and database-stop also take web complaints, this many per WhatsApp message
    web_share: float = 0.1
    drain_timeout: float = 900.0
    only: tuple[str, ...] = FAULTS

    @classmethod
    def short(cls) -> ChaosConfig:
        """A couple of minutes in all. Its Graph outage sends Retry-After past its end on the 429s, so every reply
        outlives it whatever the notifier's jitter draws; the full run's outage gives no such hint."""
        return cls(
            messages=160,
            fault_messages=100,
            rate=20.0,
            freeze_seconds=8.0,
            db_stop_seconds=6.0,
            graph_seconds=5.0,
            graph_retry_after=6.0,
            drain_timeout=150.0,
        )

    def size(self, fault: str) -> int:
        return self.messages if fault == "consumer-kill" else self.fault_messages

    def web(self, fault: str) -> int:
        """Web complaints in the scenario: where a citizen on the form meets the fault too."""
        return round(self.size(fault) * self.web_share) if fault in ("broker-freeze", "database-stop") else 0


@dataclass
class Outcome:
    """What one scenario did and what came of it."""

    fault: str
    sent: int = 0
    stored: int = 0
    duplicated: int = 0  # copies of a message beyond the first
    lost: int = 0  # sent, never stored
    citizens: int = 0
    tickets: int = 0
    split: int = 0  # citizens whose messages landed on more than one ticket
    unthreaded: int = 0  # messages stored on no ticket
    acks_sent: int = 0  # tickets whose acknowledgement reached the citizen (the sandbox; a web status page)
    acks_duplicated: int = 0  # acknowledgements received beyond one per ticket
    acks_missing: int = 0  # tickets whose acknowledgement never reached the citizen
    acks_unconfirmed: int = 0  # acknowledgements received whose ticket does not show them delivered (or read)
    dlq: int = 0  # letters added to the dead-letter topic
    seconds: float = 0.0
    quiet: bool = False  # the system went quiet within the drain timeout
    injected: bool = False  # the fault demonstrably happened
    evidence: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        wrong = (
            self.lost,
            self.duplicated,
            self.split,
            self.unthreaded,
            self.acks_duplicated,
            self.acks_missing,
            self.acks_unconfirmed,
        )
        return self.injected and self.quiet and self.dlq == 0 and not any(wrong)


# ---- the stack --------------------------------------------------------------------------------------------------


def chaos_services(base_port: int) -> list[ServiceSpec]:
    """The services of `make run`, but ticketing's API and consumer as two processes (as `deploy/` runs them), so
    killing the consumer leaves the API up; and the web form's per-address rate limit off, since the run's web
    citizens all come from 127.0.0.1 where real ones come from many addresses."""
    services: list[ServiceSpec] = []
    for spec in default_services(base_port=base_port):
        if spec.name == "ticketing":
            services.append(replace(spec, env=(("TICKETING_ROLES", "api"),)))
            services.append(replace(spec, name=CONSUMER, port=base_port + 4, env=(("TICKETING_ROLES", "consumer"),)))
        elif spec.name == "ingest-social":
            services.append(replace(spec, env=(("WEB_FORM_RATE_PER_MINUTE", "0"),)))
        else:
            services.append(spec)
    return services


def chaos_stack(*, data_dir: Path, log_dir: Path) -> Stack:
    infra = EmbeddedInfra(data_dir=data_dir, log_dir=log_dir, broker_port=free_port(), db_port=free_port())
    return Stack(infra=infra, services=chaos_services(_free_base()))


# ---- citizens -----------------------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """One scenario's citizens: `count` messages from `count / per_citizen` numbers, sent through the sandbox's
    phones at `rate` per second, round-robin (every citizen writes once before anyone writes twice); and `web`
    complaints on the citizens' form API, spread over the same time, each submitted again after a 503 as a citizen
    would (until 202)."""

    tag: str
    prefix: str  # the citizens' WhatsApp ids start so
    count: int
    per_citizen: int
    rate: float
    web: int = 0
    sent: dict[str, str] = field(default_factory=dict)  # wamid -> wa_id, once the sandbox took it
    refused: int = 0
    web_sent: set[str] = field(default_factory=set)  # markers of the complaints answered 202
    web_answers: Counter[str] = field(default_factory=Counter)  # every answer the form API gave
    seen_stored: set[str] = field(default_factory=set)  # wamids found stored so far (never looked up again)

    @property
    def citizens(self) -> int:
        return max(1, -(-self.count // self.per_citizen))

    @property
    def seconds(self) -> float:
        return self.count / self.rate

    def wa_id(self, citizen: int) -> str:
        return f"{self.prefix}{citizen:05d}"

    def wamid(self, i: int) -> str:
        return f"wamid.chaos-{self.tag}-{i:06d}"

    @property
    def web_marker(self) -> str:
        """What every web complaint of this traffic starts with (then its number and `]`)."""
        return f"[chaos-{self.tag}-w"

    async def send(self, http: httpx.AsyncClient, sandbox: str, *, web_url: str = "", concurrency: int = 16) -> None:
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()

        async def complaint(j: int) -> None:
            marker = f"{self.web_marker}{j:05d}]"
            body = {"text": f"{marker} {TEXTS[j % len(TEXTS)].format(n=j)}", "name": f"Warga Web {j}"}
            # As the form does with its hidden token: one key for every try of this complaint, so a try answered 503
            # whose message did reach the broker (a frozen broker answers late) and the next try are one complaint.
            headers = {"Idempotency-Key": f"chaos-{self.tag}-{j:05d}"}
            for _attempt in range(120):  # a patient citizen: submits again a second after each failure
                wait = 1.0
                try:
                    response = await http.post(f"{web_url}/api/v1/web/complaints", json=body, headers=headers)
                    self.web_answers[str(response.status_code)] += 1
                    if response.status_code == 202:
                        self.web_sent.add(marker)
                        return
                    with contextlib.suppress(ValueError):
                        wait = max(wait, min(30.0, float(response.headers.get("retry-after", "0"))))
                except httpx.HTTPError as exc:
                    self.web_answers[type(exc).__name__] += 1
                await asyncio.sleep(wait)

        async def one(i: int) -> None:
            citizen, round_ = i % self.citizens, i // self.citizens
            wa_id, wamid = self.wa_id(citizen), self.wamid(i)
            text = TEXTS[i % len(TEXTS)].format(n=i) + (f" (pesan ke-{round_ + 1})" if round_ else "")
            body = {"name": f"Warga {self.tag} {citizen}", "text": text, "id": wamid}
            async with gate:
                for attempt in range(5):
                    try:
                        response = await http.post(f"{sandbox}/_sandbox/whatsapp/phones/{wa_id}/messages", json=body)
                        if response.status_code == 202:
                            self.sent[wamid] = wa_id
                            return
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2 * 2**attempt)
                self.refused += 1

        start = loop.time()
        # Both kinds in the order of their moments: message i at i/rate, complaint j at j·(count/web)/rate.
        moments = sorted(
            [(i / self.rate, "wa", i) for i in range(self.count)]
            + [(j * self.count / self.web / self.rate, "web", j) for j in range(self.web)]
        )
        tasks = []
        for at, kind, n in moments:
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n) if kind == "wa" else complaint(n)))
        await asyncio.gather(*tasks)


# ---- the harness ----------------------------------------------------------------------------------------------------


class Harness:
    """A started stack, with the probes the scenarios need. Call `watch()` as a task: it restarts what died."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.infra = stack.infra
        self.sandbox = self.url("sandbox")
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
        self.mongo, self.db = db.connect(self.infra.mongodb_uri, timeout_ms=3000)
        self.expected_exits: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self._kafka: dict[str, AIOKafkaConsumer] = {}
        self._scenario = 0

    def url(self, service: str, path: str = "") -> str:
        return url(self.stack, service, path)

    async def aclose(self) -> None:
        await self.http.aclose()
        await db.close(self.mongo)
        await self._close_kafka()

    # --- supervision ---

    async def watch(self) -> None:
        """Restart any service that died (from this, the main thread: children are bound to the thread that
        starts them); a death no scenario caused is noted."""
        while True:
            for report in self.stack.watch_once():
                name = report.split(" ", 1)[0]
                if self.expected_exits[name] > 0:
                    self.expected_exits[name] -= 1
                else:
                    self.unexpected.append(report)
                    log.warning("unexpected exit: %s", report)
            await asyncio.sleep(0.2)

    def pid(self, service: str) -> int | None:
        run = self.stack.running.get(service)
        return run.proc.pid if run is not None and run.proc.poll() is None else None

    def kill(self, service: str) -> int:
        pid = self.pid(service)
        assert pid is not None, f"{service} is not running"
        self.expected_exits[service] += 1
        self.stack.kill_service(service)
        return pid

    async def healthy(self, service: str) -> bool:
        try:
            return (await self.http.get(self.url(service, "/healthz"), timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    async def ready(self, service: str) -> bool:
        try:
            return (await self.http.get(self.url(service, "/readyz"), timeout=3)).status_code == 200
        except httpx.HTTPError:
            return False

    async def until(self, probe: Callable[[], Awaitable[bool]], *, within: float, every: float = 0.2) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await probe():
                return True
            await asyncio.sleep(every)
        return False

    # --- the sandbox ---

    async def sandbox_get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(f"{self.sandbox}{path}", params=params)
        response.raise_for_status()
        return response.json()

    async def sandbox_put(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.http.put(f"{self.sandbox}{path}", json=body)
        response.raise_for_status()
        return response.json()

    async def webhook_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.sandbox_get("/_sandbox/whatsapp/webhooks/stats")
        return stats

    # --- the database ---

    async def stored(self, traffic: Traffic) -> int | None:
        """Messages of this traffic stored so far; None while the database does not answer.

        Asked every second while the run waits for quiet, so it costs the database little: point lookups of the
        messages not yet seen stored, by `_id`, `db.PART` at a time (a range of `_id`s, or any count, has the
        embedded database read the whole collection, and its cost per value of an `$in` grows with the list's length:
        either slowed the very pipeline the run waits for)."""
        missing = [w for w in traffic.sent if w not in traffic.seen_stored]
        try:
            for part in db.parts(missing):
                ids = [f"in:whatsapp:{w}" for w in part]
                async for doc in self.db["messages"].find({"_id": {"$in": ids}}, {"_id": 1}):
                    traffic.seen_stored.add(doc["_id"].removeprefix("in:whatsapp:"))
        except db.PyMongoError:
            return None
        return len(traffic.seen_stored)

    async def outbox(self) -> int | None:
        """What ticketing stored to publish and has not published yet: outbound messages and ticket events flagged
        unpublished, and the batches in its `outbox` collection. None while the database does not answer."""
        try:
            return (
                await self.db["messages"].count_documents({"direction": "outbound", "published": False})
                + await self.db["ticket_events"].count_documents({"published": False})
                + await self.db["outbox"].count_documents({})
            )
        except db.PyMongoError:
            return None

    # --- the broker ---

    async def _consumer(self, group: str | None) -> AIOKafkaConsumer:
        key = group or ""
        consumer = self._kafka.get(key)
        if consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.infra.bootstrap,
                group_id=group,
                enable_auto_commit=False,
                request_timeout_ms=5000,
            )
            await asyncio.wait_for(consumer.start(), timeout=10)
            self._kafka[key] = consumer
        return consumer

    async def _close_kafka(self) -> None:
        for consumer in self._kafka.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5)
        self._kafka.clear()

    async def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = await self._consumer(None)
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS[topic])]
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=10)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def lags(self) -> dict[str, int] | None:
        """Per consumer group, messages on its topic not yet committed; None while the broker does not answer."""
        try:
            out = {}
            for group, topic in GROUPS.items():
                ends = await self.end_offsets(topic)
                consumer = await self._consumer(group)
                lag = 0
                for partition, end in ends.items():
                    committed = await asyncio.wait_for(consumer.committed(TopicPartition(topic, partition)), 10)
                    lag += max(0, end - (committed or 0))
                out[group] = lag
            return out
        except (KafkaError, TimeoutError, OSError):
            await self._close_kafka()  # a client that lived through a frozen broker is not trusted again
            return None

    async def dead_letters(self, since: dict[int, int]) -> list[dict[str, str]]:
        """The letters the dead-letter topic got after the offsets `since`, with where they came from and why."""
        ends = await self.end_offsets(topics.DEAD_LETTER)
        if all(ends[p] <= since.get(p, 0) for p in ends):
            return []
        reader = AIOKafkaConsumer(bootstrap_servers=self.infra.bootstrap, enable_auto_commit=False)
        await reader.start()
        letters: list[dict[str, str]] = []
        try:
            tps = [TopicPartition(topics.DEAD_LETTER, p) for p in ends]
            reader.assign(tps)
            for tp in tps:
                reader.seek(tp, since.get(tp.partition, 0))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and [tp for tp in tps if await reader.position(tp) < ends[tp.partition]]:
                for records in (await reader.getmany(timeout_ms=1000)).values():
                    for record in records:
                        if record.offset < ends[record.partition]:
                            headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
                            letters.append(
                                {
                                    "origin_topic": headers.get("x-origin-topic", ""),
                                    "reason": headers.get("x-error-reason", ""),
                                    "detail": headers.get("x-error-detail", "")[:300],
                                }
                            )
        finally:
            await reader.stop()
        return letters

    # --- one scenario ---

    def traffic(self, fault: str, config: ChaosConfig) -> Traffic:
        self._scenario += 1
        salt = secrets.randbelow(1000)
        return Traffic(
            tag=f"{self._scenario}{secrets.token_hex(3)}",
            prefix=f"6289{self._scenario % 10}{salt:03d}",
            count=config.size(fault),
            per_citizen=config.per_citizen,
            rate=config.rate,
            web=config.web(fault),
        )

    async def wait_quiet(self, traffic: Traffic, *, within: float) -> tuple[bool, dict[str, Any]]:
        """Wait until nothing is moving: the sandbox has no webhook or status left to post, every group has
        committed to the end of its topic, the outbox is empty, and the stored count held still — twice in a row."""
        deadline = time.monotonic() + within
        calm = 0
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                in_hand = (await self.webhook_stats())["in_hand"]
            except httpx.HTTPError:
                in_hand = -1
            snapshot = {
                "sandbox_in_hand": in_hand,
                "lags": await self.lags(),
                "outbox": await self.outbox(),
                "stored": await self.stored(traffic),
            }
            still = (
                in_hand == 0
                and snapshot["lags"] is not None
                and not any(snapshot["lags"][g] for g in MUST_DRAIN)
                and snapshot["outbox"] == 0
                and snapshot["stored"] is not None
                and snapshot["stored"] == last.get("stored")
            )
            calm = calm + 1 if still else 0
            last = snapshot
            if calm >= 2:
                return True, snapshot
            await asyncio.sleep(1.0)
        return False, last

    async def account(self, outcome: Outcome, traffic: Traffic, *, dlq_since: dict[int, int]) -> None:
        """Count, against the database and the sandbox, what became of the traffic."""
        outcome.sent = len(traffic.sent)
        outcome.citizens = len(set(traffic.sent.values()))
        copies: Counter[str] = Counter()
        tickets_of: dict[str, set[str]] = {}
        unthreaded = 0
        for part in db.parts(traffic.sent):
            # By the platform's id, not by our key: a copy stored under any other key would show here too.
            cursor = self.db["messages"].find(
                {"channel": "whatsapp", "channel_message_id": {"$in": part}},
                {"channel_message_id": 1, "ticket": 1, "conversation_key": 1},
            )
            async for doc in cursor:
                copies[doc["channel_message_id"]] += 1
                if doc.get("ticket"):
                    tickets_of.setdefault(traffic.sent[doc["channel_message_id"]], set()).add(doc["ticket"])
                else:
                    unthreaded += 1
        # Web complaints: each citizen's, found by the marker its text starts with, whatever its submission id.
        web_copies: Counter[str] = Counter()
        web_tickets: set[str] = set()
        if traffic.web:
            cursor = self.db["messages"].find(
                {"channel": "web", "direction": "inbound", "text": {"$regex": "^" + re.escape(traffic.web_marker)}},
                {"text": 1, "ticket": 1},
            )
            async for doc in cursor:
                web_copies[doc["text"].split("]", 1)[0] + "]"] += 1
                if doc.get("ticket"):
                    web_tickets.add(doc["ticket"])
                else:
                    unthreaded += 1
            outcome.evidence["web"] = {"accepted": len(traffic.web_sent), "answers": dict(traffic.web_answers)}
        outcome.sent += len(traffic.web_sent)
        outcome.citizens += len(traffic.web_sent)
        outcome.stored = len(copies) + len(web_copies.keys() & traffic.web_sent)
        outcome.duplicated = sum(n - 1 for n in copies.values()) + sum(n - 1 for n in web_copies.values())
        outcome.lost = outcome.sent - outcome.stored
        outcome.unthreaded = unthreaded
        tickets = set().union(*tickets_of.values()) if tickets_of else set()
        outcome.tickets = len(tickets) + len(web_tickets)
        outcome.split = sum(1 for refs in tickets_of.values() if len(refs) > 1)

        phones = await self.sandbox_get("/_sandbox/whatsapp/phones", prefix=traffic.prefix, detail="true")
        received: Counter[str] = Counter()
        stray = 0
        for phone in phones:
            for message in phone["messages"]:
                if message["direction"] != "out":
                    continue
                refs = set(REFERENCE.findall(message.get("text") or ""))
                if refs & tickets:
                    received.update(refs & tickets)
                else:
                    stray += 1
        # The status each acknowledgement reached since it was stored is kept beside it: read as ticketing reads it.
        from suara_ticketing.deliveries import COLLECTION, overlay

        states: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for part in db.parts(sorted(tickets | web_tickets)):
            acks = (
                await self.db["messages"]
                .find(
                    {"ticket": {"$in": part}, "direction": "outbound", "purpose": "acknowledgement"},
                    {"ticket": 1, "direction": 1, "delivery_status": 1, "delivery_rank": 1, "delivery_error": 1},
                )
                .to_list(None)
            )
            for doc in await overlay(self.db[COLLECTION], acks):
                states[str(doc.get("delivery_status"))] += 1
                if doc.get("delivery_error"):
                    failures[str((doc["delivery_error"] or {}).get("code"))] += 1
                if doc["ticket"] in web_tickets and doc.get("delivery_status") != "failed":
                    # A web citizen's acknowledgement is on their status page, which shows the ticket's replies as
                    # soon as ticketing stored them (the notifier's "delivered" follows with the delivery statuses).
                    received[doc["ticket"]] += 1
        everyone = tickets | web_tickets
        outcome.acks_sent = sum(1 for ref in everyone if received[ref])
        outcome.acks_duplicated = sum(n - 1 for n in received.values() if n > 1)
        outcome.acks_missing = len(everyone) - outcome.acks_sent
        outcome.evidence["acks_on_tickets"] = dict(states)
        outcome.acks_unconfirmed = min(outcome.acks_sent, sum(n for state, n in states.items() if state not in SHOWN))
        if failures:
            outcome.evidence["ack_failures"] = dict(failures)
        if stray:
            outcome.evidence["other_sends_to_citizens"] = stray
        if traffic.refused:
            outcome.notes.append(f"the sandbox refused {traffic.refused} of the citizens' messages")
        letters = await self.dead_letters(dlq_since)
        outcome.dlq = len(letters)
        if letters:
            outcome.evidence["dead_letters"] = letters[:20]

    async def scenario(
        self,
        fault: str,
        config: ChaosConfig,
        inject: Callable[[Traffic, asyncio.Task[None], Outcome], Awaitable[None]],
    ) -> Outcome:
        """Send one scenario's traffic while `inject` plays the fault, wait for quiet, and account."""
        outcome = Outcome(fault=fault)
        traffic = self.traffic(fault, config)
        dlq_since = await self.end_offsets(topics.DEAD_LETTER)
        unexpected_before = len(self.unexpected)
        web = f" and {traffic.web} web complaints" if traffic.web else ""
        print(
            f"chaos: {fault}: {traffic.count} messages from {traffic.citizens} citizens{web} at {traffic.rate:g}/s…",
            flush=True,
        )
        started = time.monotonic()
        sending = asyncio.create_task(traffic.send(self.http, self.sandbox, web_url=self.url("ingest-social")))
        try:
            await inject(traffic, sending, outcome)
            await sending
        finally:
            if not sending.done():
                sending.cancel()
        sent_at = time.monotonic()
        outcome.quiet, last = await self.wait_quiet(traffic, within=config.drain_timeout)
        outcome.seconds = round(time.monotonic() - started, 1)
        outcome.evidence["seconds_sending_and_fault"] = round(sent_at - started, 1)
        outcome.evidence["seconds_to_quiet_after"] = round(time.monotonic() - sent_at, 1)
        if last.get("lags"):
            outcome.evidence["delivery_statuses_not_yet_applied"] = last["lags"]["suara-ticketing-delivery"]
        if not outcome.quiet:
            outcome.notes.append(f"not quiet after {config.drain_timeout:g}s of waiting: {last}")
        await self.account(outcome, traffic, dlq_since=dlq_since)
        outcome.notes += [f"unexpected exit: {r}" for r in self.unexpected[unexpected_before:]]
        return outcome


async def _sent_at_least(traffic: Traffic, share: float, sending: asyncio.Task[None]) -> None:
    """Wait until this share of the traffic was handed to the sandbox (or the sending is over)."""
    while len(traffic.sent) < share * traffic.count and not sending.done():  # noqa: ASYNC110 - a count, polled
        await asyncio.sleep(0.1)


# ---- the faults -----------------------------------------------------------------------------------------------------


async def consumer_kill(h: Harness, config: ChaosConfig) -> Outcome:
    """kill -9 the ticketing consumer `kills` times, spread over the sending; each time, once it is back and
    storing again. The supervisor (`Stack.watch_once`, as under `make run`) restarts it."""

    async def inject(traffic: Traffic, sending: asyncio.Task[None], outcome: Outcome) -> None:
        kills: list[dict[str, Any]] = []
        pids = [h.pid(CONSUMER)]
        for k in range(config.kills):
            await _sent_at_least(traffic, (k + 1) / (config.kills + 1), sending)
            # Kill it while it works: wait until it stores something it had not before.
            floor = await h.stored(traffic) or 0
            await h.until(functools.partial(_above, h, traffic, floor), within=120)
            stored = await h.stored(traffic)
            pid = h.kill(CONSUMER)
            kills.append({"pid": pid, "sent": len(traffic.sent), "stored": stored})
            print(f"chaos:   kill -9 {CONSUMER} (pid {pid}) with {stored} of {len(traffic.sent)} stored", flush=True)
            back = await h.until(functools.partial(_replaced, h, CONSUMER, pid), within=120)
            pids.append(h.pid(CONSUMER) if back else None)
        outcome.evidence.update(kills=kills, consumer_pids=pids)
        # Every kill hit a running consumer with work in hand, and a new process took over each time.
        outcome.injected = (
            len(kills) == config.kills
            and None not in pids
            and len(set(pids)) == config.kills + 1
            and all(k["stored"] is not None and k["stored"] < traffic.count for k in kills)
        )

    return await h.scenario("consumer-kill", config, inject)


async def _above(h: Harness, traffic: Traffic, floor: int) -> bool:
    stored = await h.stored(traffic)
    return stored is not None and (stored > floor or stored >= traffic.count)


async def _replaced(h: Harness, service: str, old_pid: int) -> bool:
    """A new process of the service runs and answers."""
    return h.pid(service) not in (None, old_pid) and await h.healthy(service)


async def broker_freeze(h: Harness, config: ChaosConfig) -> Outcome:
    """SIGSTOP the broker for `freeze_seconds` once a third of the traffic is out, then SIGCONT."""

    async def inject(traffic: Traffic, sending: asyncio.Task[None], outcome: Outcome) -> None:
        before = (await h.webhook_stats())["answers"]
        await _sent_at_least(traffic, 1 / 3, sending)
        print(f"chaos:   SIGSTOP broker for {config.freeze_seconds:g}s", flush=True)
        h.infra.freeze("broker")
        try:
            await asyncio.sleep(config.freeze_seconds)
        finally:
            h.infra.thaw("broker")
        print("chaos:   SIGCONT broker", flush=True)
        # The webhooks that met the frozen broker are answered 503 (or time out) and retried by the sandbox.
        await asyncio.sleep(min(10.0, config.freeze_seconds))
        answers = _delta(before, (await h.webhook_stats())["answers"])
        outcome.evidence.update(frozen_seconds=config.freeze_seconds, webhook_answers=answers)
        outcome.injected = answers.get("503", 0) > 0

    return await h.scenario("broker-freeze", config, inject)


async def database_stop(h: Harness, config: ChaosConfig) -> Outcome:
    """Shut the database down (SIGTERM) for `db_stop_seconds` once a third of the traffic is out; start it again
    on the same files."""

    async def inject(traffic: Traffic, sending: asyncio.Task[None], outcome: Outcome) -> None:
        await _sent_at_least(traffic, 1 / 3, sending)
        old = h.infra.procs["database"].pid
        stored_before = await h.stored(traffic)
        print(f"chaos:   stopping the database (pid {old}) for {config.db_stop_seconds:g}s", flush=True)
        started = time.monotonic()
        await asyncio.to_thread(h.infra.stop_database)
        unready = 0
        took_webhooks = (await h.webhook_stats())["answers"].get("200", 0)
        while time.monotonic() - started < config.db_stop_seconds:
            unready += not await h.ready(CONSUMER)
            await asyncio.sleep(0.5)
        took_webhooks = (await h.webhook_stats())["answers"].get("200", 0) - took_webhooks
        h.infra.start_database(wait=None)  # here, in the main thread: the database must outlive no thread of ours
        await asyncio.to_thread(h.infra.wait_ready, 60, only={"database"})
        new = h.infra.procs["database"].pid
        print(f"chaos:   database back (pid {new})", flush=True)
        outcome.evidence.update(
            database_pids=[old, new],
            stopped_seconds=round(time.monotonic() - started, 1),
            stored_before_stop=stored_before,
            consumer_unready_polls=unready,
            webhooks_taken_while_stopped=took_webhooks,
        )
        outcome.injected = old != new and unready > 0

    return await h.scenario("database-stop", config, inject)


async def graph_errors(h: Harness, config: ChaosConfig) -> Outcome:
    """The sandbox answers Graph API sends with 500 and 429 in turn for `graph_seconds`, then recovers."""

    async def inject(traffic: Traffic, sending: asyncio.Task[None], outcome: Outcome) -> None:
        before = (await h.sandbox_get("/_sandbox/faults"))["graph_refused"]
        await _sent_at_least(traffic, 1 / 10, sending)
        print(f"chaos:   Graph API answers 500/429 for {config.graph_seconds:g}s", flush=True)
        await h.sandbox_put(
            "/_sandbox/faults/graph",
            {
                "statuses": [500, 429],
                "ratio": config.graph_ratio,
                "seconds": config.graph_seconds,
                "retry_after": config.graph_retry_after,
            },
        )
        await asyncio.sleep(config.graph_seconds)
        await h.http.delete(f"{h.sandbox}/_sandbox/faults/graph")
        refused = _delta(before, (await h.sandbox_get("/_sandbox/faults"))["graph_refused"])
        outcome.evidence.update(graph_refused=refused, outage_seconds=config.graph_seconds)
        outcome.injected = refused.get("500", 0) > 0 and refused.get("429", 0) > 0

    return await h.scenario("graph-errors", config, inject)


async def duplicate_webhooks(h: Harness, config: ChaosConfig) -> Outcome:
    """The sandbox posts `duplicate_ratio` of the webhooks ingest-wa took a second time (messages and statuses)."""

    async def inject(traffic: Traffic, sending: asyncio.Task[None], outcome: Outcome) -> None:
        before = (await h.webhook_stats())["duplicates"]
        await h.sandbox_put("/_sandbox/faults/webhooks", {"ratio": config.duplicate_ratio})
        await sending
        outcome.evidence["duplicates_before"] = before

    outcome = await h.scenario("duplicate-webhooks", config, inject)
    await h.sandbox_put("/_sandbox/faults/webhooks", {"ratio": 0})
    posted = _delta(outcome.evidence.pop("duplicates_before"), (await h.webhook_stats())["duplicates"])
    outcome.evidence["posted_twice"] = posted
    outcome.injected = posted.get("message", 0) > 0
    return outcome


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


SCENARIOS: dict[str, Callable[[Harness, ChaosConfig], Awaitable[Outcome]]] = {
    "consumer-kill": consumer_kill,
    "broker-freeze": broker_freeze,
    "database-stop": database_stop,
    "graph-errors": graph_errors,
    "duplicate-webhooks": duplicate_webhooks,
}


@contextlib.asynccontextmanager
async def supervised(stack: Stack) -> AsyncIterator[Harness]:
    """A harness on a started stack, restarting what dies while the block runs. Enter it in the thread that
    started the stack (the restarted children are bound to it)."""
    h = Harness(stack)
    watcher = asyncio.create_task(h.watch())
    try:
        if not await h.until(lambda: h.ready(CONSUMER), within=90):
            raise RuntimeError(f"{CONSUMER} not ready:\n{stack.infra.log_tail(CONSUMER)}")
        yield h
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await h.aclose()


async def run_scenarios(stack: Stack, config: ChaosConfig, outcomes: list[Outcome] | None = None) -> list[Outcome]:
    """Run the chosen scenarios one after the other on a started stack; each outcome is added to `outcomes` as it
    comes (so an interrupted run still has the ones that finished)."""
    outcomes = [] if outcomes is None else outcomes
    async with supervised(stack) as h:
        for fault in config.only:
            outcome = await SCENARIOS[fault](h, config)
            print(f"chaos: {line(outcome)}", flush=True)
            outcomes.append(outcome)
    return outcomes


# ---- the report -----------------------------------------------------------------------------------------------------

COLUMNS = (
    "fault",
    "sent",
    "stored",
    "duplicated",
    "lost",
    "tickets",
    "acks sent",
    "acks duplicated",
    "acks missing",
    "dlq",
    "duration",
)


def problems(o: Outcome) -> list[str]:
    """What is wrong with a scenario's outcome, in words; empty when it passed."""
    found = [] if o.injected else ["the fault did not show"]
    found += [] if o.quiet else ["never went quiet"]
    counts = {
        "lost": o.lost,
        "duplicated": o.duplicated,
        "stored on no ticket": o.unthreaded,
        "citizens split over tickets": o.split,
        "acks duplicated": o.acks_duplicated,
        "acks missing": o.acks_missing,
        "acks received but not shown delivered on their ticket": o.acks_unconfirmed,
        "dead letters": o.dlq,
    }
    return found + [f"{n} {what}" for what, n in counts.items() if n]


def _cells(o: Outcome) -> list[str]:
    tickets = f"{o.tickets}" + (f" ({o.split} split)" if o.split else "")
    return [
        o.fault + ("" if o.ok else " !!"),
        str(o.sent),
        str(o.stored),
        str(o.duplicated),
        str(o.lost + o.unthreaded),
        tickets,
        str(o.acks_sent),
        str(o.acks_duplicated),
        str(o.acks_missing),
        str(o.dlq),
        f"{o.seconds:.0f}s",
    ]


def line(outcome: Outcome) -> str:
    wrong = problems(outcome)
    return " | ".join(_cells(outcome)) + (f"   !! {'; '.join(wrong)}" if wrong else "")


def table(outcomes: list[Outcome]) -> str:
    rows = [list(COLUMNS), *(_cells(o) for o in outcomes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    text = [
        " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    text.insert(1, "-+-".join("-" * w for w in widths))
    for o in outcomes:
        proof = json.dumps({k: v for k, v in o.evidence.items() if k != "dead_letters"}, default=str)
        text.append(f"{o.fault}: {'fault injected' if o.injected else 'FAULT NOT SHOWN'}: {proof}")
        text += [f"{o.fault}: !! {p}" for p in problems(o)]
        text += [f"{o.fault}: {n}" for n in o.notes]
    return "\n".join(text)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(
        prog="suara-dev chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=defaults.messages, help="messages in consumer-kill")
    parser.add_argument(
        "--fault-messages", type=int, default=defaults.fault_messages, help="messages in each other scenario"
    )
    parser.add_argument("--rate", type=float, default=defaults.rate, help="messages per second the citizens send")
    parser.add_argument("--per-citizen", type=int, default=defaults.per_citizen, help="messages per citizen")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--freeze-seconds", type=float, default=defaults.freeze_seconds)
    parser.add_argument("--db-stop-seconds", type=float, default=defaults.db_stop_seconds)
    parser.add_argument("--graph-seconds", type=float, default=defaults.graph_seconds)
    parser.add_argument(
        "--graph-ratio", type=float, default=defaults.graph_ratio, help="share of Graph sends refused during the outage"
    )
    parser.add_argument("--graph-retry-after", type=float, default=None, help="Retry-After on the 429s")
    parser.add_argument("--duplicate-ratio", type=float, default=defaults.duplicate_ratio)
    parser.add_argument(
        "--web-share", type=float, default=defaults.web_share, help="web complaints per message (broker, database)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=defaults.drain_timeout, help="seconds each scenario may take to go quiet"
    )
    parser.add_argument("--only", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument("--short", action="store_true", help="the small sizes of the test inside `make test`")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    only = tuple(f.strip() for f in args.only.split(",") if f.strip())
    unknown = sorted(set(only) - set(FAULTS))
    if unknown:
        parser.error(f"--only: unknown fault(s) {', '.join(unknown)}")
    config = (
        ChaosConfig.short()
        if args.short
        else ChaosConfig(
            messages=args.messages,
            fault_messages=args.fault_messages,
            rate=args.rate,
            per_citizen=args.per_citizen,
            kills=args.kills,
            freeze_seconds=args.freeze_seconds,
            db_stop_seconds=args.db_stop_seconds,
            graph_seconds=args.graph_seconds,
            graph_ratio=args.graph_ratio,
            graph_retry_after=args.graph_retry_after,
            duplicate_ratio=args.duplicate_ratio,
            web_share=args.web_share,
            drain_timeout=args.drain_timeout,
        )
    )
    config.only = only
    tmp = Path(tempfile.mkdtemp(prefix="suara-chaos-"))
    stack = chaos_stack(data_dir=tmp / "data", log_dir=tmp / "logs")
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops everything as Ctrl-C does
    # The run's own broker clients complain while the broker is frozen, which is the point; the table says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    print(f"chaos: starting the stack (logs in {tmp / 'logs'})…", flush=True)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        stack.start(timeout=120)
        asyncio.run(run_scenarios(stack, config, outcomes))
    except KeyboardInterrupt:
        print("chaos: interrupted; stopping the stack…", flush=True)
        interrupted = True
    finally:
        stack.stop()
    if not outcomes:
        return 130 if interrupted else 1
    result = {
        "settings": asdict(config),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "seconds": round(time.monotonic() - started, 1),
        "interrupted": interrupted,
        "logs": str(tmp / "logs"),
        "outcomes": [{**asdict(o), "ok": o.ok, "problems": problems(o)} for o in outcomes],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"chaos-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(table(outcomes))
    print(f"\nresult: {path}")
    if interrupted:
        return 130
    return 0 if all(o.ok for o in outcomes) else 1
