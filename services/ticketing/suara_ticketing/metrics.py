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
