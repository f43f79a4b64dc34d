"""Door and bank faults: raised while the fault lasts, resolved by the sweep once it clears."""

from __future__ import annotations

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest

from devices.actions import (
    flag_doors_held_open,
    mark_stale_banks_offline,
    record_heartbeat,
    record_slot_state,
)
from devices.models import LockerBank, Slot
from lockerhub.alerts.rules import sweep_faults
from lockerhub.audit import SYSTEM
from lockerhub.models import Alert, AuditEvent
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


@pytest.fixture(autouse=True)
def frozen(time_machine) -> None:
    time_machine.move_to(NOW, tick=False)


def test_an_offline_bank_alerts_and_resolves_when_it_is_back(
    world: World, facility_manager
) -> None:
    LockerBank.objects.filter(pk=world.bank.pk).update(last_heartbeat_at=NOW - timedelta(minutes=1))
    mark_stale_banks_offline(NOW, after=timedelta(seconds=15))
    sweep_faults(NOW)
    alert = Alert.objects.get(rule="bank-offline")
    assert alert.bank == world.bank
    assert alert.deliveries.filter(recipient="fred.facilities@example.com").exists()

    back = NOW + timedelta(minutes=2)
    assert record_heartbeat(world.bank, back) is True
    # Resolved by the heartbeat itself, not left for the next sweep.
    alert.refresh_from_db()
    assert alert.resolved_at == back
    resolved = AuditEvent.objects.get(action="alert.resolved", subject_id=str(alert.pk))
    assert (resolved.actor, resolved.data) == (SYSTEM, {"reason": "back online"})
    assert sweep_faults(back + timedelta(seconds=5)).as_dict() == {
        "raised": 0,
        "escalated": 0,
        "resolved": 0,
    }


def test_a_heartbeat_resolves_only_its_own_banks_offline_alert(world: World) -> None:
    LockerBank.objects.update(last_heartbeat_at=NOW - timedelta(minutes=1))
    assert sorted(mark_stale_banks_offline(NOW, after=timedelta(seconds=15))) == [
        "BANK-A",
        "BANK-B",
    ]

    record_heartbeat(world.bank, NOW + timedelta(seconds=30))
    record_heartbeat(world.bank, NOW + timedelta(seconds=40))  # already online: nothing more

    assert list(Alert.objects.open().values_list("bank__code", flat=True)) == ["BANK-B"]
    assert AuditEvent.objects.filter(action="alert.resolved").count() == 1


def test_a_bank_the_sweep_finds_offline_is_raised_once(world: World) -> None:
    LockerBank.objects.filter(pk=world.bank.pk).update(
        is_online=False, last_heartbeat_at=NOW - timedelta(hours=1)
    )
    sweep_faults(NOW)
    sweep_faults(NOW + timedelta(minutes=1))
    assert Alert.objects.filter(rule="bank-offline").count() == 1


def test_a_charge_fault_alerts_and_resolves_when_charging_resumes(world: World) -> None:
    record_slot_state(world.bank, 2, at=NOW, charge_state=Slot.ChargeState.FAULT)
    # Raised at once, naming its slot (the charge-fault report counts faults by it).
    alert = Alert.objects.get(rule="charge-fault")
    assert (alert.kind, alert.bank, alert.slot) == (
        Alert.Kind.CHARGE_FAULT,
        world.bank,
        world.slot(2),
    )
    assert alert.subject == f"slot:{world.slot(2).pk}"
    assert sweep_faults(NOW + timedelta(seconds=30)).raised == 0

    record_slot_state(world.bank, 2, at=NOW + timedelta(minutes=5), charge_state="charging")
    assert sweep_faults(NOW + timedelta(minutes=6)).resolved == 1


