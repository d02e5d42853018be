"""Kafka plumbing: a publisher that answers only once the broker has the message, and a consumer loop that
commits offset+1 only after processing, sends poison messages to the dead-letter topic and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from pydantic import ValidationError

from . import db, topics
from .events import Event, utcnow
from .metrics import CONSUMER_LAG, DLQ_MESSAGES, KAFKA_CONSUMED, KAFKA_PUBLISHED, PROCESSING_SECONDS, PUBLISH_SECONDS
from .settings import ServiceSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


#: The headers a dead letter is given when it fails: its origin, why, when, how often (`x-failures`).
DEAD_LETTER_HEADERS = ("x-origin", "x-error", "x-failed", "x-failures")


def _failures(record: ConsumerRecord[bytes, bytes]) -> int:
    """How often this message had failed before (0 unless a replayed dead letter failed again)."""
    for key, value in record.headers or ():
        if key == "x-failures" and value.isdigit():
            return int(value)
    return 0


class BrokerUnavailable(Exception):
    """The broker did not take the messages in time; the caller must not claim they were accepted."""


class PermanentError(Exception):
    """Processing this message can never succeed; it goes to the dead-letter topic."""


def is_transient(exc: BaseException) -> bool:
    """Return True for failures of infrastructure (broker, database) rather than of the message."""
    return isinstance(exc, KafkaError | BrokerUnavailable | asyncio.TimeoutError | OSError) or db.is_unavailable(exc)


def backoff(attempt: int, *, base: float = 0.2, cap: float = 15.0) -> float:
    """Exponential backoff with full jitter."""
    return float(random.uniform(0, min(cap, base * 2**attempt)))


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """The security options every producer and consumer gets: nothing for PLAINTEXT (the embedded broker),
    TLS and SASL for a cluster such as Strimzi's."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism or "SCRAM-SHA-512",
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password is not None else None,
        )
    return options


class Publisher:
    """Publishes events with `acks=all`; `publish_many` returns only when the broker acknowledged every one."""

    def __init__(self, settings: ServiceSettings, *, timeout: float = 5.0) -> None:
        self._settings = settings
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect to the broker; raises BrokerUnavailable if it cannot be reached now."""
        async with self._lock:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                client_id=self._settings.kafka_client_id,
                acks="all",
                enable_idempotence=self._settings.kafka_enable_idempotence,
                linger_ms=2,
                request_timeout_ms=int(self._timeout * 1000),
                retry_backoff_ms=100,
                **client_options(self._settings),
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise BrokerUnavailable(str(exc)) from exc
            self._producer = producer

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def ready(self) -> bool:
        """Return True when the broker answers a metadata request."""
        try:
            await self.start()
            assert self._producer is not None
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=2.0)
        except (BrokerUnavailable, KafkaError, TimeoutError):
            return False
        return True

    async def publish(self, topic: str, event: Event, *, key: bytes | None = None) -> None:
        await self.publish_many([(topic, event, key)])

    async def publish_many(self, items: Sequence[tuple[str, Event, bytes | None]]) -> None:
        """Send every event and wait for the broker's acknowledgement of all of them."""
        await self.send_raw([(topic, key, event.model_dump_json().encode(), ()) for topic, event, key in items])

    async def send_raw(self, items: Sequence[tuple[str, bytes | None, bytes, Iterable[tuple[str, bytes]]]]) -> None:
        """Send already-encoded records (topic, key, value, headers) and wait for all acknowledgements."""
        if not items:
            return
        try:
            await self.start()
            assert self._producer is not None
            producer = self._producer
            started = time.perf_counter()

            async def _send_all() -> None:
                futures = [
                    await producer.send(topic, value, key=key, headers=list(headers))
                    for topic, key, value, headers in items
                ]
                await asyncio.gather(*futures)

            await asyncio.wait_for(_send_all(), timeout=self._timeout)
            PUBLISH_SECONDS.observe(time.perf_counter() - started)
        except (KafkaError, TimeoutError, BrokerUnavailable) as exc:
            for topic, *_ in items:
                KAFKA_PUBLISHED.labels(topic, "error").inc()
            raise BrokerUnavailable(f"broker did not acknowledge {len(items)} message(s): {exc!r}") from exc
        for topic, *_ in items:
            KAFKA_PUBLISHED.labels(topic, "ok").inc()


