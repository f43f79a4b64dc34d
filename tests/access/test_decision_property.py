"""The server decides a tap exactly as a bank would from the snapshot the server sends it.

Random worlds are built through the real actions (badges issued, revoked, lost, expired and
temporary; PINs; rules by department, group and person, by type and by place; shift patterns
across midnight in a time zone with a DST change; limits; overdue loans; slots out of service,
faulted, open, held, uncharged, empty). For every UID in a world (and one nobody holds),
``present_badge`` must come to the same decision as ``access.core.decide`` on the whole
bank's snapshot after its trip through the wire form; and the shift windows in the snapshot
must be the ones the shift patterns and assignments give in the site's time zone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access import core
from access.actions import (
    Intent,
    assign_shift,
    create_access_rule,
    create_employee,
    create_shift,
    delete_access_rule,
    issue_badge,
    offboard_employee,
    present_badge,
    revoke_badge,
)
from access.models import Badge, Department, Employee, EmployeeGroup, ShiftAssignment
from access.snapshot_builder import build_snapshot, slot_states
from assets.actions import register_asset, set_asset_status
from assets.models import AssetType
from devices.actions import (
    create_bank,
    record_slot_state,
    remote_open,
    set_out_of_service,
    stock_slot,
)
from devices.models import LockerBank, Site, Slot
from lockerhub.actions import save_row
from lockerhub.audit import SYSTEM
from tests.flows import take

PIN, WRONG_PIN = "4321", "9999"
UNKNOWN = "DEADBEEF"
SLOTS_A, SLOTS_B = 6, 8
# Around the two DST changes of 2026 in Berlin, and an ordinary Wednesday.
DAYS = [date(2026, 3, 29), date(2026, 10, 25), date(2026, 3, 11)]


class FastPBKDF2Hasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256, with few rounds: the hash names its rounds, and the core reads
    them from it, so PINs check as in production, only faster."""

    iterations = 1000


@pytest.fixture(autouse=True)
def fast_pin_hashes(settings) -> None:
    settings.PASSWORD_HASHERS = [f"{__name__}.FastPBKDF2Hasher"]


# -- what a world is made of ---------------------------------------------------------------------


@dataclass
class BadgeSpec:
    valid_from: str  # "long_ago" | "soon"
    valid_until: str  # "none" | "gone" | "later" | "far"
    temporary: bool
    pin: bool
    fate: str  # "active" | "revoked" | "lost" | "expired" | "reissued"


@dataclass
class LoanSpec:
    type: str  # "scanner" | "tablet"
    bank: str  # "A" | "B"
    hours_ago: int
    then: str  # "out" | "returning_b" (a return waiting at BANK-B) | "held" (a take waiting)


@dataclass
class PersonSpec:
    department: str | None
    in_group: bool
    status: str  # "active" | "suspended" | "offboarded"
    shifts: list[tuple[int, int, int | None]]  # (shift index, first day, last day) vs today
    badges: list[BadgeSpec]
    loans: list[LoanSpec]


@dataclass
class RuleSpec:
    departments: list[str]
    group: bool
    people: list[int]
    types: list[str]
    where: str  # "everywhere" | "site" | "bank_a" | "bank_b"
    active: bool
    require_shift: bool
    grace: tuple[int, int]
    max_concurrent: int


@dataclass
class SlotSpec:
    content: str | None  # None | "scanner" | "tablet"
    asset_status: str
    charge: str
    charged_minutes_ago: int
    door_open: bool
    present: bool | None
    out_of_service: bool
    remote_open: bool


@dataclass
class WorldSpec:
    now: datetime
    time_zone: str
    tablet_max_hours: int
    shifts: list[tuple[int, int, int]]  # (days mask, start, end) in half hours
    slots: list[SlotSpec]
    people: list[PersonSpec]
    rules: list[RuleSpec]
    taps: list[tuple[str, str | None]] = field(default_factory=list)  # (intent, pin) per UID


