"""Working-day deadlines: weekends, national holidays and cuti bersama do not count."""

from __future__ import annotations

from datetime import datetime

from suara_ticketing import deadlines
from suara_ticketing.deadlines import WIB

from .conftest import App, web_message


def test_a_deadline_skips_the_weekend_and_independence_day() -> None:
    # Friday 14 August 2026; Monday the 17th is Proklamasi Kemerdekaan, a national holiday.
    friday = datetime(2026, 8, 14, 10, 0, tzinfo=WIB)
    assert deadlines.due_at(friday, 1) == datetime(2026, 8, 18, 23, 59, 59, tzinfo=WIB)
    assert deadlines.due_at(friday, 5) == datetime(2026, 8, 24, 23, 59, 59, tzinfo=WIB)


def test_cuti_bersama_of_idulfitri_is_not_a_working_day() -> None:
    # 18-24 March 2026 are Nyepi and Idulfitri holidays and cuti bersama; the 25th is the first working day.
    before = datetime(2026, 3, 17, 15, 0, tzinfo=WIB)
    assert deadlines.due_at(before, 1).date().isoformat() == "2026-03-25"


def test_years_without_official_holidays_count_weekends_only() -> None:
    friday = datetime(2030, 1, 4, 9, 0, tzinfo=WIB)
    assert deadlines.due_at(friday, 1).date().isoformat() == "2030-01-07"


def test_working_hours_count_office_hours_on_working_days_only() -> None:
    office = (datetime(2026, 1, 1, 8).time(), datetime(2026, 1, 1, 16).time())
    # Friday 15:00 to Tuesday 10:00 across Independence Day: 1 h Friday + 2 h Tuesday.
    start = datetime(2026, 8, 14, 15, 0, tzinfo=WIB)
    end = datetime(2026, 8, 18, 10, 0, tzinfo=WIB)
    assert deadlines.working_hours(start, end, office=office) == 3.0


async def test_a_ticket_shows_its_due_date_by_priority_across_the_holiday(app: App) -> None:
    app.service.now = lambda: datetime(2026, 8, 14, 10, 0, tzinfo=WIB)
    await app.service.handle_inbound(web_message("Sampah menumpuk di TPS dekat pasar Lasem, baunya menyengat"))
    await app.service.handle_inbound(web_message("Banjir setinggi lutut di Desa Tasikagung, butuh perahu"))
    items = {t["category"]: t for t in (await app.client.get("/api/v1/tickets")).json()["items"]}
    waste, flood = items["lingkungan"], items["bencana"]
    assert waste["priority"] == "normal" and waste["department"] == "DLH"
    assert datetime.fromisoformat(waste["due_at"]).astimezone(WIB).date().isoformat() == "2026-08-24"
    assert flood["priority"] == "urgent" and flood["department"] == "BPBD"
    assert datetime.fromisoformat(flood["due_at"]).astimezone(WIB).date().isoformat() == "2026-08-18"
