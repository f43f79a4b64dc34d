"""Offboarding: one step, effective at every bank at once."""

from __future__ import annotations

from datetime import date, timedelta

from access.actions import offboard_employee, present_badge
from access.models import Badge, Employee, Reason, ShiftAssignment
from assets.models import Checkout, Reservation
from lockerhub.audit import SYSTEM
from lockerhub.models import Alert
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import take

NOW = WEDNESDAY_10AM


def test_offboarding_revokes_badges_ends_shifts_and_lists_devices_out(world: World) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, NOW)
    spare = Badge.objects.create(
        employee=world.ana, uid="0A0A0A0A", valid_from=NOW - timedelta(days=1)
    )

    result = offboard_employee(world.ana, actor="user:1", now=NOW + timedelta(hours=1))

    world.ana.refresh_from_db()
    assert world.ana.status == Employee.Status.OFFBOARDED
    assert {b.pk for b in result.revoked_badges} == {world.ana_badge.pk, spare.pk}
    assert set(Badge.objects.filter(employee=world.ana).values_list("status", flat=True)) == {
        Badge.Status.REVOKED
    }
    assert ShiftAssignment.objects.get(employee=world.ana).valid_until == date(2026, 3, 10)
    assert [c.pk for c in result.devices_out] == [checkout.pk]
    assert result.alert.kind == Alert.Kind.RECOVERY
    assert result.alert.details == {"assets": [checkout.asset.asset_tag]}


def test_revoked_badge_is_denied_at_every_bank(world: World) -> None:
    offboard_employee(world.ana, actor=SYSTEM, now=NOW)
    for bank in (world.bank, world.other_bank):
        result = present_badge(bank, world.ana_badge.uid, now=NOW + timedelta(seconds=1))
        assert (result.granted, result.reason) == (False, Reason.EMPLOYEE_OFFBOARDED)


def test_offboarding_cancels_a_pending_take(world: World) -> None:
    present_badge(world.bank, world.ana_badge.uid, now=NOW)
    offboard_employee(world.ana, actor=SYSTEM, now=NOW + timedelta(seconds=5))
    assert Reservation.objects.get().status == Reservation.Status.CANCELLED
    assert Checkout.objects.get().status == Checkout.Status.CANCELLED


def test_offboarding_twice_changes_nothing_more(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    first = offboard_employee(world.ana, actor=SYSTEM, now=NOW)
    second = offboard_employee(world.ana, actor=SYSTEM, now=NOW + timedelta(minutes=1))
    assert second.already_offboarded
    assert second.revoked_badges == []
    assert second.alert.pk == first.alert.pk
    assert Alert.objects.count() == 1


def test_future_assignments_are_removed(world: World) -> None:
    ShiftAssignment.objects.create(
        employee=world.ana, shift=world.night_shift, valid_from=date(2026, 4, 1)
    )
    offboard_employee(world.ana, actor=SYSTEM, now=NOW)
    assert ShiftAssignment.objects.filter(employee=world.ana).count() == 1


def test_offboarding_relocks_the_slot_of_a_pending_take(world: World) -> None:
    from devices.models import Slot

    tap = present_badge(world.bank, world.ana_badge.uid, now=NOW)
    assert Slot.objects.get(pk=tap.reservation.slot_id).lock_state == Slot.LockState.UNLOCKED
    offboard_employee(world.ana, actor=SYSTEM, now=NOW + timedelta(seconds=5))
    assert Slot.objects.get(pk=tap.reservation.slot_id).lock_state == Slot.LockState.LOCKED