half_hours = st.integers(0, 47)
# (days, start, end): an end not after the start crosses midnight; never equal to it.
shift_specs = st.tuples(
    st.sampled_from([127, 127, 0b0011111]) | st.integers(1, 127),
    half_hours,
    st.integers(8, 32) | st.integers(1, 47),
).map(lambda s: (s[0], s[1], (s[1] + s[2]) % 48))
badge_specs = st.builds(
    BadgeSpec,
    valid_from=st.sampled_from(["long_ago"] * 9 + ["soon"]),
    valid_until=st.sampled_from(["none"] * 5 + ["gone", "later", "far"]),
    temporary=st.booleans(),
    pin=st.sampled_from([True, True, False]),
    fate=st.sampled_from(["active"] * 8 + ["revoked", "lost", "expired", "reissued"]),
)
loan_specs = st.builds(
    LoanSpec,
    type=st.sampled_from(["scanner", "tablet"]),
    bank=st.sampled_from(["A", "B", "B"]),
    hours_ago=st.integers(1, 30),
    then=st.sampled_from(["out", "out", "returning_b", "held"]),
)
person_specs = st.builds(
    PersonSpec,
    department=st.sampled_from([None, "Warehouse", "Warehouse", "Warehouse", "Office"]),
    in_group=st.booleans(),
    status=st.sampled_from(["active"] * 10 + ["suspended", "offboarded"]),
    shifts=st.lists(
        st.tuples(st.integers(0, 2), st.integers(-3, 1), st.none() | st.integers(-1, 2)),
        min_size=1,
        max_size=2,
    ),
    badges=st.lists(badge_specs, min_size=1, max_size=2),
    loans=st.lists(loan_specs, max_size=3),
)
rule_specs = st.builds(
    RuleSpec,
    departments=st.lists(st.sampled_from(["Warehouse", "Office"]), max_size=2, unique=True).map(
        lambda names: names or ["Warehouse"]
    ),
    group=st.booleans(),
    people=st.lists(st.integers(0, 3), max_size=2, unique=True),
    types=st.lists(st.sampled_from(["scanner", "tablet"]), min_size=1, max_size=2, unique=True),
    where=st.sampled_from(["everywhere", "everywhere", "everywhere", "site", "bank_a", "bank_b"]),
    active=st.sampled_from([True] * 5 + [False]),
    require_shift=st.booleans(),
    grace=st.tuples(st.sampled_from([0, 15, 90]), st.sampled_from([0, 15, 90])),
    max_concurrent=st.integers(1, 2),
)
slot_specs = st.builds(
    SlotSpec,
    content=st.sampled_from([None, "scanner", "scanner", "scanner", "tablet"]),
    asset_status=st.sampled_from(["available"] * 7 + ["maintenance", "retired"]),
    charge=st.sampled_from([c.value for c in Slot.ChargeState] + ["charged"] * 3),
    charged_minutes_ago=st.integers(1, 600),
    door_open=st.sampled_from([False] * 7 + [True]),
    present=st.sampled_from([True, True, True, False, None]),
    out_of_service=st.sampled_from([False] * 7 + [True]),
    remote_open=st.sampled_from([False] * 9 + [True]),
)
taps = st.tuples(
    st.sampled_from([Intent.AUTO, Intent.AUTO, Intent.TAKE, Intent.RETURN]),
    st.sampled_from([None, None, PIN, WRONG_PIN]),
)


@st.composite
def world_specs(draw) -> WorldSpec:
    day = draw(st.sampled_from(DAYS))
    minutes = draw(st.integers(-12 * 12, 36 * 12)) * 5
    people = draw(st.lists(person_specs, min_size=1, max_size=4))
    return WorldSpec(
        now=datetime.combine(day, time(0), tzinfo=UTC) + timedelta(minutes=minutes),
        time_zone=draw(st.sampled_from(["Europe/Berlin"] * 4 + ["America/New_York", "UTC"])),
        tablet_max_hours=draw(st.integers(1, 10)),
        shifts=draw(st.lists(shift_specs, min_size=1, max_size=3)),
        slots=draw(st.lists(slot_specs, min_size=SLOTS_A, max_size=SLOTS_A)),
        people=people,
        rules=draw(st.lists(rule_specs, min_size=1, max_size=3)),
        taps=draw(st.lists(taps, min_size=12, max_size=12)),
    )


# -- building a world through the actions ----------------------------------------------------


