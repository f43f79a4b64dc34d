"""Peaks against capacity, right-sizing, slot utilization and idle assets."""

from __future__ import annotations

from assets.reports import idle_assets, peak_concurrency, right_sizing, slot_utilization
from tests.reports.conftest import SUNDAY, History


def test_peak_is_the_most_devices_out_at_one_instant(history: History) -> None:
    report = peak_concurrency(history.period)

    # BANK-A: from 01:10Z to 01:30Z on Sunday c1, c3 and c4 are all out → 3 of 6 doors.
    # Saturday's c1 and c2 never overlap (1); Monday c6 and c7 overlap 07:00Z-07:30Z (2).
    # BANK-B: c5 alone → 1 of 4. Assets: A has 4 (SC-1001 is out but was taken there), B 2.
    assert report.rows == [
        {
            "site": "Test DC",
            "bank": "BANK-A",
            "slots": 6,
            "assets": 4,
            "peak": 3,
            "peak_day": SUNDAY,
            "peak_share_of_slots": 50.0,
        },
        {
            "site": "Test DC",
            "bank": "BANK-B",
            "slots": 4,
            "assets": 2,
            "peak": 1,
            "peak_day": SUNDAY,
            "peak_share_of_slots": 25.0,
        },
    ]


def test_peak_for_one_asset_type_counts_only_that_type(history: History) -> None:
    world = history.world
    rows = peak_concurrency(history.filter(asset_type=world.tablet)).rows
    # Only c4 is a tablet; BANK-B never lent one (and has none).
    assert [(r["bank"], r["peak"], r["peak_day"], r["assets"]) for r in rows] == [
        ("BANK-A", 1, SUNDAY, 1),
        ("BANK-B", 0, None, 0),
    ]


def test_right_sizing_is_the_p95_daily_peak_with_the_margin_rounded_up(history: History) -> None:
    report = right_sizing(history.period, margin=0.2)

    # Daily peaks Sat, Sun, Mon. A scanners 1 2 2 (c1 was still out at Sunday midnight when c3
    # left); p95 by nearest rank = the ceil(0.95 * 3) = 3rd smallest = 2; 2 * 1.2 = 2.4 → 3, and A
    # has 3 scanners. A tablets 0 1 0 → 1 → 1.2 → 2 against 1 tablet. B scanners 0 1 0 → 2, has 2.
    assert [
        (
            r["bank"],
            r["asset_type"],
            r["max_peak"],
            r["p95_peak"],
            r["needed"],
            r["current"],
            r["change"],
        )
        for r in report.rows
    ] == [
        ("BANK-A", "Scanner", 2, 2, 3, 3, 0),
        ("BANK-A", "Tablet", 1, 1, 2, 1, 1),
        ("BANK-B", "Scanner", 1, 1, 2, 2, 0),
    ]
    assert report.summary == {"margin": 0.2, "percentile": 95}


def test_right_sizing_without_margin_can_free_assets(history: History) -> None:
    rows = right_sizing(history.filter(bank=history.world.bank), margin=0).rows
    assert [(r["asset_type"], r["needed"], r["change"]) for r in rows] == [
        ("Scanner", 2, -1),
        ("Tablet", 1, 0),
    ]


def test_slot_utilization_divides_by_the_real_length_of_the_period(history: History) -> None:
    report = slot_utilization(history.period)
    rows = {(r["bank"], r["slot"]): r for r in report.rows}

    # The period is 71 h (Sunday has 23). A door 1: c1 3 h (30 min Saturday, 2.5 h Sunday) and
    # c6 3 h so far (09:00 → 12:00) = 6 h → 6 / 71 = 8.5 % (8.3 % if Sunday had 24 hours).
    assert rows[("BANK-A", 1)] == {
        "bank": "BANK-A",
        "slot": 1,
        "takes": 2,
        "hours_out": 6.0,
        "utilization": 8.5,
    }
    # A door 2: c2 2 h + c7 1.5 h = 3.5 h → 4.9 %; door 3: c3 2 h → 2.8 %; door 4: c4 0.5 h → 0.7 %;
    # B door 1: c5 8 h → 11.3 %. Every other door: nothing.
    assert [(k, r["hours_out"], r["utilization"]) for k, r in rows.items() if r["takes"]] == [
        (("BANK-A", 1), 6.0, 8.5),
        (("BANK-A", 2), 3.5, 4.9),
        (("BANK-A", 3), 2.0, 2.8),
        (("BANK-A", 4), 0.5, 0.7),
        (("BANK-B", 1), 8.0, 11.3),
    ]
    assert len(rows) == 10
    assert rows[("BANK-B", 4)]["utilization"] == 0.0


def test_slot_time_is_split_at_local_midnight(history: History) -> None:
    # Saturday alone (24 h): c1 contributes its first 30 minutes to door 1, c2 its 2 hours to door 2.
    saturday = history.filter(end=history.period.start, bank=history.world.bank)
    rows = {r["slot"]: (r["hours_out"], r["utilization"]) for r in slot_utilization(saturday).rows}
    assert rows[1] == (0.5, 2.1)
    assert rows[2] == (2.0, 8.3)


def test_idle_assets_are_the_rarely_taken_ones_never_taken_first(history: History) -> None:
    # Takes in the period: SC-1001 2, SC-1002 2, SC-1003 1, TB-2001 1, SC-2001 1, SC-2002 0.
    never = idle_assets(history.period, max_takes=0)
    assert [(r["asset_tag"], r["bank"], r["takes"], r["last_taken"]) for r in never.rows] == [
        ("SC-2002", "BANK-B", 0, None)
    ]
    rarely = idle_assets(history.period, max_takes=1)
    # Ordered by takes, then the longest since last taken: SC-1003 and TB-2001 on Sunday, SC-2001
    # on Sunday too → by tag.
    assert [r["asset_tag"] for r in rarely.rows] == ["SC-2002", "SC-1003", "SC-2001", "TB-2001"]
    assert rarely.summary == {"max_takes": 1, "never_taken": 1}
    only_b = idle_assets(history.filter(bank=history.world.other_bank), max_takes=1)
    assert [r["asset_tag"] for r in only_b.rows] == ["SC-2002", "SC-2001"]