async def _close(consumer: AIOKafkaConsumer, *, within: float = 5.0) -> None:
    """Stop a consumer, giving up after `within` seconds: leaving the group waits on a broker that may be gone."""
    try:
        await asyncio.wait_for(consumer.stop(), timeout=within)
    except (KafkaError, TimeoutError) as exc:
        log.warning("consumer not stopped cleanly; the broker will expire it", extra={"error": repr(exc)})


Handler = Callable[[Any, ConsumerRecord[bytes, bytes]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route(Generic[E]):
    """What a consumer does with one topic: parse into `model`, then call `handler`.

    With `batch`, the records of one partition that one poll returned are handed over together, in order, so the
    handler can read and write them in a few round trips. It must be idempotent like `handler` (a batch is
    retried whole after a transient failure); after any other failure the loop falls back to `handler`, record by
    record, so a poison message is retried and dead-lettered alone."""

    model: type[E]
    handler: Callable[[E, ConsumerRecord[bytes, bytes]], Awaitable[None]]
    batch: Callable[[list[E]], Awaitable[None]] | None = None


class ConsumerLoop:
    """Consumes topics with manual commits: offset+1 is committed only after the message was processed.

    Failures of infrastructure (database or broker away) are waited out: the message is retried, never skipped.
    A message that cannot be parsed, or whose processing keeps failing, goes to the dead-letter topic with its
    origin in the headers, and the loop moves on, so one poison message never blocks the partition.

    With `gather_seconds`, a poll that did not bring a full batch is followed by the next one only that long after
    it began: for records whose handling costs per batch more than per record, and may wait that long.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        group_id: str,
        routes: dict[str, Route[Any]],
        publisher: Publisher,
        max_attempts: int = 3,
        max_records: int = 200,
        gather_seconds: float = 0.0,
    ) -> None:
        self._settings = settings
        self._group_id = group_id
        self._routes = routes
        self._publisher = publisher
        self._max_attempts = max_attempts
        self._max_records = max_records
        self._gather = gather_seconds
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        #: The partitions whose lag this process reports (`_record_lag`).
        self._lagging: set[TopicPartition] = set()
        self.running = False
        for topic in routes:
            # Shown from 0: a series born at 1 has no increase for Prometheus, and the first dead letter after a
            # restart would raise no alert.
            DLQ_MESSAGES.labels(topic)

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit, and return."""
        self._stopping.set()

    def share(self, topic: str) -> float:
        """The part of `topic`'s partitions this process holds now, 0 to 1 (1 before it knows): a limit of the
        whole group, divided among its members as the broker divides the work."""
        consumer = self._consumer
        total = consumer.partitions_for_topic(topic) if consumer is not None else None
        if consumer is None or not total:
            return 1.0
        held = sum(1 for tp in consumer.assignment() if tp.topic == topic)
        return held / len(total)

    async def _connect(self) -> AIOKafkaConsumer:
        attempt = 0
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                *self._routes,
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                client_id=self._settings.kafka_client_id,
                group_id=self._group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_poll_interval_ms=600_000,
                session_timeout_ms=self._settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=self._settings.kafka_session_timeout_ms // 3,
                **client_options(self._settings),
            )
            try:
                # Raced against stop(): joining the group waits for the broker, and a service being stopped must not
                # wait with it (a notifier whose broker went away while it joined did not stop in over a minute).
                if not await self._unless_stopping(consumer.start()):
                    await _close(consumer)
                    break
                return consumer
            except KafkaError as exc:
                await _close(consumer)
                delay = backoff(attempt, cap=5.0)
                attempt += 1
                log.warning(
                    "broker not reachable for consumer; retrying",
                    extra={"error": repr(exc), "retry_in_s": round(delay, 2)},
                )
                await self._sleep(delay)
        raise asyncio.CancelledError

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _unless_stopping(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` until it ends (True; its error raised) or `stop()` is called first (False; it is cancelled)."""
        job = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({job, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            stopping.cancel()
        if job.done():
            job.result()
            return True
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, KafkaError):
            await job
        return False

    async def run(self) -> None:
        """Consume until `stop()` is called."""
        try:
            consumer = self._consumer = await self._connect()
        except asyncio.CancelledError:
            return
        self.running = True
        log.info("consumer started", extra={"group": self._group_id, "topics": ",".join(self._routes)})
        try:
            loop = asyncio.get_running_loop()
            while not self._stopping.is_set():
                polled = loop.time()
                batches = await consumer.getmany(timeout_ms=300, max_records=self._max_records)
                for tp, records in batches.items():
                    done = await self._process_partition(records)
                    if done is not None:
                        await self._commit(consumer, tp, done.offset + 1)
                    if self._stopping.is_set():
                        break
                self._record_lag(consumer)
                if self._gather and sum(len(r) for r in batches.values()) < self._max_records:
                    # Not a full poll: let more records gather (the consumer fetches them meanwhile), so that the next
                    # batch writes once what would otherwise be written in several small ones.
                    await self._sleep(polled + self._gather - loop.time())
        finally:
            self.running = False
            await _close(consumer)
            log.info("consumer stopped", extra={"group": self._group_id})

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        attempt = 0
        while True:
            try:
                await consumer.commit({tp: offset})
                return
            except KafkaError as exc:
                # A lost commit only means redelivery, which the handlers absorb; keep trying a while.
                if attempt >= 5 or self._stopping.is_set():
                    log.warning("commit failed; messages will be redelivered", extra={"error": repr(exc)})
                    return
                await self._sleep(backoff(attempt))
                attempt += 1

    def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        held = consumer.assignment()
        for tp in held:
            high = consumer.highwater(tp)
            done = self._positions.get(tp)
            if high is not None and done is not None:
                CONSUMER_LAG.labels(self._group_id, tp.topic, str(tp.partition)).set(max(0, high - done))
                self._lagging.add(tp)
        # A partition the broker gave to another member is that member's to report: this one's last figure would
        # stay, and keep the lag alert firing until this pod restarts.
        for tp in self._lagging - held:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._group_id, tp.topic, str(tp.partition))
            # Its position too: should the partition come back, another member will have moved it on meanwhile.
            self._positions.pop(tp, None)
        self._lagging &= held

    async def _process_partition(
        self, records: list[ConsumerRecord[bytes, bytes]]
    ) -> ConsumerRecord[bytes, bytes] | None:
        """Process records in order; return the last one fully dealt with (processed or dead-lettered)."""
        if len(records) > 1 and self._routes[records[0].topic].batch is not None:
            handled, done = await self._process_batch(records)
            if handled:
                return done
        last: ConsumerRecord[bytes, bytes] | None = None
        for record in records:
            if self._stopping.is_set():
                break
            if not await self._process(record):
                break
            last = record
            self._positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        return last

    async def _process_batch(
        self, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[bool, ConsumerRecord[bytes, bytes] | None]:
        """One partition's records through the route's batch handler. Returns (True, the last record dealt with, or
        None if stopping before that), or (False, None) when the batch must go one by one: a record that does not
        parse, or a failure that is not the infrastructure's."""
        route = self._routes[records[0].topic]
        assert route.batch is not None
        try:
            events: list[Any] = [route.model.model_validate_json(record.value or b"") for record in records]
        except ValidationError:
            return False, None  # one by one: the invalid record is dead-lettered alone, the others processed
        attempt = 0
        started = time.perf_counter()
        while True:
            try:
                await route.batch(events)
                break
            except Exception as exc:
                if not is_transient(exc):
                    log.warning(
                        "batch failed; processing its records one by one",
                        extra={"topic": records[0].topic, "count": len(records), "error": type(exc).__name__},
                    )
                    return False, None
                attempt += 1
                KAFKA_CONSUMED.labels(records[0].topic, "retry").inc(len(events))
                delay = backoff(attempt)
                log.warning(
                    "dependency unavailable; will retry the batch",
                    extra={"topic": records[0].topic, "error": type(exc).__name__, "retry_in_s": round(delay, 2)},
                )
                if self._stopping.is_set():
                    return True, None
                await self._sleep(delay)
        KAFKA_CONSUMED.labels(records[0].topic, "ok").inc(len(events))
        PROCESSING_SECONDS.labels(records[0].topic).observe((time.perf_counter() - started) / len(events))
        last = records[-1]
        self._positions[TopicPartition(last.topic, last.partition)] = last.offset + 1
        return True, last

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Return True once the record is done with; False if the loop is stopping before that."""
        route = self._routes[record.topic]
        try:
            event = route.model.model_validate_json(record.value or b"")
        except ValidationError as exc:
            await self._dead_letter(record, "invalid_event", exc.errors(include_input=False).__repr__())
            return True
        attempt = 0
        started = time.perf_counter()
        while True:
            try:
                await route.handler(event, record)
                KAFKA_CONSUMED.labels(record.topic, "ok").inc()
                PROCESSING_SECONDS.labels(record.topic).observe(time.perf_counter() - started)
                return True
            except PermanentError as exc:
                await self._dead_letter(record, "permanent_error", str(exc))
                return True
            except Exception as exc:
                attempt += 1
                if is_transient(exc):
                    KAFKA_CONSUMED.labels(record.topic, "retry").inc()
                    delay = backoff(attempt)
                    log.warning(
                        "dependency unavailable; will retry the message",
                        extra={
                            "topic": record.topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "error": type(exc).__name__,
                            "retry_in_s": round(delay, 2),
                        },
                    )
                elif attempt >= self._max_attempts:
                    log.exception(
                        "message failed %d times; dead-lettered",
                        attempt,
                        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
                    )
                    await self._dead_letter(record, "handler_error", f"{type(exc).__name__}: {exc}")
                    return True
                else:
                    delay = backoff(attempt, cap=2.0)
                if self._stopping.is_set():
                    return False
                await self._sleep(delay)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str, detail: str) -> None:
        headers = [
            ("x-origin-topic", record.topic.encode()),
            ("x-origin-partition", str(record.partition).encode()),
            ("x-origin-offset", str(record.offset).encode()),
            ("x-origin-group", self._group_id.encode()),
            ("x-error-reason", reason.encode()),
            ("x-error-detail", detail[:1000].encode()),
            ("x-failed-at", utcnow().isoformat().encode()),
            ("x-failures", str(_failures(record) + 1).encode()),
            # A letter replayed and failing again says why this time; how often it failed is counted above.
            *[(k, v) for k, v in (record.headers or ()) if not k.startswith(DEAD_LETTER_HEADERS)],
        ]
        attempt = 0
        while True:
            try:
                await self._publisher.send_raw([(topics.DEAD_LETTER, record.key, record.value or b"", headers)])
                break
            except BrokerUnavailable:
                # The record cannot be committed before it is safely in the dead-letter topic.
                attempt += 1
                await asyncio.sleep(backoff(attempt))
        DLQ_MESSAGES.labels(record.topic).inc()
        KAFKA_CONSUMED.labels(record.topic, "dead_lettered").inc()
        log.error(
            "message dead-lettered",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "reason": reason},
        )
