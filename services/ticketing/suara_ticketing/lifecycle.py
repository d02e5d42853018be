"""The ticket lifecycle: which status changes are possible, and what closes or reopens a ticket.

new → open → pending → resolved → closed. An agent may resolve or close at any step before closing (a duplicate
or spam is closed straight away); a resolved ticket goes back to open when the problem is not solved; closed is
final: the citizen's next message opens a new ticket linked to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from .tickets.models import TicketStatus

S = TicketStatus

TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING, S.RESOLVED, S.CLOSED}),
    S.OPEN: frozenset({S.PENDING, S.RESOLVED, S.CLOSED}),
    S.PENDING: frozenset({S.OPEN, S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}
#: Statuses in which the agency still owes the citizen something: deadlines run, breaches count.
ACTIVE = frozenset({S.NEW, S.OPEN, S.PENDING})
DONE = frozenset({S.RESOLVED, S.CLOSED})


class InvalidTransition(Exception):
    """A status change the lifecycle does not allow."""

    def __init__(self, current: str, target: str) -> None:
        allowed = sorted(s.value for s in TRANSITIONS[S(current)])
        hint = f"from {current} a ticket can go to {', '.join(allowed)}" if allowed else f"{current} is final"
        super().__init__(f"a {current} ticket cannot become {target}; {hint}")
        self.current = current
        self.target = target


def check(current: str, target: str) -> None:
    """Raise InvalidTransition unless `current` may become `target` (staying put is always allowed)."""
    if current != target and S(target) not in TRANSITIONS[S(current)]:
        raise InvalidTransition(current, target)


@dataclass(frozen=True, slots=True)
class Policy:
    """The kabupaten's time rules, from the settings."""

    reopen_window_working_days: int = 5
    auto_close_working_days: int = 10
    survey_window_days: int = 14
    office_hours: tuple[time, time] = (time(8), time(16))
