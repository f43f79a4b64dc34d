"""The access decision: one row per reason code, each with the smallest change that causes it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from access.actions import Intent, issue_badge, offboard_employee, present_badge, revoke_badge
from access.models import REASON_MESSAGES, AccessEvent, AccessRule, Badge, Employee, Reason
from assets.models import Checkout, Reservation
from devices.models import Slot
from lockerhub.audit import SYSTEM
from tests.conftest import BERLIN, WEDNESDAY_10AM, World, make_employee
from tests.flows import take

NOW = WEDNESDAY_10AM


def _unknown(w: World) -> str:
    return "DEADBEEF"


def _revoked(w: World) -> str:
    revoke_badge(w.ana_badge, actor=SYSTEM, reason="test")
    return w.ana_badge.uid


def _lost(w: World) -> str:
    revoke_badge(w.ana_badge, actor=SYSTEM, status=Badge.Status.LOST)
    return w.ana_badge.uid


def _expired(w: World) -> str:
    Badge.objects.filter(pk=w.ana_badge.pk).update(valid_until=NOW - timedelta(minutes=1))
    return w.ana_badge.uid


def _not_yet_valid(w: World) -> str:
    Badge.objects.filter(pk=w.ana_badge.pk).update(valid_from=NOW + timedelta(days=1))
    return w.ana_badge.uid


def _suspended(w: World) -> str:
    Employee.objects.filter(pk=w.ana.pk).update(status=Employee.Status.SUSPENDED)
    return w.ana_badge.uid


def _offboarded(w: World) -> str:
    offboard_employee(w.ana, actor=SYSTEM, now=NOW - timedelta(hours=1))
    return w.ana_badge.uid


def _not_permitted(w: World) -> str:
    bob = make_employee("E2002", "Bob", None)
    issue_badge(bob, "0B0B0B0B", actor=SYSTEM, valid_from=NOW - timedelta(days=1))
    return "0B0B0B0B"


def _outside_shift(w: World) -> str:
    return w.ana_badge.uid


def _no_asset(w: World) -> str:
    Slot.objects.filter(bank=w.bank).update(out_of_service=True)
    return w.ana_badge.uid


def _pin_required(w: World) -> str:
    w.rule.asset_types.set([w.tablet])
    return w.ana_badge.uid


def _pin_incorrect(w: World) -> str:
    w.rule.asset_types.set([w.tablet])
    badge = Badge.objects.get(pk=w.ana_badge.pk)
    badge.set_pin("4321")
    badge.save()
    return w.ana_badge.uid


CASES = [
    # (reason, setup, when, kwargs)
    (Reason.BADGE_UNKNOWN, _unknown, NOW, {}),
    (Reason.BADGE_REVOKED, _revoked, NOW, {}),
    (Reason.BADGE_LOST, _lost, NOW, {}),
    (Reason.BADGE_EXPIRED, _expired, NOW, {}),
    (Reason.BADGE_NOT_YET_VALID, _not_yet_valid, NOW, {}),
    (Reason.EMPLOYEE_SUSPENDED, _suspended, NOW, {}),
    (Reason.EMPLOYEE_OFFBOARDED, _offboarded, NOW, {}),
    (Reason.NOT_PERMITTED, _not_permitted, NOW, {}),
    (Reason.OUTSIDE_SHIFT, _outside_shift, datetime(2026, 3, 11, 20, 0, tzinfo=BERLIN), {}),
    (Reason.NO_ASSET_AVAILABLE, _no_asset, NOW, {}),
    (Reason.PIN_REQUIRED, _pin_required, NOW, {}),
    (Reason.PIN_INCORRECT, _pin_incorrect, NOW, {"pin": "0000"}),
]


@pytest.mark.parametrize(
    ("reason", "setup", "when", "kwargs"), CASES, ids=[str(c[0]) for c in CASES]
)
def test_denial_reason(world: World, reason, setup, when, kwargs) -> None:
    uid = setup(world)
    result = present_badge(world.bank, uid, now=when, **kwargs)

    assert not result.granted
    assert result.reason == reason
    assert result.message  # plain words for the kiosk
    assert "{" not in result.message
    event = AccessEvent.objects.get()
    assert (event.granted, event.reason, event.uid) == (False, reason, uid)
    assert not Reservation.objects.exists()


def test_item_overdue_blocks_a_new_take(world: World) -> None:
    world.rule.max_concurrent = 2
    world.rule.save()
    _, checkout = take(world.bank, world.ana_badge.uid, NOW)
    later = checkout.due_at + timedelta(minutes=1)
    # Still inside a shift window the next morning, but the scanner from yesterday is overdue.
    next_morning = datetime(2026, 3, 12, 7, 0, tzinfo=BERLIN)
    assert next_morning > later

    result = present_badge(world.bank, world.ana_badge.uid, now=next_morning, intent=Intent.TAKE)

    assert (result.granted, result.reason) == (False, Reason.ITEM_OVERDUE)


def test_limit_reached_when_holding_the_maximum(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)

    result = present_badge(
        world.bank, world.ana_badge.uid, now=NOW + timedelta(minutes=5), intent=Intent.TAKE
    )

    assert (result.granted, result.reason) == (False, Reason.LIMIT_REACHED)


def test_no_return_slot_when_every_charging_slot_is_full(world: World) -> None:
    take(world.bank, world.ana_badge.uid, NOW)
    # BANK-B has two free slots; take them out of service so nothing is free.
    Slot.objects.filter(bank=world.other_bank, asset__isnull=True).update(out_of_service=True)

    result = present_badge(world.other_bank, world.ana_badge.uid, now=NOW + timedelta(hours=1))

    assert (result.granted, result.reason) == (False, Reason.NO_RETURN_SLOT)


def test_granted_take_and_granted_return(world: World) -> None:
    take_result = present_badge(world.bank, world.ana_badge.uid, now=NOW)
    assert (take_result.granted, take_result.reason) == (True, Reason.GRANTED_TAKE)
    assert take_result.message.startswith("Hi Ana — door ")
    assert take_result.command["action"] == "unlock"

    Checkout.objects.filter(pk=take_result.reservation.checkout_id).update(
        status=Checkout.Status.ACTIVE
    )
    Reservation.objects.filter(pk=take_result.reservation.pk).update(status=Reservation.Status.DONE)
    Slot.objects.filter(pk=take_result.reservation.slot_id).update(asset=None, present=False)
    return_result = present_badge(world.bank, world.ana_badge.uid, now=NOW + timedelta(hours=2))
    assert (return_result.granted, return_result.reason) == (True, Reason.GRANTED_RETURN)


def test_correct_pin_grants_a_pin_protected_type(world: World) -> None:
    _pin_incorrect(world)

    result = present_badge(world.bank, world.ana_badge.uid, now=NOW, pin="4321")

    assert result.granted
    assert result.reservation.checkout.asset.asset_tag == "TB-2001"


def test_every_reason_code_is_covered_and_has_a_message() -> None:
    covered = {c[0] for c in CASES} | {
        Reason.ITEM_OVERDUE,
        Reason.LIMIT_REACHED,
        Reason.NO_RETURN_SLOT,
        Reason.GRANTED_TAKE,
        Reason.GRANTED_RETURN,
        # Only a bank deciding from its own snapshot gives these (tests/access/test_decision_core.py).
        Reason.SNAPSHOT_STALE,
        Reason.BANK_NOT_READY,
    }
    assert covered == set(Reason)
    denials = set(Reason) - {Reason.GRANTED_TAKE, Reason.GRANTED_RETURN}
    assert denials <= set(REASON_MESSAGES)


def test_shift_grace_lets_an_early_arrival_in(world: World) -> None:
    before_shift = datetime(
        2026, 3, 11, 5, 50, tzinfo=BERLIN
    )  # day shift starts 06:00, grace 15 min
    assert present_badge(world.bank, world.ana_badge.uid, now=before_shift).granted


def test_too_early_even_with_grace_is_outside_shift(world: World) -> None:
    too_early = datetime(2026, 3, 11, 5, 40, tzinfo=BERLIN)
    assert (
        present_badge(world.bank, world.ana_badge.uid, now=too_early).reason == Reason.OUTSIDE_SHIFT
    )


def test_rule_without_shift_requirement_grants_any_time(world: World) -> None:
    AccessRule.objects.filter(pk=world.rule.pk).update(require_shift=False)
    assert present_badge(
        world.bank, world.ana_badge.uid, now=datetime(2026, 3, 15, 3, 0, tzinfo=BERLIN)
    ).granted