@dataclass
class World:
    now: datetime
    site: Site
    bank: LockerBank
    other: LockerBank
    types: dict[str, AssetType]
    people: list[Employee]
    uids: list[str]


def _half_hour(n: int) -> time:
    return time(n // 2, 30 * (n % 2))


def build_world(spec: WorldSpec) -> World:
    now = spec.now
    setup = now - timedelta(days=3)  # when the world was set up
    site = save_row(Site(name="Property DC", time_zone=spec.time_zone), actor=SYSTEM, now=setup)
    bank, _ = create_bank(site, "BANK-A", slots=SLOTS_A, actor=SYSTEM, now=setup)
    other, _ = create_bank(site, "BANK-B", slots=SLOTS_B, actor=SYSTEM, now=setup)
    types = {
        "scanner": save_row(
            AssetType(code="scanner", name="Scanner", max_loan_minutes=12 * 60),
            actor=SYSTEM,
            now=setup,
        ),
        "tablet": save_row(
            AssetType(
                code="tablet",
                name="Tablet",
                max_loan_minutes=spec.tablet_max_hours * 60,
                requires_pin=True,
            ),
            actor=SYSTEM,
            now=setup,
        ),
    }
    _stock(bank, other, types, spec.slots, now, setup)

    people = [
        create_employee(
            employee_number=f"P{n}",
            first_name=f"Person{n}",
            department=person.department,
            home_site=site,
            actor=SYSTEM,
            now=setup,
        )
        for n, person in enumerate(spec.people)
    ]
    members = [p for p, person in zip(people, spec.people, strict=True) if person.in_group]
    group = save_row(EmployeeGroup(name="Forklift"), members=members, actor=SYSTEM, now=setup)
    shifts = [
        create_shift(
            site=site,
            name=f"Shift {n}",
            days=days,
            start=_half_hour(start),
            end=_half_hour(end),
            actor=SYSTEM,
            now=setup,
        )
        for n, (days, start, end) in enumerate(spec.shifts)
    ]
    today = now.astimezone(site.tz).date()
    for employee, person in zip(people, spec.people, strict=True):
        for index, first, last in person.shifts:
            shift = shifts[index % len(shifts)]
            if ShiftAssignment.objects.filter(employee=employee, shift=shift).exists():
                continue  # nobody is on the same shift twice
            assign_shift(
                employee,
                shift,
                valid_from=today + timedelta(days=first),
                valid_until=None if last is None else today + timedelta(days=max(first, last)),
                actor=SYSTEM,
                now=setup,
            )

    badges = _issue_badges(people, spec, now, setup)
    _lend(people, spec, badges, bank, other, types, now)
    _end_badges(people, spec, badges, now)

    for n, rule in enumerate(spec.rules):
        create_access_rule(
            name=f"Rule {n}",
            asset_types=[types[t] for t in rule.types],
            departments=list(Department.objects.filter(name__in=rule.departments)),
            groups=[group] if rule.group else [],
            employees=[people[i] for i in rule.people if i < len(people)],
            sites=[site] if rule.where == "site" else [],
            banks={"bank_a": [bank], "bank_b": [other]}.get(rule.where, []),
            is_active=rule.active,
            require_shift=rule.require_shift,
            grace_before_minutes=rule.grace[0],
            grace_after_minutes=rule.grace[1],
            max_concurrent=rule.max_concurrent,
            actor=SYSTEM,
            now=setup,
        )
    uids = [*sorted({b.uid for b in Badge.objects.all()}), UNKNOWN]
    return World(now, site, bank, other, types, people, uids)


def _stock(bank, other, types, slots: list[SlotSpec], now: datetime, setup: datetime) -> None:
    """BANK-A as the spec says; BANK-B full of charged devices to lend from."""
    for number, slot_spec in enumerate(slots, start=1):
        slot = Slot.objects.get(bank=bank, number=number)
        if slot_spec.content is not None:
            asset = register_asset(
                asset_tag=f"A-{number}", asset_type=types[slot_spec.content], actor=SYSTEM
            )
            stock_slot(slot, asset, actor=SYSTEM, now=setup)
            if slot_spec.asset_status != "available":
                set_asset_status(asset, slot_spec.asset_status, reason="test", actor=SYSTEM)
        at = now - timedelta(minutes=slot_spec.charged_minutes_ago)
        record_slot_state(bank, number, at=at, charge_state=slot_spec.charge)
        if slot_spec.present is not None:
            record_slot_state(bank, number, at=at, present=slot_spec.present)
        if slot_spec.out_of_service:
            set_out_of_service(slot, out_of_service=True, reason="test", actor=SYSTEM, now=setup)
        if slot_spec.door_open:
            record_slot_state(bank, number, at=at, door_open=True)
        elif slot_spec.remote_open:
            remote_open(slot, user=AnonymousUser(), reason="test", actor=SYSTEM, now=now)
    for number in range(1, SLOTS_B + 1):
        kind = "tablet" if number > 5 else "scanner"
        if number == SLOTS_B:
            continue  # one free door to return to
        asset = register_asset(asset_tag=f"B-{number}", asset_type=types[kind], actor=SYSTEM)
        stock_slot(Slot.objects.get(bank=other, number=number), asset, actor=SYSTEM, now=setup)
        record_slot_state(other, number, at=setup, present=True, charge_state="charged")


def _issue_badges(people, spec: WorldSpec, now: datetime, setup: datetime) -> list[list[Badge]]:
    until = {
        "none": None,
        "gone": now - timedelta(hours=1),
        "later": now + timedelta(hours=3),
        "far": now + timedelta(days=30),
    }
    issued = []
    n = 0
    for employee, person in zip(people, spec.people, strict=True):
        mine = []
        for badge_spec in person.badges:
            n += 1
            valid_from = (
                now - timedelta(days=10)
                if badge_spec.valid_from == "long_ago"
                else now + timedelta(hours=2)
            )
            valid_until = until[badge_spec.valid_until]
            if valid_until is not None and valid_until <= valid_from:
                valid_until = valid_from + timedelta(hours=1)
            mine.append(
                issue_badge(
                    employee,
                    f"0A{n:06X}",
                    valid_from=valid_from,
                    valid_until=valid_until,
                    temporary=badge_spec.temporary and valid_until is not None,
                    pin=PIN if badge_spec.pin else None,
                    actor=SYSTEM,
                    now=setup + timedelta(seconds=n),
                )
            )
        issued.append(mine)
    return issued


def _lend(people, spec: WorldSpec, badges, bank, other, types, now: datetime) -> None:
    """Loans, taken as people take them: a rule for the one type, a tap, the door."""
    for employee, person, mine in zip(people, spec.people, badges, strict=True):
        badge = mine[0]
        if badge.valid_from > now - timedelta(days=2):
            continue
        for n, loan in enumerate(sorted(person.loans, key=lambda lo: -lo.hours_ago)):
            kind = loan.type if badge.pin_hash else "scanner"
            where = bank if loan.bank == "A" else other
            lending = create_access_rule(
                name=f"Lending {employee.pk}-{n}",
                asset_types=[types[kind]],
                employees=[employee],
                require_shift=False,
                max_concurrent=10,
                actor=SYSTEM,
                now=now - timedelta(days=2),
            )
            if loan.then == "held":
                # A take whose door has not opened yet (taps at BANK-A show it again).
                present_badge(
                    where, badge.uid, now=now - timedelta(seconds=5), pin=PIN, intent=Intent.TAKE
                )
            else:
                at = now - timedelta(hours=loan.hours_ago)
                result = present_badge(where, badge.uid, now=at, pin=PIN, intent=Intent.TAKE)
                if result.granted:
                    take(where, badge.uid, at + timedelta(seconds=1), pin=PIN, intent=Intent.TAKE)
                if loan.then == "returning_b":
                    present_badge(
                        other, badge.uid, now=now - timedelta(seconds=5), intent=Intent.RETURN
                    )
            delete_access_rule(lending, actor=SYSTEM, now=now - timedelta(days=2))


def _end_badges(people, spec: WorldSpec, badges, now: datetime) -> None:
    """Revocations, losses, expiries, a UID handed on, suspensions and offboardings."""
    earlier = now - timedelta(hours=1)
    for n, (employee, person, mine) in enumerate(zip(people, spec.people, badges, strict=True)):
        for badge, badge_spec in zip(mine, person.badges, strict=True):
            if badge_spec.fate in ("revoked", "reissued"):
                revoke_badge(badge, actor=SYSTEM, reason="test", now=earlier)
            elif badge_spec.fate == "lost":
                revoke_badge(badge, actor=SYSTEM, status=Badge.Status.LOST, now=earlier)
            elif badge_spec.fate == "expired":
                save_row(Badge.objects.get(pk=badge.pk), status="expired", actor=SYSTEM)
            if badge_spec.fate == "reissued":
                # The card goes to the next person: the UID now stands for their badge.
                successor = Employee.objects.get(pk=people[(n + 1) % len(people)].pk)
                if successor.pk != employee.pk and successor.status == Employee.Status.ACTIVE:
                    issue_badge(
                        successor,
                        badge.uid,
                        valid_from=now - timedelta(days=1),
                        actor=SYSTEM,
                        now=earlier + timedelta(seconds=1),
                    )
        if person.status == "suspended":
            save_row(employee, status=Employee.Status.SUSPENDED, actor=SYSTEM, now=earlier)
        elif person.status == "offboarded":
            offboard_employee(employee, actor=SYSTEM, now=earlier)


# -- what must hold ----------------------------------------------------------------------------


def _wire(snapshot: core.Snapshot) -> core.Snapshot:
    return core.Snapshot.from_data(json.loads(core.canonical(snapshot.to_data())))


def _shift_end_from_patterns(employee: Employee, at: datetime) -> float | None:
    """The end of the assigned occurrence holding ``at``, read from the shift patterns as the
    server read them before there were snapshots (the former ``access.queries.shift_window``):
    an assignment counts for an occurrence that starts on a day within its validity, in the
    site's time zone."""
    best = None
    for assignment in ShiftAssignment.objects.filter(employee=employee).select_related(
        "shift__site"
    ):
        tz = assignment.shift.site.tz
        window = assignment.shift.window_at(at, tz)
        if window is None:
            continue
        start_day = window[0].astimezone(tz).date()
        if start_day < assignment.valid_from or (
            assignment.valid_until and start_day > assignment.valid_until
        ):
            continue
        if best is None or window[1] > best:
            best = window[1]
    return None if best is None else best.timestamp()


def check_world(world: World, spec: WorldSpec) -> None:
    now = world.now
    whole = build_snapshot(world.bank, now=now)
    wire = _wire(whole)
    assert wire == whole
    states = slot_states(world.bank)

    # The shift windows, at any time the snapshot is good for.
    for employee in world.people:
        holder = whole.holders.get(employee.pk)
        if holder is None:
            continue
        for hours in (0, 3, 7, 11.5):
            at = now + timedelta(hours=hours)
            assert core._shift_end(holder.shifts, at.timestamp(), 0, 0) == (
                _shift_end_from_patterns(employee, at)
            ), (employee, at)

    for uid, (intent, pin) in zip(world.uids, spec.taps, strict=False):
        # A snapshot of one UID (what the server decides from) says what the whole one says.
        one = build_snapshot(world.bank, now=now, uids=[uid])
        key = core.hash_uid(whole.uid_key, uid)
        assert one.badges == ({key: whole.badges[key]} if key in whole.badges else {})
        for holder_id, holder in one.holders.items():
            assert holder == whole.holders[holder_id]
            theirs = build_snapshot(world.bank, now=now, holder_ids=[holder_id])
            assert theirs.badges == {k: b for k, b in whole.badges.items() if b.holder == holder_id}

        expected = core.decide(wire, states, now.timestamp(), uid, intent=intent, pin=pin)
        with transaction.atomic():
            result = present_badge(world.bank, uid, now=now, intent=intent, pin=pin)
            reservation = result.reservation
            got = (
                result.granted,
                str(result.reason),
                reservation.slot.number if reservation else None,
                reservation.purpose if reservation else None,
            )
            transaction.set_rollback(True)  # the next UID is decided in the same world
        assert got == (
            expected.granted,
            str(expected.reason),
            expected.slot,
            None if expected.purpose is None else str(expected.purpose),
        ), (uid, intent, pin)
        event(f"{'granted' if expected.granted else 'denied'}: {expected.reason}")


def _slot(content: str | None = "scanner", **changes) -> SlotSpec:
    base = SlotSpec(content, "available", "charged", 120, False, content is not None, False, False)
    return replace(base, **changes)


def _person(**changes) -> PersonSpec:
    badge = BadgeSpec("long_ago", "none", temporary=False, pin=True, fate="active")
    return replace(
        PersonSpec("Warehouse", False, "active", [(0, -3, None)], [badge], []), **changes
    )


def _rule(**changes) -> RuleSpec:
    return replace(
        RuleSpec(["Warehouse"], False, [], ["scanner"], "everywhere", True, True, (15, 15), 1),
        **changes,
    )


def _world(**changes) -> WorldSpec:
    """A Wednesday morning at the day shift (06:00-14:00 Berlin), doors 1-3 holding scanners,
    door 4 a tablet, doors 5 and 6 empty."""
    base = WorldSpec(
        now=datetime(2026, 3, 11, 9, 0, tzinfo=UTC),
        time_zone="Europe/Berlin",
        tablet_max_hours=8,
        shifts=[(127, 12, 28)],
        slots=[_slot(), _slot(), _slot(), _slot("tablet"), _slot(None), _slot(None)],
        people=[_person()],
        rules=[_rule()],
        taps=[(Intent.AUTO, None)] * 12,
    )
    return replace(base, **changes)


tablets_only = [_rule(types=["tablet"])]
# Worlds the random ones reach only now and then, always tried first.
EXAMPLES = [
    _world(),
    # PIN asked for, wrong, right (three people with one tablet rule).
    _world(
        people=[_person(), _person(), _person()],
        rules=tablets_only,
        taps=[(Intent.AUTO, None), (Intent.AUTO, WRONG_PIN), (Intent.AUTO, PIN)] * 4,
    ),
    # Holding the maximum; overdue; one holding a take, one returning elsewhere.
    _world(
        people=[
            _person(loans=[LoanSpec("scanner", "B", 2, "out"), LoanSpec("scanner", "B", 1, "out")]),
            _person(loans=[LoanSpec("scanner", "A", 20, "out")]),
            _person(loans=[LoanSpec("scanner", "A", 1, "held")]),
            _person(loans=[LoanSpec("scanner", "A", 3, "returning_b")]),
        ],
        rules=[_rule(max_concurrent=2)],
        taps=[(Intent.TAKE, None), (Intent.TAKE, None), (Intent.AUTO, None), (Intent.AUTO, None)]
        * 3,
    ),
    # Nights across the spring DST change (02:00 → 03:00 on 29 March), with and without grace.
    _world(
        now=datetime(2026, 3, 29, 0, 50, tzinfo=UTC),
        shifts=[(127, 44, 12), (0b1100000, 4, 6)],  # 22:00-06:00 daily; 02:00-03:00 weekends
        people=[_person(shifts=[(0, -2, 0)]), _person(shifts=[(1, -1, None)])],
        rules=[_rule(grace=(0, 0)), _rule(grace=(90, 90), people=[1])],
    ),
    # And the autumn one (03:00 → 02:00 on 25 October), in the repeated hour.
    _world(
        now=datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        shifts=[(127, 44, 12), (0b1000000, 4, 5)],
        people=[_person(shifts=[(0, -1, None)]), _person(shifts=[(1, 0, 0)])],
        rules=[_rule(grace=(0, 0))],
    ),
    # Nothing to give: every door spoiled a different way.
    _world(
        slots=[
            _slot(out_of_service=True),
            _slot(charge="fault"),
            _slot(door_open=True),
            _slot(remote_open=True),
            _slot(present=False),
            _slot(asset_status="maintenance"),
        ]
    ),
]


def _with_examples(test):
    for spec in reversed(EXAMPLES):
        test = example(spec=spec)(test)
    return test


@hypothesis_settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=world_specs())
@_with_examples
def test_the_server_decides_as_the_bank_would_from_its_snapshot(db, spec: WorldSpec) -> None:
    with transaction.atomic():
        check_world(build_world(spec), spec)
        transaction.set_rollback(True)  # each example starts from an empty database
