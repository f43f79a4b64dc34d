"""Takes per day and the hour-of-week heat map count in the site's local days and hours."""

from __future__ import annotations

from assets.reports import hour_of_week, takes_per_day
from tests.reports.conftest import MONDAY, SATURDAY, SUNDAY, History


def test_takes_fall_on_the_local_day_they_happened(history: History) -> None:
    report = takes_per_day(history.period)

    # Sat: c1 (23:30 CET, already Sunday-minus-half-an-hour in UTC terms it is still Sat) and c2;
    # Sun: c3, c4, c5; Mon: c6, c7. Lapsed and cancelled reservations were never taken.
    assert report.rows == [
        {"day": SATURDAY, "takes": 2},
        {"day": SUNDAY, "takes": 3},
        {"day": MONDAY, "takes": 2},
    ]
    assert report.summary == {"total_takes": 7, "mean_per_day": 2.3, "busiest_day": SUNDAY}


def test_takes_per_day_narrows_to_bank_and_asset_type(history: History) -> None:
    world = history.world
    # BANK-A: Sat c1 c2; Sun c3 c4 (c5 was at BANK-B); Mon c6 c7.
    assert [r["takes"] for r in takes_per_day(history.filter(bank=world.bank)).rows] == [2, 2, 2]
    # Tablets: only c4 on Sunday; the quiet days still appear, with 0.
    assert [r["takes"] for r in takes_per_day(history.filter(asset_type=world.tablet)).rows] == [
        0,
        1,
        0,
    ]
    # The site holds both banks.
    assert takes_per_day(history.filter(site=world.site)).summary["total_takes"] == 7


def test_days_outside_the_period_are_not_counted(history: History) -> None:
    only_sunday = takes_per_day(history.filter(start=SUNDAY, end=SUNDAY))
    assert only_sunday.rows == [{"day": SUNDAY, "takes": 3}]


def test_heat_map_uses_local_hours_on_both_sides_of_the_clock_change(history: History) -> None:
    report = hour_of_week(history.period)
    cells = {
        (row["weekday"], int(key[1:])): n
        for row in report.rows
        for key, n in row.items()
        if key != "weekday" and n
    }

    # c2 Sat 10, c1 Sat 23 (CET); c3 Sun 01 (CET, before the jump); c4 Sun 03 (CEST, just after:
    # 01:10Z read at the winter offset would be a 02:00 that never existed); c5 Sun 10 (CEST);
    # c7 Mon 08 and c6 Mon 09 (CEST).
    assert cells == {
        ("Sat", 10): 1,
        ("Sat", 23): 1,
        ("Sun", 1): 1,
        ("Sun", 3): 1,
        ("Sun", 10): 1,
        ("Mon", 8): 1,
        ("Mon", 9): 1,
    }
    assert [row["weekday"] for row in report.rows] == [
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
        "Sat",
        "Sun",
    ]
    # Ties go to the latest weekday and hour: Sun 10:00.
    assert report.summary == {"busiest_hour": "Sun 10:00", "busiest_hour_takes": 1}
