"""What a connected bank is sent after each kind of change: a signed delta its decisions follow.

Each case makes one change through the real action and checks that the bank's next delta,
applied to the snapshot it holds, makes the core decide as the server now would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time, timedelta

import pytest

from access import core
from access.actions import (
    end_shift_assignment,
    issue_badge,
    offboard_employee,
    revoke_badge,
    update_access_rule,
    update_shift,
)
from access.models import ShiftAssignment
from devices.actions import set_out_of_service
from devices.bank_feed import BankFeed
from lockerhub import signing
from lockerhub.audit import SYSTEM
from tests.conftest import WEDNESDAY_10AM, World, make_employee
from tests.flows import take

pytestmark = pytest.mark.usefixtures("at_wednesday_10am")

NEW_UID = "04C0FFEE000001"


def _issue(world: World) -> None:
    bo = make_employee("E2002", "Bo", world.department, site=world.site)
    ShiftAssignment.objects.create(
        employee=bo, shift=world.day_shift, valid_from=WEDNESDAY_10AM.date()
    )
    issue_badge(bo, NEW_UID, actor=SYSTEM)


def _loan_elsewhere(world: World) -> None:
    take(world.other_bank, world.ana_badge.uid, WEDNESDAY_10AM - timedelta(minutes=5))


CHANGES: dict[str, tuple[Callable[[World], object], str, str]] = {
    # change, the UID tapped afterwards, what the bank then decides
    "badge issued": (_issue, NEW_UID, "granted_take"),
    "badge revoked": (
        lambda w: revoke_badge(w.ana_badge, actor=SYSTEM, reason="damaged"),
        "ana",
        "badge_revoked",
    ),
    "badge lost": (
        lambda w: revoke_badge(w.ana_badge, actor=SYSTEM, status="lost"),
        "ana",
        "badge_lost",
    ),
    "offboarded": (lambda w: offboard_employee(w.ana, actor=SYSTEM), "ana", "employee_offboarded"),
    "rule changed": (
        lambda w: update_access_rule(w.rule, actor=SYSTEM, is_active=False),
        "ana",
        "not_permitted",
    ),
    "shift changed": (
        lambda w: update_shift(w.day_shift, actor=SYSTEM, start=time(14), end=time(22)),
        "ana",
        "outside_shift",
    ),
    "assignment ended": (
        lambda w: end_shift_assignment(
            ShiftAssignment.objects.get(employee=w.ana),
            actor=SYSTEM,
            now=WEDNESDAY_10AM - timedelta(days=2),
        ),
        "ana",
        "outside_shift",
    ),
    "loan opened at another bank": (_loan_elsewhere, "ana", "granted_return"),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_change_reaches_the_bank_as_a_signed_delta(world: World, name: str) -> None:
    change, uid, expected = CHANGES[name]
    uid = world.ana_badge.uid if uid == "ana" else uid
    feed = BankFeed(world.bank)
    key = core.load_public_key(signing.public_key_text())
    held = core.Snapshot.from_data(
        core.open_signed(key, feed.whole(WEDNESDAY_10AM), bank=world.bank.code)
    )
    assert feed.updates(WEDNESDAY_10AM) == []  # nothing new yet

    change(world)
    (message,) = feed.updates(WEDNESDAY_10AM)

    assert message["type"] == "access_delta"
    assert len(message["data"]) <= 2048
    updated = held.with_delta(core.open_signed(key, message, bank=world.bank.code))
    assert updated.version > held.version
    states = [
        core.SlotState(n, charge_state="charged", present=info.asset is not None)
        for n, info in updated.slots.items()
    ]
    decision = core.decide(updated, states, WEDNESDAY_10AM.timestamp(), uid)
    assert decision.reason == expected


def test_a_slot_out_of_service_reaches_the_bank(world: World) -> None:
    feed = BankFeed(world.bank)
    key = core.load_public_key(signing.public_key_text())
    held = core.Snapshot.from_data(
        core.open_signed(key, feed.whole(WEDNESDAY_10AM), bank=world.bank.code)
    )
    set_out_of_service(world.slot(1), out_of_service=True, reason="door sticks", actor=SYSTEM)
    (message,) = feed.updates(WEDNESDAY_10AM)
    updated = held.with_delta(core.open_signed(key, message, bank=world.bank.code))
    assert updated.slots[1].out_of_service
    assert not held.slots[1].out_of_service


def test_a_change_at_another_bank_only_is_not_sent(world: World) -> None:
    feed = BankFeed(world.bank)
    feed.whole(WEDNESDAY_10AM)
    set_out_of_service(
        world.slot(1, world.other_bank), out_of_service=True, reason="door sticks", actor=SYSTEM
    )
    assert feed.updates(WEDNESDAY_10AM) == []
