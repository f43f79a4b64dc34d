"""Denied taps by reason and charge faults per slot, on local days."""

from __future__ import annotations

from assets.reports import charge_faults, denied_taps
from lockerhub.models import Alert
from tests.reports.conftest import History, z


def test_denied_taps_are_counted_by_reason_on_local_days(history: History) -> None:
    report = denied_taps(history.period)

    # In: outside_shift Sat 23:50 CET at A and Mon 10:00 at B; badge_unknown Sat 00:30 CET at A
    # (still Friday in UTC). Out: badge_unknown Tue 00:30 CEST (still Monday in UTC).
    # Two granted taps; so 5 taps, 3 denied (60 %).
    assert report.rows == [
        {"reason": "outside_shift", "label": "Outside shift", "taps": 2, "share": 66.7},
        {"reason": "badge_unknown", "label": "Badge not recognised", "taps": 1, "share": 33.3},
    ]
    assert report.summary == {"taps": 5, "denied": 3, "denied_share": 60.0}


def test_denied_taps_narrow_to_a_bank(history: History) -> None:
    rows = denied_taps(history.filter(bank=history.world.other_bank)).rows
    assert rows == [
        {"reason": "outside_shift", "label": "Outside shift", "taps": 1, "share": 100.0}
    ]


def test_charge_faults_are_counted_per_door(history: History) -> None:
    report = charge_faults(history.period)

    # A door 3: Sunday 05:00 CEST (resolved) and Monday 11:00 (open) → 2; A door 1: Saturday
    # 00:15 CET (Friday in UTC) → 1. B door 2 on Tuesday 00:30 CEST is outside; the forced door
    # is another kind of alert.
    assert report.rows == [
        {"bank": "BANK-A", "slot": 3, "faults": 2},
        {"bank": "BANK-A", "slot": 1, "faults": 1},
    ]
    assert report.summary == {"faults": 3}
    assert charge_faults(history.filter(bank=history.world.other_bank)).rows == []


def test_charge_faults_name_the_slot_the_alert_is_about(history: History) -> None:
    world = history.world
    # A key that names no door at all, and one whose last part is not the door: the door
    # comes from the alert's slot.
    for key, door in (("charge-fault:7f3a", 5), ("charge-fault:BANK-A:6:x", 2)):
        Alert.objects.create(
            kind=Alert.Kind.CHARGE_FAULT,
            dedup_key=key,
            title="Charge fault",
            bank=world.bank,
            slot=world.slot(door),
            site=world.site,
            opened_at=z(2026, 3, 30, 8, 0),
        )

    rows = charge_faults(history.period).rows

    assert {"bank": "BANK-A", "slot": 5, "faults": 1} in rows
    assert {"bank": "BANK-A", "slot": 2, "faults": 1} in rows
    assert {row["slot"] for row in rows} == {1, 2, 3, 5}