def test_a_device_that_never_reaches_charged(world: World) -> None:
    Slot.objects.filter(pk=world.slot(3).pk).update(
        charge_state=Slot.ChargeState.CHARGING, charge_state_since=NOW - timedelta(minutes=239)
    )
    assert sweep_faults(NOW).raised == 0
    result = sweep_faults(NOW + timedelta(minutes=2))
    assert result.raised == 1
    alert = Alert.objects.get(rule="charge-stuck")
    assert (alert.kind, alert.slot) == (Alert.Kind.CHARGE_FAULT, world.slot(3))

    record_slot_state(world.bank, 3, at=NOW + timedelta(minutes=3), charge_state="charged")
    assert sweep_faults(NOW + timedelta(minutes=4)).resolved == 1


def test_sensors_that_disagree(world: World) -> None:
    # Door closed, the slot should hold SC-1001, but presence reads empty.
    Slot.objects.filter(pk=world.slot(1).pk).update(
        present=False, state_changed_at=NOW - timedelta(minutes=5)
    )
    sweep_faults(NOW)
    alert = Alert.objects.get(rule="sensor-mismatch")
    assert alert.kind == Alert.Kind.SENSOR_MISMATCH
    assert "SC-1001" in alert.title

    record_slot_state(world.bank, 1, at=NOW + timedelta(minutes=1), present=True)
    assert sweep_faults(NOW + timedelta(minutes=2)).resolved == 1


def test_a_door_just_closed_on_a_missing_asset_waits_for_the_grace(world: World) -> None:
    Slot.objects.filter(pk=world.slot(1).pk).update(present=False, state_changed_at=NOW)
    assert sweep_faults(NOW + timedelta(seconds=30)).raised == 0


def test_a_door_held_open_resolves_when_it_closes(world: World) -> None:
    record_slot_state(world.bank, 5, at=NOW, door_open=True)  # forced, and then left open
    flag_doors_held_open(NOW + timedelta(seconds=61))
    alert = Alert.objects.get(rule="door-held-open")

    assert sweep_faults(NOW + timedelta(seconds=70)).resolved == 0
    record_slot_state(world.bank, 5, at=NOW + timedelta(seconds=80), door_open=False)
    assert sweep_faults(NOW + timedelta(seconds=90)).resolved == 1
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    # The forced-door alert is an event, not a condition: a person resolves it.
    assert Alert.objects.open().filter(rule="door-forced").count() == 1


def test_a_fault_resolved_by_hand_while_it_lasts_is_not_raised_again_at_once(
    world: World, supervisor
) -> None:
    from lockerhub.actions import resolve_alert

    record_slot_state(world.bank, 2, at=NOW, charge_state=Slot.ChargeState.FAULT)
    resolve_alert(Alert.objects.get(rule="charge-fault"), user=supervisor, now=NOW)
    assert sweep_faults(NOW + timedelta(minutes=30)).raised == 0
    assert sweep_faults(NOW + timedelta(minutes=61)).raised == 1


def test_a_forced_door_alert_names_its_slot_and_is_keyed_on_utc(world: World) -> None:
    # The bank worker may report its local time: the same forced opening, replayed in another
    # zone, must not raise a second alert.
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    record_slot_state(world.bank, 5, at=berlin, door_open=True)
    alert = Alert.objects.get(rule="door-forced")
    assert alert.slot == world.slot(5)
    assert alert.dedup_key.endswith(f":{NOW.astimezone(UTC):%Y%m%d%H%M}")


def test_a_heartbeat_from_a_bank_already_online_is_one_statement(
    world: World, django_assert_num_queries
) -> None:
    # Every bank sends one every few seconds: the usual case must stay cheap.
    LockerBank.objects.filter(pk=world.bank.pk).update(
        is_online=True, last_heartbeat_at=NOW - timedelta(seconds=5)
    )
    records = AuditEvent.objects.count()

    with django_assert_num_queries(1):
        assert record_heartbeat(world.bank, NOW) is False

    bank = LockerBank.objects.get(pk=world.bank.pk)
    assert (bank.is_online, bank.last_heartbeat_at) == (True, NOW)
    assert AuditEvent.objects.count() == records
