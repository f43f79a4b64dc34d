"""A bank's access snapshot, built from the database: what it holds, and what it costs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter

from django.db import connection
from django.test.utils import CaptureQueriesContext

from access import core
from access.actions import (
    assign_shift,
    create_access_rule,
    issue_badge,
    present_badge,
    revoke_badge,
)
from access.models import Badge, Employee, EmployeeGroup, Shift, ShiftAssignment
from access.snapshot_builder import build_snapshot, server_decision, slot_states
from assets.models import Asset, Checkout
from devices.actions import record_slot_state, remote_open
from lockerhub import signing
from lockerhub.audit import SYSTEM
from tests.conftest import BERLIN, WEDNESDAY_10AM, World, make_employee
from tests.flows import take

NOW = WEDNESDAY_10AM


def _utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_the_snapshot_holds_what_a_bank_decides_from(world: World) -> None:
    _, loan = take(world.other_bank, world.ana_badge.uid, NOW - timedelta(hours=1))

    snapshot = build_snapshot(world.bank, now=NOW, version=7)

    assert (snapshot.bank, snapshot.version) == ("BANK-A", 7)
    assert snapshot.issued_at == NOW.timestamp()
    assert snapshot.valid_until == (NOW + timedelta(hours=12)).timestamp()
    assert snapshot.uid_key == signing.uid_key("BANK-A")
    assert snapshot.return_grace == 30 * 60
    assert snapshot.types == {
        world.scanner.pk: core.AssetTypeInfo("Scanner", False, 12 * 3600),
        world.tablet.pk: core.AssetTypeInfo("Tablet", True, 10 * 3600),
    }
    # Badges are listed under a keyed hash of their UID, never in clear.
    assert world.ana_badge.uid not in core.canonical(snapshot.to_data())
    assert snapshot.badge_for(world.ana_badge.uid) == core.BadgeInfo(
        world.ana.pk, "active", datetime(2026, 1, 1, tzinfo=BERLIN).timestamp(), None, ""
    )
    ana = snapshot.holders[world.ana.pk]
    assert (ana.first_name, ana.status) == ("Ana", "active")
    assert ana.rules == (core.Rule(frozenset({world.scanner.pk}), True, 900, 900, 1),)
    # Day shift 06:00-14:00 Berlin (UTC+1 in March), weekdays, from a day before to a day
    # past the 24-hour horizon: Tuesday to Friday.
    assert ana.shifts == tuple(
        (_utc(2026, 3, d, 5), _utc(2026, 3, d, 13)) for d in (10, 11, 12, 13)
    )
    assert ana.loans == (
        core.Loan(
            loan.pk,
            world.scanner.pk,
            "active",
            loan.due_at.timestamp(),
            loan.reserved_at.timestamp(),
            "BANK-B",
            loan.slot_out.number,
            loan.asset.asset_tag,
        ),
    )
    assert snapshot.slots[1] == core.SlotInfo(
        1, True, False, "SC-1001", world.scanner.pk, "available"
    )
    assert snapshot.slots[6] == core.SlotInfo(6, True, False, None, None, None)
    assert set(snapshot.slots) == {1, 2, 3, 4, 5, 6}


def test_only_the_rules_that_hold_at_the_bank_and_for_the_person(world: World) -> None:
    forklift = EmployeeGroup.objects.create(name="Forklift")
    forklift.members.add(world.ana)
    for name, links in {
        "by group, here": {"groups": [forklift], "banks": [world.bank]},
        "by name, at the site": {"employees": [world.ana], "sites": [world.site]},
        "by group, elsewhere": {"groups": [forklift], "banks": [world.other_bank]},
        "for others": {"employees": [make_employee("E9", "Eve", None)]},
    }.items():
        create_access_rule(
            name=name, asset_types=[world.tablet], require_shift=False, actor=SYSTEM, **links
        )
    create_access_rule(
        name="paused", asset_types=[world.tablet], employees=[world.ana], is_active=False,
        actor=SYSTEM,
    )  # fmt: skip

    rules = build_snapshot(world.bank, now=NOW).holders[world.ana.pk].rules

    assert sorted((sorted(r.types), r.require_shift) for r in rules) == [
        ([world.scanner.pk], True),
        ([world.tablet.pk], False),
        ([world.tablet.pk], False),
    ]


def test_shift_windows_follow_the_site_time_zone_across_a_dst_change(world: World) -> None:
    # The night shift, 22:00-06:00 Berlin, assigned for Saturday 28 March only: its one
    # occurrence runs into Sunday, when the clocks go forward at 02:00.
    ShiftAssignment.objects.filter(employee=world.ana).delete()
    night = Shift.objects.create(
        site=world.site, name="Weekend night", days=0b1100000, start=time(22), end=time(6)
    )
    assign_shift(
        world.ana, night, valid_from=date(2026, 3, 28), valid_until=date(2026, 3, 28), actor=SYSTEM
    )

    shifts = (
        build_snapshot(world.bank, now=datetime(2026, 3, 28, 12, tzinfo=UTC))
        .holders[world.ana.pk]
        .shifts
    )

    # 21:00 UTC (CET) to 04:00 UTC (CEST): seven hours, not eight. Sunday's own occurrence
    # starts on a day the assignment no longer covers.
    assert shifts == ((_utc(2026, 3, 28, 21), _utc(2026, 3, 29, 4)),)


def test_a_uid_stands_for_its_active_badge_else_its_latest(world: World) -> None:
    bob = make_employee("E2", "Bob", world.department)
    revoke_badge(
        world.ana_badge, actor=SYSTEM, reason="card handed on", now=NOW - timedelta(days=2)
    )
    issue_badge(bob, world.ana_badge.uid, actor=SYSTEM, now=NOW - timedelta(days=1))
    old = issue_badge(world.ana, "0C0C0C0C", actor=SYSTEM, now=NOW - timedelta(days=3))
    revoke_badge(old, actor=SYSTEM, status=Badge.Status.LOST, now=NOW - timedelta(days=2))

    snapshot = build_snapshot(world.bank, now=NOW)

    assert snapshot.badge_for(world.ana_badge.uid).holder == bob.pk
    assert snapshot.badge_for("0C0C0C0C").status == "lost"
    only_ana = build_snapshot(world.bank, now=NOW, holder_ids=[world.ana.pk])
    assert list(only_ana.badges.values()) == [snapshot.badge_for("0C0C0C0C")]
    assert set(only_ana.holders) == {world.ana.pk}
    one = build_snapshot(world.bank, now=NOW, uids=["04:a1:b2:c3:d4:e5:f6"])
    assert list(one.badges.values()) == [snapshot.badge_for(world.ana_badge.uid)]
    assert set(one.holders) == {bob.pk}


def test_slot_states_say_what_the_doors_and_holds_are(world: World) -> None:
    record_slot_state(world.bank, 5, at=NOW, door_open=True)
    remote_open(world.slot(6), user=None, actor=SYSTEM, reason="stuck strap", now=NOW)
    tap = present_badge(world.bank, world.ana_badge.uid, now=NOW)

    states = {s.number: s for s in slot_states(world.bank)}

    assert states[1] == core.SlotState(
        1, False, True, "charged", datetime(2026, 3, 11, 6, tzinfo=BERLIN).timestamp(),
        ("take", tap.reservation.checkout_id), world.ana.pk,
    )  # fmt: skip
    assert states[5].door_open
    assert (states[6].held, states[6].held_by) == (("remote", 0), None)
    assert states[2].held is None


def test_the_server_decides_with_the_core(world: World) -> None:
    decision, snapshot, states = server_decision(world.bank, "04 a1 b2 c3 d4 e5 f6", now=NOW)

    assert (decision.granted, decision.slot, decision.asset) == (True, 1, "SC-1001")
    assert decision == core.decide(snapshot, states, NOW.timestamp(), world.ana_badge.uid)
    assert set(snapshot.holders) == {world.ana.pk}
    assert not Checkout.objects.exists()  # deciding records nothing


def _crowd(world: World, people: int) -> None:
    """``people`` more people at the site, each with a badge, a shift and some a group or a
    loan. Written in bulk: a world this size built through the actions would take minutes,
    and the decision worlds (test_decision_property) are built through them."""
    start = Employee.objects.count()
    Employee.objects.bulk_create(
        Employee(employee_number=f"C{n}", first_name=f"Crowd{n}", department=world.department)
        for n in range(start, start + people)
    )
    crowd = list(
        Employee.objects.filter(employee_number__startswith="C").exclude(badges__isnull=False)
    )
    Badge.objects.bulk_create(
        Badge(employee=e, uid=f"C0{e.pk:08X}", valid_from=NOW - timedelta(days=1), issued_at=NOW)
        for e in crowd
    )
    ShiftAssignment.objects.bulk_create(
        ShiftAssignment(
            employee=e,
            shift=world.night_shift if e.pk % 2 else world.day_shift,
            valid_from=date(2026, 1, 1),
        )
        for e in crowd
    )
    group, _ = EmployeeGroup.objects.get_or_create(name="Crowd")
    group.members.add(*crowd[::10])
    slot = world.slot(4, world.other_bank)
    for e in crowd[:: max(1, len(crowd) // 50)]:
        asset = Asset.objects.create(asset_tag=f"CR-{e.pk}", asset_type=world.scanner)
        Checkout.objects.create(
            asset=asset, employee=e, slot_out=slot, status=Checkout.Status.ACTIVE,
            reserved_at=NOW - timedelta(hours=2), due_at=NOW + timedelta(hours=4),
        )  # fmt: skip


def test_a_whole_bank_costs_the_same_queries_for_ten_people_or_ten_thousand(world: World) -> None:
    create_access_rule(
        name="Crowd", asset_types=[world.scanner], actor=SYSTEM,
        groups=[EmployeeGroup.objects.create(name="Crowd")], employees=[world.ana],
    )  # fmt: skip
    _crowd(world, 10)
    with CaptureQueriesContext(connection) as few:
        small = build_snapshot(world.bank, now=NOW)
    _crowd(world, 10_000)

    with CaptureQueriesContext(connection) as many:
        started = perf_counter()
        large = build_snapshot(world.bank, now=NOW)
        elapsed = perf_counter() - started

    assert len(many) == len(few) <= 10
    assert len(large.badges) == len(small.badges) + 10_000
    assert len(large.holders) == len(small.holders) + 10_000
    crowd = [h for h in large.holders.values() if h.first_name.startswith("Crowd")]
    assert sum(1 for h in crowd if h.loans) >= 50
    assert sum(1 for h in crowd if len(h.rules) == 2) >= 1000  # the department's and the group's
    assert all(h.shifts for h in crowd)
    print(f"10,010 badges: {len(many)} queries, {elapsed:.2f} s")
    assert elapsed < 2.0
