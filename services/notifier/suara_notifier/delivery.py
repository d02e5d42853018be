"""Delivering one outbound reply: dedupe, send through the channel's adapter with retries, publish the status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from suara_shared import topics
from suara_shared.events import DeliveryError, DeliveryState, DeliveryStatus, OutboundAction, OutboundReply, utcnow
from suara_shared.kafka import Publisher, backoff

from .adapters import AdapterRegistry, ChannelAdapter, PermanentSendError, SendError, TransientSendError
from .config import Settings
from .metrics import DELIVERY_FAILURES, REPLIES, REPLY_TO_PLATFORM_SECONDS, SEND_RETRIES, SEND_SECONDS

log = logging.getLogger(__name__)

CHANNEL_NOT_CONFIGURED = "channel_not_configured"
ADAPTER_ERROR = "adapter_error"


class ShuttingDown(Exception):
    """The service is stopping in the middle of a send's retries; the reply stays uncommitted for next time."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient platform errors are retried: exponential backoff with full jitter, bounded twice."""

    max_attempts: int = 6
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    budget_seconds: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.send_max_attempts,
            base_seconds=settings.send_retry_base_seconds,
            cap_seconds=settings.send_retry_cap_seconds,
            budget_seconds=settings.send_retry_budget_seconds,
        )

    def delay(self, attempt: int, *, hint: float | None = None) -> float:
        """Seconds to wait after the given failed attempt (1-based); a platform's own hint is honoured."""
        delay = backoff(attempt - 1, base=self.base_seconds, cap=self.cap_seconds)
        return max(delay, min(hint, self.budget_seconds)) if hint else delay


