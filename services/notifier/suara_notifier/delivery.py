"""Delivering one outbound reply: claim it in the send ledger, send it through its channel's adapter with retries,
record what the platform answered, publish its status.

Why no reply goes out twice, even when a notifier is killed (kill -9) and its replies come back to another:
the consumer commits a reply's offset only after this handler returned, and the handler returns only after the
platform's answer is in the send ledger (ledger.py, the database) and its status on the delivery topic. So a
crash after the platform's answer and before the commit leaves the answer recorded: the copy that comes back
finds it, publishes the recorded status again (the lost publish may have been the one that mattered) and sends
nothing. A copy whose claim a live notifier holds (a rebalance moved the partition in the middle of a send)
waits for that notifier's outcome. The database away means the send waits: nothing is sent without a claim.

What no ledger can close is a process dying with a platform call in flight (from the claim to the ledger write
after the answer: one platform round trip, only on an unclean stop; SIGTERM lets the call finish). The platform
may or may not have taken the message, and none of Suara's platforms can be asked (channels.md documents no
idempotency key and no lookup of what was sent). Such a claim, once its owner's lease has run out, is never
sent again: the reply ends failed with `outcome_unknown`, which the ticket shows, so a person decides. A second
copy cannot be taken back from a citizen's phone; a visible failure can be answered. A notifier that dies in a
pause between attempts, after a transient error, had nothing taken: its claim says `waiting`, and the next
notifier sends once the lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from .ledger import SendLedger, SendState
from .metrics import DELIVERY_FAILURES, REPLIES, REPLY_TO_PLATFORM_SECONDS, SEND_RETRIES, SEND_SECONDS

log = logging.getLogger(__name__)

CHANNEL_NOT_CONFIGURED = "channel_not_configured"
ADAPTER_ERROR = "adapter_error"
#: A notifier stopped with a platform call in flight: nobody knows whether the citizen got the message.
OUTCOME_UNKNOWN = "outcome_unknown"
#: How often a reply claimed by another live notifier is looked at again.
CLAIM_POLL_SECONDS = 0.5
#: Between attempts, the claim is held for the pause and this much more: time to renew it before the next call.
WAIT_MARGIN_SECONDS = 5.0


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


@dataclass(slots=True)
class Outcome:
    """What became of one reply, and how far this process got in telling the others about it."""

    status: DeliveryStatus
    #: In the send ledger: no process will send the reply again.
    recorded: bool
    #: Decided by this process (sent, failed, or found stopped mid-send), rather than read from the ledger.
    decided: bool
    #: On the delivery topic, acknowledged by the broker.
    published: bool = False


class RecentOutcomes:
    """A bounded memory of what became of the replies this process handled, by outbound id.

    It keeps a platform's answer that the ledger or the broker could not take yet: the consumer retries the
    handler, which then records and publishes it without sending again. And a copy of a reply this process
    finished costs no round trip to the database."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, Outcome] = OrderedDict()

    def get(self, outbound_id: str) -> Outcome | None:
        return self._entries.get(outbound_id)

    def remember(self, outbound_id: str, outcome: Outcome) -> Outcome:
        self._entries[outbound_id] = outcome
        self._entries.move_to_end(outbound_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return outcome

    def __len__(self) -> int:
        return len(self._entries)


class Notifier:
    """Sends each outbound reply once through its channel's adapter and publishes its DeliveryStatus."""

    def __init__(
        self,
        *,
        adapters: AdapterRegistry,
        publisher: Publisher,
        ledger: SendLedger,
        retry: RetryPolicy,
        lease_seconds: float = 60.0,
        dedup_capacity: int = 50_000,
        concurrency: int = 16,
    ) -> None:
        self._adapters = adapters
        self._concurrency = concurrency
        self._publisher = publisher
        self._ledger = ledger
        self._retry = retry
        self._lease = lease_seconds
        self._outcomes = RecentOutcomes(dedup_capacity)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Cut short any retry in progress: the reply is left uncommitted and comes back after a restart."""
        self._stopping.set()

    async def handle_batch(self, replies: list[OutboundReply]) -> None:
        """Consumer batch handler: the replies of one poll, each conversation in its order, conversations side by side
        (at most `concurrency` at once): a platform call takes long, and one citizen's reply need not wait for
        another's. Returns once every reply is handled; the first failure is raised after all have finished, so
        the batch is retried whole (the ledger and the outcomes remembered make handled replies no-ops)."""
        conversations: dict[tuple[str, str], list[OutboundReply]] = {}
        for reply in replies:
            conversations.setdefault((reply.channel, reply.conversation_key), []).append(reply)
        gate = asyncio.Semaphore(self._concurrency)

        async def in_order(queue: list[OutboundReply]) -> None:
            async with gate:
                for reply in queue:
                    await self.handle(reply)

        results = await asyncio.gather(*(in_order(q) for q in conversations.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def handle(self, reply: OutboundReply, _record: object = None) -> None:
        """Consumer handler: returns only once the reply's outcome is in the ledger and its status on the delivery
        topic, so it can commit. A database or broker error propagates and the consumer tries again later."""
        if reply.action is OutboundAction.MARK_READ:
            await self.mark_read(reply=reply)
            return
        outcome = self._outcomes.get(reply.outbound_id)
        if outcome is not None and outcome.published:
            REPLIES.labels(reply.channel, "duplicate").inc()
            log.info("reply already handled; duplicate dropped", extra=_ids(reply))
            return
        if outcome is None:  # else answered before the ledger or the broker failed us: record, publish, never send
            outcome = self._outcomes.remember(reply.outbound_id, await self._outcome(reply))
        status = outcome.status
        if not outcome.recorded:
            if not await self._ledger.finish(status):
                # Our lease ran out mid-send and another notifier settled the reply (as outcome_unknown): the ticket
                # shows that; our status, published below, cannot move it back.
                log.error("the reply's claim ran out during its send", extra=_ids(reply))
            outcome.recorded = True
        await self._publisher.publish(topics.DELIVERY, status, key=status.partition_key)
        outcome.published = True
        if outcome.decided:
            self._count(reply, status)
        else:
            REPLIES.labels(reply.channel, "duplicate").inc()
            log.info("reply handled before; its recorded status published again", extra=_ids(reply))

    async def _outcome(self, reply: OutboundReply) -> Outcome:
        """Send the reply if no process has, else what the ledger says became of it (waiting for a live sender)."""
        waiting = False
        while True:
            claim = await self._ledger.claim(reply, lease=self._lease)
            if claim is not None:
                if claim.done:
                    assert claim.status is not None
                    return Outcome(claim.status, recorded=True, decided=False)
                theirs = claim.owner != self._ledger.owner
                if theirs and claim.lease_left() > 0:
                    # Another notifier holds it (a rebalance moved the partition in the middle of a send).
                    if not waiting:
                        log.info("another notifier is sending this reply; waiting for its outcome", extra=_ids(reply))
                        waiting = True
                    await self._pause(min(claim.lease_left(), CLAIM_POLL_SECONDS))
                    continue
                if theirs and claim.state is SendState.SENDING:
                    # Its notifier died with a call in flight: the platform may have taken the message or not.
                    unknown = _failed(reply, _outcome_unknown())
                    if await self._ledger.settle(claim, unknown):
                        log.warning("a notifier stopped while sending this reply; not sent again", extra=_ids(reply))
                        return Outcome(unknown, recorded=True, decided=True)
                    continue
                # Waiting between attempts when its notifier stopped, or ours from an earlier try of this handler
                # that ended before the platform answered (an answer would be in RecentOutcomes): nothing was taken.
                if not await self._ledger.take_over(claim, lease=self._lease):
                    continue
                log.info("sending a reply claimed before and never taken", extra=_ids(reply))
            status = await self.deliver(reply=reply)
            if status is not None:
                if status.status is not DeliveryState.FAILED:
                    REPLY_TO_PLATFORM_SECONDS.labels(reply.channel).observe(_seconds_since(reply.created_at))
                return Outcome(status, recorded=False, decided=True)

    async def deliver(self, *, reply: OutboundReply) -> DeliveryStatus | None:
        """Send a reply this process has claimed through its channel's adapter and return what became of it; None
        when the claim was lost between attempts. Never raises for the platform's errors (they become a failed
        status), only for the ledger's and for shutdown."""
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

    async def _send_with_retries(self, adapter: ChannelAdapter, reply: OutboundReply) -> DeliveryStatus | None:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and not await self._ledger.hold(
                reply.outbound_id, state=SendState.SENDING, lease=self._lease
            ):
                log.warning("the reply's claim was taken over between attempts; not calling", extra=_ids(reply))
                return None
            call_started = time.perf_counter()
            try:
                result = await adapter.send(reply)
            except TransientSendError as exc:
                transient = exc
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
            else:
                log.info(
                    "reply handed to the platform",
                    extra={**_ids(reply), "status": str(result.status), "attempts": attempt},
                )
                return DeliveryStatus(
                    channel=reply.channel,
                    outbound_id=reply.outbound_id,
                    platform_message_id=result.platform_message_id,
                    status=result.status,
                    more_platform_message_ids=result.more_platform_message_ids,
                    template=result.template,
                )
            finally:
                SEND_SECONDS.labels(reply.channel).observe(time.perf_counter() - call_started)

            delay = self._retry.delay(attempt, hint=transient.retry_after)
            elapsed = time.monotonic() - started
            if attempt >= self._retry.max_attempts or elapsed + delay > self._retry.budget_seconds:
                log.warning(
                    "transient send errors outlasted the retries; reply failed",
                    extra={**_ids(reply), "error_code": transient.code, "attempts": attempt},
                )
                return _failed(
                    reply,
                    DeliveryError(
                        code=transient.code,
                        title=transient.title,
                        detail=f"gave up after {attempt} attempts: {transient.detail or 'transient error'}",
                    ),
                )
            SEND_RETRIES.labels(reply.channel, transient.code).inc()
            log.info(
                "transient send error; retrying",
                extra={**_ids(reply), "error_code": transient.code, "attempt": attempt, "retry_in_s": round(delay, 3)},
            )
            # Nothing was taken (unless part of a split reply was): if this notifier stops during the pause,
            # another may send the reply once the pause is over.
            state = SendState.SENDING if transient.partly_sent else SendState.WAITING
            if not await self._ledger.hold(reply.outbound_id, state=state, lease=delay + WAIT_MARGIN_SECONDS):
                return None
            try:
                await self._pause(delay)
            except ShuttingDown:
                if state is SendState.WAITING:  # the next notifier need not wait for the lease
                    with contextlib.suppress(Exception):
                        await self._ledger.hold(reply.outbound_id, state=state, lease=0)
                raise

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


def _outcome_unknown() -> DeliveryError:
    return DeliveryError(
        code=OUTCOME_UNKNOWN,
        title="Outcome unknown",
        detail=(
            "a notifier stopped while the platform was being called, so whether the citizen got this message is "
            "not known; it is not sent again, so they never get it twice"
        ),
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
