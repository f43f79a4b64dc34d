"""Suspicious access: each rule raises its own alert, with its own reason, once per cause."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from access.actions import create_api_key, present_badge, revoke_badge
from access.models import Badge, Employee, Reason
from assets.models import Asset, Checkout, Reservation
from devices.actions import record_slot_state, remote_open
from lockerhub.alerts import tap_key
from lockerhub.alerts.rules import scan_access
from lockerhub.audit import SYSTEM
from lockerhub.models import Alert, AlertDelivery
from tests.alerts.conftest import out_checkout
from tests.api.conftest import key_client
from tests.conftest import BERLIN, WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


@pytest.fixture
def at_ten(time_machine) -> datetime:
    time_machine.move_to(NOW, tick=False)
    return NOW


def only_alert(rule: str) -> Alert:
    return Alert.objects.get(rule=rule)


def test_an_expired_badge_presented_raises_badge_misuse(world: World, at_ten) -> None:
    Badge.objects.filter(pk=world.ana_badge.pk).update(valid_until=NOW - timedelta(days=1))
    assert present_badge(world.bank, world.ana_badge.uid, now=NOW).reason == Reason.BADGE_EXPIRED

    scan_access(NOW + timedelta(seconds=30))

    alert = only_alert("badge-misuse")
    assert alert.kind == Alert.Kind.SUSPICIOUS_ACCESS
    assert alert.details["reason"] == Reason.BADGE_EXPIRED
    assert (alert.bank, alert.employee) == (world.bank, world.ana)
    assert "expired" in alert.title.lower()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_a_badge_misuse_key_is_bucketed_by_the_utc_hour_whatever_the_servers_zone(
    world: World, at_ten, settings, zone: str
) -> None:
    settings.TIME_ZONE = zone
    Badge.objects.filter(pk=world.ana_badge.pk).update(valid_until=NOW - timedelta(days=1))
    present_badge(world.bank, world.ana_badge.uid, now=NOW)

    scan_access(NOW + timedelta(seconds=30))

    # 10:00 in Berlin is 09:00 UTC: every server names the same hour.
    assert only_alert("badge-misuse").dedup_key == (
        f"badge-misuse:{world.ana_badge.uid}:BANK-A:2026031109"
    )


def test_a_tap_key_is_the_same_for_any_zone_the_time_comes_in() -> None:
    zones = [BERLIN, ZoneInfo("UTC"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]

    keys = {tap_key("badge-misuse", "04AA", "BANK-A", NOW.astimezone(zone)) for zone in zones}

    assert keys == {"badge-misuse:04AA:BANK-A:2026031109"}


def test_a_revoked_or_lost_badge_raises_at_the_tap_and_the_scan_adds_nothing(
    world: World, at_ten
) -> None:
    revoke_badge(world.ana_badge, actor=SYSTEM, status=Badge.Status.LOST, now=NOW)
    present_badge(world.bank, world.ana_badge.uid, now=NOW)
    present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(seconds=5))
    scan_access(NOW + timedelta(seconds=30))

    alert = only_alert("badge-misuse")
    assert alert.details["reason"] == Reason.BADGE_LOST
    # Raised at the tap with NOW in Berlin time: still keyed on the UTC hour, like the scan.
    assert alert.dedup_key == f"badge-misuse:{world.ana_badge.uid}:BANK-A:2026031109"


def test_a_tap_outside_the_shift_raises_an_info_alert_without_email(
    world: World, time_machine, supervisor
) -> None:
    evening = datetime(2026, 3, 11, 20, 0, tzinfo=BERLIN)
    time_machine.move_to(evening, tick=False)
    assert present_badge(world.bank, world.ana_badge.uid, now=evening).reason == (
        Reason.OUTSIDE_SHIFT
    )
    scan_access(evening + timedelta(seconds=10))
    scan_access(evening + timedelta(seconds=40))

    alert = only_alert("outside-shift")
    assert alert.severity == Alert.Severity.INFO
    assert "Ana" in alert.title
    assert not alert.deliveries.filter(channel=AlertDelivery.Channel.EMAIL).exists()


def test_a_burst_of_denied_taps_on_one_badge(world: World, at_ten, settings) -> None:
    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "DENIED_BURST_BADGE": 5}
    for i in range(4):
        present_badge(world.bank, "DEADBEEF", now=NOW + timedelta(seconds=10 * i))
    scan_access(NOW + timedelta(minutes=1))
    assert not Alert.objects.filter(rule="denied-burst-badge").exists()

    present_badge(world.bank, "DEADBEEF", now=NOW + timedelta(seconds=50))
    scan_access(NOW + timedelta(minutes=1))
    scan_access(NOW + timedelta(minutes=2))

    alert = only_alert("denied-burst-badge")
    assert alert.details == {"uid": "DEADBEEF", "taps": 5}
    assert alert.subject == "badge:DEADBEEF"


def test_a_burst_of_denied_taps_at_one_bank(world: World, at_ten, settings) -> None:
    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "DENIED_BURST_BANK": 3}
    for i, uid in enumerate(["0A0A0A0A", "0B0B0B0B", "0C0C0C0C"]):
        present_badge(world.bank, uid, now=NOW + timedelta(seconds=i))
    present_badge(world.other_bank, "0D0D0D0D", now=NOW)
    scan_access(NOW + timedelta(seconds=30))

    alert = only_alert("denied-burst-bank")
    assert alert.bank == world.bank
    assert alert.details == {"taps": 3}


def test_taps_spread_over_longer_than_the_window_are_no_burst(
    world: World, at_ten, settings
) -> None:
    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "DENIED_BURST_BADGE": 3}
    for i in range(3):
        present_badge(world.bank, "DEADBEEF", now=NOW + timedelta(minutes=4 * i))
    scan_access(NOW + timedelta(minutes=8, seconds=1))
    assert not Alert.objects.filter(rule="denied-burst-badge").exists()


def test_a_forced_door_raises_a_critical_alert_unless_the_rule_is_off(
    world: World, at_ten, settings
) -> None:
    record_slot_state(world.bank, 5, at=NOW, door_open=True)
    alert = only_alert("door-forced")
    assert (alert.kind, alert.severity) == (Alert.Kind.DOOR_FORCED, Alert.Severity.CRITICAL)

    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "DISABLED_RULES": ["door-forced"]}
    record_slot_state(world.bank, 6, at=NOW + timedelta(minutes=5), door_open=True)
    assert Alert.objects.filter(rule="door-forced").count() == 1


def test_a_remote_open_outside_site_hours(world: World, supervisor, time_machine) -> None:
    night = datetime(2026, 3, 11, 23, 30, tzinfo=BERLIN)
    time_machine.move_to(night, tick=False)
    remote_open(world.slot(5), user=supervisor, reason="cleaning crew", now=night)
    scan_access(night + timedelta(seconds=20))

    alert = only_alert("remote-open-after-hours")
    assert alert.slot == world.slot(5)
    assert "sam.supervisor" in alert.title
    assert alert.details["reason"] == "cleaning crew"


def test_a_remote_open_by_an_api_key_outside_site_hours_names_the_key(
    world: World, time_machine
) -> None:
    night = datetime(2026, 3, 11, 23, 30, tzinfo=BERLIN)
    time_machine.move_to(night, tick=False)
    key, secret = create_api_key("Facility desk", "supervisor", actor=SYSTEM)
    response = key_client(secret).post(
        f"/api/slots/{world.slot(5).pk}/remote-open/", {"reason": "cleaning crew"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert Reservation.objects.get().requested_by is None  # a key is no database user

    scan_access(night + timedelta(seconds=20))

    alert = only_alert("remote-open-after-hours")
    assert (
        alert.title
        == f"API key Facility desk (#{key.pk}) opened door 5 at BANK-A remotely at 23:30"
    )


def test_a_remote_open_during_site_hours_is_fine(world: World, supervisor, at_ten) -> None:
    remote_open(world.slot(5), user=supervisor, reason="stuck door", now=NOW)
    scan_access(NOW + timedelta(seconds=20))
    assert not Alert.objects.filter(rule="remote-open-after-hours").exists()


def _history(world: World, per_day: int, days: int = 28) -> None:
    asset = Asset.objects.create(asset_tag="SC-HIST", asset_type=world.scanner)
    Checkout.objects.bulk_create(
        Checkout(
            asset=asset,
            employee=world.ana,
            status=Checkout.Status.RETURNED,
            slot_out=world.slot(1),
            reserved_at=NOW - timedelta(days=day, hours=hour),
            returned_at=NOW - timedelta(days=day, hours=hour) + timedelta(minutes=30),
        )
        for day in range(1, days + 1)
        for hour in range(per_day)
    )


def _takes_today(world: World, count: int) -> None:
    for n in range(count):
        Checkout.objects.create(
            asset=Asset.objects.create(asset_tag=f"SC-T{n}", asset_type=world.scanner),
            employee=world.ana,
            status=Checkout.Status.RETURNED,
            slot_out=world.slot(1),
            reserved_at=NOW - timedelta(minutes=10 * (n + 1)),
        )


def test_unusual_volume_against_the_employees_own_history(world: World, at_ten) -> None:
    _history(world, per_day=1)
    _takes_today(world, 4)
    scan_access(NOW)

    alert = only_alert("unusual-volume")
    assert alert.employee == world.ana
    assert alert.details == {"takes_today": 4, "daily_average": 1.0, "days": 28}


def test_usual_volume_for_a_busy_employee_is_not_flagged(world: World, at_ten) -> None:
    _history(world, per_day=2)
    _takes_today(world, 5)
    scan_access(NOW)
    assert not Alert.objects.filter(rule="unusual-volume").exists()


def test_a_device_still_out_after_its_holder_was_offboarded(world: World, at_ten) -> None:
    checkout = out_checkout(world, due_at=NOW + timedelta(hours=4))
    # Offboarded some other way than the offboarding action (e.g. an edit): the sweep finds it.
    Employee.objects.filter(pk=world.ana.pk).update(status=Employee.Status.OFFBOARDED)
    scan_access(NOW)
    alert = only_alert("recovery")
    assert (alert.kind, alert.employee) == (Alert.Kind.RECOVERY, world.ana)

    Checkout.objects.filter(pk=checkout.pk).update(status=Checkout.Status.RETURNED)
    result = scan_access(NOW + timedelta(minutes=1))
    alert.refresh_from_db()
    assert result.resolved == 1
    assert alert.resolved_at is not None
