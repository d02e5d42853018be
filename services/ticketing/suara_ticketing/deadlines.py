"""Working days and hours of the kabupaten's offices (WIB, lokal-id's national holidays and cuti bersama)."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from lokal import HOLIDAY_YEARS, add_working_days, count_working_days, is_working_day

log = logging.getLogger(__name__)

WIB = ZoneInfo("Asia/Jakarta")
#: A deadline falls at the end of its working day: the office has the whole day.
END_OF_DAY = time(23, 59, 59)


@lru_cache(maxsize=8)
def _warn_no_holidays(year: int) -> None:
    log.warning("no official holiday data for this year; counting weekends only", extra={"year": year})


def working_day(day: date) -> bool:
    """A day the government offices work: not a weekend, national holiday or cuti bersama.

    lokal-id carries the official decrees only for the years published so far; for any other year weekends alone
    are counted (and a warning logged once), rather than refusing to compute a deadline."""
    if day.year in HOLIDAY_YEARS:
        return is_working_day(day)
    _warn_no_holidays(day.year)
    return day.weekday() < 5


def add_days(start: date, days: int) -> date:
    """The date `days` working days after `start` (`start` itself never counts)."""
    if all(y in HOLIDAY_YEARS for y in range(start.year, start.year + 2)):
        return add_working_days(start, days)
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if working_day(current):
            left -= 1
    return current


def working_days_between(start: date, end: date) -> int:
    """Working days after `start` up to and including `end` (0 when `end` is not after `start`)."""
    if end <= start:
        return 0
    first = start + timedelta(days=1)
    if first.year in HOLIDAY_YEARS and end.year in HOLIDAY_YEARS:
        return count_working_days(first, end)
    return sum(1 for n in range((end - first).days + 1) if working_day(first + timedelta(days=n)))


def local_date(moment: datetime) -> date:
    return moment.astimezone(WIB).date()


def due_at(start: datetime, working_days: int) -> datetime:
    """The end (WIB) of the `working_days`-th working day after `start`."""
    return datetime.combine(add_days(local_date(start), working_days), END_OF_DAY, tzinfo=WIB)


def extend(deadline: datetime, working_days: int) -> datetime:
    """A deadline moved by `working_days` more working days."""
    return due_at(deadline, working_days)


def elapsed_working_days(since: datetime, now: datetime) -> int:
    """Whole working days that have ended between `since` and `now` (WIB calendar days)."""
    return working_days_between(local_date(since), local_date(now) - timedelta(days=1)) if now > since else 0


def working_hours(start: datetime, end: datetime, *, office: tuple[time, time]) -> float:
    """Hours between `start` and `end` that fall inside office hours on working days."""
    if end <= start:
        return 0.0
    opens, closes = office
    start, end = start.astimezone(WIB), end.astimezone(WIB)
    total = 0.0
    day = start.date()
    while day <= end.date():
        if working_day(day):
            window_start = max(start, datetime.combine(day, opens, tzinfo=WIB))
            window_end = min(end, datetime.combine(day, closes, tzinfo=WIB))
            if window_end > window_start:
                total += (window_end - window_start).total_seconds() / 3600
        day += timedelta(days=1)
    return total


def created_between(created_from: date | None, created_to: date | None) -> dict[str, datetime]:
    """A `created_at` condition for whole days in WIB, `created_to` included; empty when neither is given."""
    created: dict[str, datetime] = {}
    if created_from is not None:
        created["$gte"] = datetime.combine(created_from, time(0), tzinfo=WIB)
    if created_to is not None:
        created["$lt"] = datetime.combine(created_to + timedelta(days=1), time(0), tzinfo=WIB)
    return created
