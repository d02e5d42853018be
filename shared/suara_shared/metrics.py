"""Prometheus metrics shared by every service (one process, one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

KAFKA_PUBLISHED = Counter(
    "suara_kafka_published_messages_total",
    "Messages handed to the broker, by topic and outcome",
    ["topic", "outcome"],
)
KAFKA_CONSUMED = Counter(
    "suara_kafka_consumed_messages_total",
    "Messages consumed, by topic and outcome",
    ["topic", "outcome"],
)
DLQ_MESSAGES = Counter(
    "suara_dlq_messages_total",
    "Messages sent to the dead-letter topic, by origin topic",
    ["topic"],
)
CONSUMER_LAG = Gauge(
    "suara_kafka_consumer_lag_messages",
    "Messages behind the end of the partition",
    ["group", "topic", "partition"],
)
PROCESSING_SECONDS = Histogram(
    "suara_kafka_processing_seconds",
    "Time to process one consumed message",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# What a webhook's answer waits for most of the time: the broker acknowledging what the request published.
PUBLISH_SECONDS = Histogram(
    "suara_kafka_publish_seconds",
    "Time from handing records to the broker to its acknowledgement of all of them",
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_REQUESTS = Counter(
    "suara_http_requests_total",
    "HTTP requests answered, by route and status class",
    ["route", "status"],
)
DEPENDENCY_UP = Gauge(
    "suara_dependency_up",
    "1 when the dependency answered the last readiness check",
    ["dependency"],
)
# Shared by every ingest service (one metric, a `channel` label): defined here so it is registered only once.
WEBHOOK_REQUESTS = Counter(
    "suara_webhook_requests_total",
    "Webhook requests answered, by channel and outcome",
    ["channel", "outcome"],
)
WEBHOOK_EVENTS = Counter(
    "suara_webhook_events_total",
    "Events from webhooks acknowledged by the broker, by channel and kind",
    ["channel", "kind"],
)
# Set by the notifier's channel adapters: 0 once the platform refused the access token (Meta error 190), 1 when
# a call with it succeeded. Alerted on by the deployment; a bad token fails every reply on that channel.
CHANNEL_TOKEN_VALID = Gauge(
    "suara_channel_token_valid",
    "1 while the channel's access token works, 0 after the platform refused it as invalid or expired",
    ["channel"],
)
# End-to-end latency, measured from the event's own timestamp so that time spent queued in Kafka counts too.
END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)
INBOUND_TO_TICKET_SECONDS = Histogram(
    "suara_inbound_to_ticket_seconds",
    "Seconds from a citizen's message reaching Suara (received_at) to it being stored on its ticket, by channel",
    ["channel"],
    buckets=END_TO_END_BUCKETS,
)
