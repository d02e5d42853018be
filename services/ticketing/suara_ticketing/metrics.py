"""Prometheus metrics of ticketing (the deployment alerts on these names: keep them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DEADLINE_BREACHES = Counter(
    "suara_ticket_deadline_breaches_total",
    "Tickets whose working-day deadline passed before they were resolved, by department and priority",
    ["department", "priority"],
)
TICKETS_BY_STATUS = Gauge(
    "suara_tickets_by_status",
    "Tickets in each status (refreshed by the ticketing consumer's sweep)",
    ["status"],
)
TRIAGE_DEPARTMENT_LABEL = "triage"
MEDIA_PENDING = Gauge(
    "suara_media_pending_files",
    "Citizens' files noted and not kept yet (refreshed by the ticketing consumer's media keeper)",
)
MEDIA_PENDING_OLDEST = Gauge(
    "suara_media_pending_oldest_seconds",
    "How long the oldest citizen's file not kept yet has waited; 0 when none waits (WhatsApp deletes them at 30 days)",
)
