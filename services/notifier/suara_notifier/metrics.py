"""Prometheus metrics of the notifier: replies by outcome, failures by platform code, send latency."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REPLIES = Counter(
    "suara_notifier_replies_total",
    "Outbound replies handled, by channel and outcome (the delivery state reached, or duplicate)",
    ["channel", "outcome"],
)
DELIVERY_FAILURES = Counter(
    "suara_notifier_delivery_failures_total",
    "Outbound replies that ended failed, by channel and error code (the platform's, or Suara's own)",
    ["channel", "code"],
)
SEND_RETRIES = Counter(
    "suara_notifier_send_retries_total",
    "Sends retried after a transient platform error, by channel and error code",
    ["channel", "code"],
)
SEND_SECONDS = Histogram(
    "suara_notifier_send_duration_seconds",
    "Time of one call to a channel's platform, by channel",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REPLY_TO_PLATFORM_SECONDS = Histogram(
    "suara_reply_to_platform_seconds",
    "Seconds from a reply being created (created_at) to its platform accepting it, by channel",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