class RecentOutcomes:
    """A bounded memory of what became of the replies this process handled, by outbound id.

    A reply is remembered from the moment the platform answered, so a redelivered copy (the consumer
    retrying after a broker hiccup, or the same message published twice) is never sent again: its status is
    published if it was not yet, and otherwise the copy is dropped. This holds only within one process;
    crash-safe exactly-once (an outbox keyed by outbound_id in the database) is a later issue.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        #: outbound_id -> (status, whether the broker acknowledged it)
        self._entries: OrderedDict[str, tuple[DeliveryStatus, bool]] = OrderedDict()

    def get(self, outbound_id: str) -> tuple[DeliveryStatus, bool] | None:
        return self._entries.get(outbound_id)

    def remember(self, status: DeliveryStatus, *, published: bool) -> None:
        assert status.outbound_id is not None
        self._entries[status.outbound_id] = (status, published)
        self._entries.move_to_end(status.outbound_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Notifier:
    """Sends each outbound reply once through its channel's adapter and publishes its DeliveryStatus."""

    def __init__(
        self, *, adapters: AdapterRegistry, publisher: Publisher, retry: RetryPolicy, dedup_capacity: int = 50_000
    ) -> None:
        self._adapters = adapters
        self._publisher = publisher
        self._retry = retry
        self._outcomes = RecentOutcomes(dedup_capacity)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Cut short any retry in progress: the reply is left uncommitted and comes back after a restart."""
        self._stopping.set()

    async def handle(self, reply: OutboundReply, _record: object = None) -> None:
        """Consumer handler: returns only once the reply's status is on the delivery topic, so it can commit."""
        if reply.action is OutboundAction.MARK_READ:
            await self.mark_read(reply=reply)
            return
        known = self._outcomes.get(reply.outbound_id)
        if known is not None and known[1]:
            REPLIES.labels(reply.channel, "duplicate").inc()
            log.info("reply already handled; duplicate dropped", extra=_ids(reply))
            return
        if known is not None:
            status = known[0]  # sent before the broker failed us: publish, never send again
        else:
            status = await self.deliver(reply=reply)
            self._outcomes.remember(status, published=False)
            if status.status is not DeliveryState.FAILED:
                REPLY_TO_PLATFORM_SECONDS.labels(reply.channel).observe(_seconds_since(reply.created_at))
        # A broker failure here propagates: the consumer retries this handler, which then only republishes.
        await self._publisher.publish(topics.DELIVERY, status, key=status.partition_key)
        self._outcomes.remember(status, published=True)
        self._count(reply, status)

    async def deliver(self, *, reply: OutboundReply) -> DeliveryStatus:
        """Send the reply through its channel's adapter and return what became of it; never raises for the
        platform's errors (they become a failed status), only for shutdown."""
        adapter = self._adapters.get(reply.channel)
        if adapter is None:
            log.warning("no adapter for channel; reply failed", extra=_ids(reply))
            return _failed(
                reply,
                DeliveryError(
                    code=CHANNEL_NOT_CONFIGURED,
                    title="Channel not configured",
                    detail=f"the notifier has no outbound adapter for the {reply.channel} channel",
                ),
            )
        return await self._send_with_retries(adapter, reply)

    async def mark_read(self, *, reply: OutboundReply) -> None:
        """Best effort: a read receipt that cannot be given is logged and dropped, never retried for long (the
        next time an agent opens the ticket asks again) and never blocks the replies behind it."""
        adapter = self._adapters.get(reply.channel)
        if adapter is None:
            return
        for attempt in (1, 2):
            try:
                await adapter.mark_read(reply)
                REPLIES.labels(reply.channel, "marked_read").inc()
                return
            except TransientSendError as exc:
                if attempt == 2:
                    log.warning("read receipt not given", extra={**_ids(reply), "error_code": exc.code})
                    return
                await self._pause(self._retry.delay(attempt, hint=exc.retry_after))
            except SendError as exc:
                log.warning("read receipt refused", extra={**_ids(reply), "error_code": exc.code})
                return
            except Exception:
                log.exception("adapter raised an unexpected error marking a message read", extra=_ids(reply))
                return

    async def _send_with_retries(self, adapter: ChannelAdapter, reply: OutboundReply) -> DeliveryStatus:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            call_started = time.perf_counter()
            try:
                result = await adapter.send(reply)
            except TransientSendError as exc:
                delay = self._retry.delay(attempt, hint=exc.retry_after)
                elapsed = time.monotonic() - started
                if attempt >= self._retry.max_attempts or elapsed + delay > self._retry.budget_seconds:
                    log.warning(
                        "transient send errors outlasted the retries; reply failed",
                        extra={**_ids(reply), "error_code": exc.code, "attempts": attempt},
                    )
                    return _failed(
                        reply,
                        DeliveryError(
                            code=exc.code,
                            title=exc.title,
                            detail=f"gave up after {attempt} attempts: {exc.detail or 'transient error'}",
                        ),
                    )
                SEND_RETRIES.labels(reply.channel, exc.code).inc()
                log.info(
                    "transient send error; retrying",
                    extra={**_ids(reply), "error_code": exc.code, "attempt": attempt, "retry_in_s": round(delay, 3)},
                )
                await self._pause(delay)
                continue
            except PermanentSendError as exc:
                log.warning("platform refused the reply", extra={**_ids(reply), "error_code": exc.code})
                return _failed(reply, DeliveryError(code=exc.code, title=exc.title, detail=exc.detail))
            except Exception as exc:
                # Not retried and not dead-lettered: we cannot know whether the platform took the message,
                # and a failed status on the ticket is what lets a person look at it.
                log.exception("adapter raised an unexpected error; reply failed", extra=_ids(reply))
                return _failed(
                    reply, DeliveryError(code=ADAPTER_ERROR, title="Adapter error", detail=type(exc).__name__)
                )
            finally:
                SEND_SECONDS.labels(reply.channel).observe(time.perf_counter() - call_started)
            log.info(
                "reply handed to the platform", extra={**_ids(reply), "status": str(result.status), "attempts": attempt}
            )
            return DeliveryStatus(
                channel=reply.channel,
                outbound_id=reply.outbound_id,
                platform_message_id=result.platform_message_id,
                status=result.status,
                more_platform_message_ids=result.more_platform_message_ids,
                template=result.template,
            )

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise ShuttingDown("stopping during a send's retries")

    @staticmethod
    def _count(reply: OutboundReply, status: DeliveryStatus) -> None:
        REPLIES.labels(reply.channel, status.status).inc()
        if status.error is not None:
            DELIVERY_FAILURES.labels(reply.channel, status.error.code).inc()


def _failed(reply: OutboundReply, error: DeliveryError) -> DeliveryStatus:
    return DeliveryStatus(
        channel=reply.channel, outbound_id=reply.outbound_id, status=DeliveryState.FAILED, error=error
    )


def _ids(reply: OutboundReply) -> dict[str, str | None]:
    """What a log line may say about a reply: ids only, never the text or the recipient."""
    return {
        "outbound_id": reply.outbound_id,
        "channel": str(reply.channel),
        "ticket_reference": reply.ticket_reference,
        "purpose": str(reply.purpose),
        "action": str(reply.action),
    }


def _seconds_since(moment: datetime) -> float:
    """Seconds from `moment` to now; never negative, whatever the clocks of the machines involved say."""
    if moment.tzinfo is None:  # a producer that left out the offset meant UTC, like every Suara timestamp
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (utcnow() - moment).total_seconds())
