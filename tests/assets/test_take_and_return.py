"""Take and return, driven through the same sensor readings a bank sends."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from access.actions import Intent, present_badge
from assets.actions import lapse_expired_reservations
from assets.models import Asset, Checkout, Reservation
from devices.actions import record_slot_state, set_out_of_service
from devices.models import Slot
from lockerhub.audit import SYSTEM
from lockerhub.models import AuditEvent
from tests.conftest import BERLIN, WEDNESDAY_10AM, World, stock
from tests.flows import give_back, take

NOW = WEDNESDAY_10AM


def test_take_completes_when_the_door_closes_on_an_empty_slot(world: World) -> None:
    result, checkout = take(world.bank, world.ana_badge.uid, NOW)

    slot = Slot.objects.get(pk=result.reservation.slot_id)
    assert checkout.status == Checkout.Status.ACTIVE
    assert checkout.opened_at == NOW + timedelta(seconds=2)
    assert checkout.taken_at == NOW + timedelta(seconds=3)
    assert checkout.asset.status == Asset.Status.CHECKED_OUT
    assert slot.asset is None
    assert (slot.door_state, slot.lock_state) == (Slot.DoorState.CLOSED, Slot.LockState.LOCKED)
    assert Reservation.objects.get().status == Reservation.Status.DONE


def test_due_time_is_shift_end_plus_grace(world: World) -> None:
    _, checkout = take(world.bank, world.ana_badge.uid, NOW)
    # Day shift ends 14:00 Berlin; return grace is 30 minutes.
    assert checkout.due_at == datetime(2026, 3, 11, 14, 30, tzinfo=BERLIN)


def test_due_time_is_capped_by_the_types_maximum_loan(world: World) -> None:
    world.scanner.max_loan_minutes = 60
    world.scanner.save()
    _, checkout = take(world.bank, world.ana_badge.uid, NOW)
    assert checkout.due_at == NOW + timedelta(seconds=3) + timedelta(minutes=60)


def test_door_closed_with_the_asset_still_inside_cancels(world: World) -> None:
    result = present_badge(world.bank, world.ana_badge.uid, now=NOW)
    number = result.reservation.slot.number
    record_slot_state(world.bank, number, at=NOW + timedelta(seconds=2), door_open=True)
    record_slot_state(world.bank, number, at=NOW + timedelta(seconds=4), door_open=False)

    checkout = Checkout.objects.get()
    assert checkout.status == Checkout.Status.CANCELLED
    assert checkout.asset.status == Asset.Status.AVAILABLE
    assert Slot.objects.get(pk=result.reservation.slot_id).asset_id == checkout.asset_id
    assert Reservation.objects.get().status == Reservation.Status.CANCELLED


def test_a_door_never_opened_lapses_and_frees_the_slot(world: World) -> None:
    result = present_badge(world.bank, world.ana_badge.uid, now=NOW)

    assert lapse_expired_reservations(NOW + timedelta(seconds=10)) == 0
    assert lapse_expired_reservations(NOW + timedelta(seconds=31)) == 1
    assert lapse_expired_reservations(NOW + timedelta(seconds=32)) == 0  # safe to run twice

    assert Checkout.objects.get().status == Checkout.Status.LAPSED
    assert Reservation.objects.get().status == Reservation.Status.LAPSED
    again = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(minutes=1))
    assert again.reservation.slot_id == result.reservation.slot_id


def test_second_tap_while_the_door_waits_shows_the_same_door(world: World) -> None:
    first = present_badge(world.bank, world.ana_badge.uid, now=NOW)
    second = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(seconds=3))
    assert second.reservation.pk == first.reservation.pk
    assert Reservation.objects.count() == 1


def test_charged_first_then_longest_charged(world: World) -> None:
    # Slot 1 charging; slot 2 charged since 07:00; slot 3 charged since 06:30 → slot 3 wins.
    Slot.objects.filter(bank=world.bank, number=1).update(charge_state=Slot.ChargeState.CHARGING)
    Slot.objects.filter(bank=world.bank, number=2).update(
        charge_state_since=datetime(2026, 3, 11, 7, 0, tzinfo=BERLIN)
    )
    Slot.objects.filter(bank=world.bank, number=3).update(
        charge_state_since=datetime(2026, 3, 11, 6, 30, tzinfo=BERLIN)
    )

    assert present_badge(world.bank, world.ana_badge.uid, now=NOW).reservation.slot.number == 3


def test_only_charging_devices_left_are_still_given_out(world: World) -> None:
    Slot.objects.filter(bank=world.bank).update(charge_state=Slot.ChargeState.CHARGING)
    assert present_badge(world.bank, world.ana_badge.uid, now=NOW).granted


@pytest.mark.parametrize(
    "spoil",
    [
        {"out_of_service": True},
        {"charge_state": Slot.ChargeState.FAULT},
        {"door_state": Slot.DoorState.OPEN},
        {"present": False},
    ],
    ids=["out_of_service", "faulted", "door_open", "ir_empty"],
)
def test_never_a_slot_out_of_service_faulted_open_or_seen_empty(world: World, spoil: dict) -> None:
    Slot.objects.filter(bank=world.bank, number__in=[1, 2]).update(**spoil)
    assert present_badge(world.bank, world.ana_badge.uid, now=NOW).reservation.slot.number == 3


def test_never_a_reserved_slot(world: World, supervisor) -> None:
    for n in (1, 2):
        set_out_of_service(world.slot(n), out_of_service=True, reason="test", actor=SYSTEM)
    from tests.conftest import make_employee

    first = present_badge(world.bank, world.ana_badge.uid, now=NOW)
    assert first.reservation.slot.number == 3
    bob = make_employee("E1002", "Bob", world.department)
    bob.shift_assignments.create(
        shift=world.day_shift, valid_from=world.ana.shift_assignments.get().valid_from
    )
    from access.actions import issue_badge

    issue_badge(bob, "0B0B0B0B", actor=SYSTEM, valid_from=NOW - timedelta(days=1))
    assert present_badge(world.bank, "0B0B0B0B", now=NOW).reason == "no_asset_available"


def test_return_prefers_the_slot_it_came_from(world: World) -> None:
    result, _ = take(world.bank, world.ana_badge.uid, NOW)
    origin = result.reservation.slot_id

    back, checkout = give_back(world.bank, world.ana_badge.uid, NOW + timedelta(hours=3))

    assert back.reservation.slot_id == origin
    assert checkout.status == Checkout.Status.RETURNED
    assert checkout.slot_back_id == origin
    assert checkout.condition == Checkout.Condition.OK
    assert checkout.asset.status == Asset.Status.AVAILABLE
    assert Slot.objects.get(pk=origin).asset_id == checkout.asset_id


def test_return_at_another_bank_uses_an_empty_charging_slot(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    back, checkout = give_back(world.other_bank, world.ana_badge.uid, NOW + timedelta(hours=3))
    assert back.reservation.slot.bank_id == world.other_bank.pk
    assert back.reservation.slot.number == 3  # 1 and 2 hold scanners
    assert checkout.status == Checkout.Status.RETURNED


def test_damage_reported_at_return_takes_the_asset_out_of_circulation(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    _, checkout = give_back(
        world.bank,
        world.ana_badge.uid,
        NOW + timedelta(hours=1),
        damaged=True,
        damage_note="cracked screen",
    )

    assert checkout.condition == Checkout.Condition.DAMAGED
    assert checkout.condition_note == "cracked screen"
    assert checkout.asset.status == Asset.Status.MAINTENANCE
    # It stays in the slot, but nobody is given it.
    Slot.objects.filter(bank=world.bank).exclude(asset=checkout.asset).update(out_of_service=True)
    assert (
        present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=2)).reason
        == "no_asset_available"
    )


def test_return_door_closed_without_the_device_keeps_the_checkout_open(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    back = present_badge(
        world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=1), intent=Intent.RETURN
    )
    number = back.reservation.slot.number
    record_slot_state(world.bank, number, at=NOW + timedelta(hours=1, seconds=2), door_open=True)
    record_slot_state(world.bank, number, at=NOW + timedelta(hours=1, seconds=6), door_open=False)

    assert Checkout.objects.get().status == Checkout.Status.ACTIVE
    assert Reservation.objects.get(pk=back.reservation.pk).status == Reservation.Status.CANCELLED


def test_database_allows_one_open_checkout_per_asset(world: World) -> None:
    present_badge(world.bank, world.ana_badge.uid, now=NOW)
    checkout = Checkout.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Checkout.objects.create(
            asset=checkout.asset, employee=checkout.employee, slot_out=checkout.slot_out
        )


def test_database_allows_one_active_reservation_per_slot(world: World) -> None:
    present_badge(world.bank, world.ana_badge.uid, now=NOW)
    reservation = Reservation.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Reservation.objects.create(
            slot=reservation.slot, purpose=Reservation.Purpose.REMOTE, expires_at=NOW
        )


def test_database_allows_one_asset_per_slot(world: World) -> None:
    asset = world.slot(1).asset
    with pytest.raises(IntegrityError), transaction.atomic():
        stock(world.slot(5), asset)


def test_side_effects_wait_for_commit(world: World, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        present_badge(world.bank, world.ana_badge.uid, now=NOW)
    # The slot change and the tap result go out only after the transaction commits.
    assert len(callbacks) >= 2


def test_a_second_tap_while_the_return_door_waits_shows_the_same_door(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    first = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=1))
    second = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=1, seconds=4))
    assert second.reservation.pk == first.reservation.pk
    assert Reservation.objects.filter(purpose=Reservation.Purpose.RETURN).count() == 1


def test_a_return_waiting_at_another_bank_moves_to_the_bank_tapped_last(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    there = present_badge(world.other_bank, world.ana_badge.uid, now=NOW + timedelta(hours=1))

    here = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=1, minutes=1))

    assert here.granted
    assert here.reservation.slot.bank_id == world.bank.pk
    ended = Reservation.objects.get(pk=there.reservation.pk)
    assert ended.status == Reservation.Status.CANCELLED
    assert Slot.objects.get(pk=ended.slot_id).lock_state == Slot.LockState.LOCKED
    # One loan, one return under way.
    assert list(Reservation.objects.active().filter(purpose="return")) == [here.reservation]
    assert AuditEvent.objects.get(action="return.cancelled").data["reason"] == "returned elsewhere"


def test_a_return_whose_door_is_open_at_another_bank_is_not_started_again(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    there = present_badge(world.other_bank, world.ana_badge.uid, now=NOW + timedelta(hours=1))
    record_slot_state(
        world.other_bank, there.reservation.slot.number, at=NOW + timedelta(hours=1), door_open=True
    )

    here = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=1, minutes=1))

    assert (here.granted, here.reason) == (False, "no_return_slot")
    assert Reservation.objects.get(pk=there.reservation.pk).status == Reservation.Status.OPENED


def test_a_device_gone_from_circulation_since_the_decision_is_passed_over(
    world: World, monkeypatch
) -> None:
    from access import actions

    decide = actions.server_decision

    def retired_meanwhile(bank, uid, **kwargs):
        # What a retirement that did not wait for the slot's lock would leave behind.
        decided = decide(bank, uid, **kwargs)
        Asset.objects.filter(asset_tag=decided[0].asset).update(status=Asset.Status.RETIRED)
        return decided

    monkeypatch.setattr(actions, "server_decision", retired_meanwhile)

    result = present_badge(world.bank, world.ana_badge.uid, now=NOW)

    assert result.granted
    assert result.reservation.slot.number == 2
    assert Asset.objects.get(asset_tag="SC-1001").status == Asset.Status.RETIRED
    assert Checkout.objects.get().asset.asset_tag == "SC-1002"
