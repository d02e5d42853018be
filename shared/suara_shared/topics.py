"""Every Kafka topic Suara uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass

INBOUND = "suara.inbound.v1"
OUTBOUND = "suara.outbound.v1"
DELIVERY = "suara.delivery.v1"
TICKET_EVENTS = "suara.ticket-events.v1"
DEAD_LETTER = "suara.dlq.v1"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int


_DAY_MS = 24 * 3600 * 1000

ALL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(INBOUND, 6, 7 * _DAY_MS),
    TopicSpec(OUTBOUND, 6, 7 * _DAY_MS),
    TopicSpec(DELIVERY, 6, 7 * _DAY_MS),
    TopicSpec(TICKET_EVENTS, 3, 30 * _DAY_MS),
    TopicSpec(DEAD_LETTER, 1, 90 * _DAY_MS),
)
