"""Checkout length, overdue rate and top users, measured in real elapsed time."""

from __future__ import annotations

from assets.reports import checkout_length, overdue_rate, top_users
from tests.reports.conftest import History


def test_loan_length_is_elapsed_time_even_across_the_clock_change(history: History) -> None:
    report = checkout_length(history.period)

    # Returned loans, minutes: c1 180 (23:30 CET → 03:30 CEST reads 4 h on the wall, is 3 h),
    # c2 120, c3 120 (01:15 CET → 04:15 CEST), c4 30, c5 480, c7 90. c6 is still out.
    # Scanners: 90 120 120 180 480 → median 120, mean 990 / 5 = 198.
    # Tablets: 30. All: 30 90 120 120 180 480 → median (120 + 120) / 2, mean 1020 / 6 = 170.
    assert report.rows == [
        {"asset_type": "Scanner", "returned": 5, "mean_minutes": 198.0, "median_minutes": 120.0},
        {"asset_type": "Tablet", "returned": 1, "mean_minutes": 30.0, "median_minutes": 30.0},
        {"asset_type": "All types", "returned": 6, "mean_minutes": 170.0, "median_minutes": 120.0},
    ]
    assert report.summary == {"mean_minutes": 170.0, "median_minutes": 120.0}


def test_median_of_an_even_count_is_the_mean_of_the_middle_two(history: History) -> None:
    # BANK-A scanners returned: c1 180, c2 120, c3 120, c7 90 → 90 120 120 180 → 120;
    # Saturday and Sunday only: c1 180, c2 120, c3 120 → 120; Monday only: c7 90.
    world = history.world
    scanners_a = history.filter(bank=world.bank, asset_type=world.scanner)
    assert checkout_length(scanners_a).rows[0]["median_minutes"] == 120.0
    monday = history.filter(start=history.period.end, asset_type=world.scanner)
    assert checkout_length(monday).rows == [
        {"asset_type": "Scanner", "returned": 1, "mean_minutes": 90.0, "median_minutes": 90.0}
    ]


def test_overdue_counts_late_returns_and_loans_still_out_past_due(history: History) -> None:
    report = overdue_rate(history.period)

    # c1 came back at 03:30 CEST, due 03:00 CEST; c5 at 18:00, due 14:30. c6 is out but due at
    # 14:30 and it is 12:00. A scanners: c1 c2 c3 c6 c7 → 1 of 5; A tablet c4 → 0 of 1;
    # B scanner c5 → 1 of 1. Overall 2 of 7 = 28.6 %.
    assert report.rows == [
        {"bank": "BANK-A", "asset_type": "Scanner", "takes": 5, "overdue": 1, "overdue_rate": 20.0},
        {"bank": "BANK-A", "asset_type": "Tablet", "takes": 1, "overdue": 0, "overdue_rate": 0.0},
        {
            "bank": "BANK-B",
            "asset_type": "Scanner",
            "takes": 1,
            "overdue": 1,
            "overdue_rate": 100.0,
        },
    ]
    assert report.summary == {"takes": 7, "overdue": 2, "overdue_rate": 28.6}


def test_a_loan_still_out_becomes_overdue_once_its_due_time_passes(
    history: History, time_machine
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from assets.rollups import refresh_report_rollups

    later = datetime(2026, 3, 30, 15, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # c6 due 14:30
    time_machine.move_to(later, tick=False)
    refresh_report_rollups(now=later)

    assert overdue_rate(history.period).summary == {"takes": 7, "overdue": 3, "overdue_rate": 42.9}


def test_top_users_rank_by_takes_then_employee_number(history: History) -> None:
    report = top_users(history.period)

    # Ana: c1 c5 c6, returned c1 180 + c5 480 min = 11 h, 2 overdue.
    # Ben: c2 c3 c7, 120 + 120 + 90 = 330 min = 5.5 h. Cai: c4, 30 min.
    assert report.rows == [
        {
            "employee_number": "E1001",
            "name": "Ana Test",
            "takes": 3,
            "loan_hours": 11.0,
            "overdue": 2,
        },
        {
            "employee_number": "E1002",
            "name": "Ben Test",
            "takes": 3,
            "loan_hours": 5.5,
            "overdue": 0,
        },
        {
            "employee_number": "E1003",
            "name": "Cai Test",
            "takes": 1,
            "loan_hours": 0.5,
            "overdue": 0,
        },
    ]
    assert [r["name"] for r in top_users(history.period, limit=1).rows] == ["Ana Test"]
    assert top_users(history.filter(asset_type=history.world.tablet)).rows[0]["name"] == "Cai Test"
