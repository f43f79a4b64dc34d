"""A bank's access snapshot (``access.core.Snapshot``) built from the database, and the
server's own decision on one.

The bank worker decides taps from a snapshot the server signs and sends; the server decides
its own taps (``access.actions.present_badge``) by running the same core on a snapshot built
here, restricted to the one UID presented. What goes into a snapshot is written down in
``docs/device-protocol.md`` ("The access snapshot").

Every part is read with one query whatever the number of badges, people or loans: a whole
bank's snapshot costs the same eight queries for ten people or ten thousand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import F, FilteredRelation, Q, Value

from access import core
from access.models import AccessRule, Badge, EmployeeGroup, Shift, ShiftAssignment
from assets.models import AssetType, Checkout, Reservation
from devices.models import LockerBank, Slot
from devices.wire import normalize_uid
from lockerhub import signing

# Above this many people a query reads every row and keeps those in the snapshot, rather than
# sending an IN list the size of the workforce.
_IN_LIST_LIMIT = 500


def build_snapshot(
    bank: LockerBank,
    *,
    now: datetime,
    version: int = 0,
    uid_key: bytes | None = None,
    uids: Iterable[str] | None = None,
    holder_ids: Iterable[int] | None = None,
) -> core.Snapshot:
    """What ``bank`` needs to decide taps on its own from ``now`` on.

    ``uids`` limits it to those badge UIDs, ``holder_ids`` to the badges of those people; by
    default it holds every UID. A UID stands for one badge: its active one, else its latest.
    """
    options = settings.LOCKERHUB
    key = uid_key if uid_key is not None else signing.uid_key(bank.code)
    badges, people = _badges(key, uids, holder_ids)
    holders: dict[int, core.Holder] = {}
    if people:
        scope = sorted(people) if len(people) <= _IN_LIST_LIMIT else None
        rules = _rules(bank, people, scope)
        horizon = timedelta(hours=options["SNAPSHOT_HORIZON_HOURS"])
        shifts = _shifts(now - timedelta(days=1), now + horizon + timedelta(days=1), scope)
        loans = _loans(scope)
        for holder_id, (first_name, status, _department) in people.items():
            holders[holder_id] = core.Holder(
                first_name=first_name,
                status=status,
                rules=rules.get(holder_id, ()),
                shifts=tuple(sorted(shifts.get(holder_id, ()))),
                loans=tuple(loans.get(holder_id, ())),
            )
    return core.Snapshot(
        bank=bank.code,
        version=version,
        issued_at=now.timestamp(),
        valid_until=(now + timedelta(seconds=options["SNAPSHOT_VALID_SECONDS"])).timestamp(),
        uid_key=key,
        types=_types(),
        badges=badges,
        holders=holders,
        slots=_slots(bank),
        return_grace=options["RETURN_GRACE_MINUTES"] * 60.0,
    )


def slot_states(bank: LockerBank, *, lock: bool = False) -> list[core.SlotState]:
    """What the server knows of ``bank``'s slots physically, and which are held for a take,
    a return or a remote open under way.

    ``lock`` locks the bank's slot rows (in door order) until the transaction ends, which
    serialises taps at one bank: of two taps for the last device, one sees it held.
    """
    if lock:
        # Locked first, and read in a statement of its own once the locks are held: a row
        # lock waited for re-reads the locked row only, not a hold joined to it.
        list(
            Slot.objects.filter(bank=bank)
            .order_by("number")
            .select_for_update(of=("self",))
            .values_list("pk", flat=True)
        )
    # The hold, if any, comes in the same row: at most one reservation per slot is active.
    rows = (
        Slot.objects.filter(bank=bank)
        .annotate(
            hold=FilteredRelation(
                "reservations",
                condition=Q(reservations__status__in=Reservation.ACTIVE_STATUSES),
            )
        )
        .order_by("number")
        .values_list(
            "number",
            "door_state",
            "present",
            "charge_state",
            "charge_state_since",
            "hold__purpose",
            "hold__checkout_id",
            "hold__checkout__employee_id",
        )
    )
    return [
        core.SlotState(
            number=number,
            door_open=door == Slot.DoorState.OPEN,
            present=present,
            charge_state=charge,
            charge_since=since.timestamp(),
            held=None if purpose is None else (purpose, checkout_id or 0),
            held_by=holder_id,
        )
        for number, door, present, charge, since, purpose, checkout_id, holder_id in rows
    ]


def server_decision(
    bank: LockerBank,
    uid: str,
    *,
    now: datetime,
    intent: core.Intent = core.Intent.AUTO,
    pin: str | None = None,
    lock: bool = False,
) -> tuple[core.Decision, core.Snapshot, list[core.SlotState]]:
    """The server's decision on a tap of ``uid`` at ``bank``: the core's, on a snapshot of
    that one UID built from the database now. ``lock`` as for :func:`slot_states`; the slots
    are read (and locked) before the snapshot, so it sees what committed while we waited."""
    uid = normalize_uid(uid)
    states = slot_states(bank, lock=lock)
    snapshot = build_snapshot(bank, now=now, uids=[uid])
    decision = core.decide(snapshot, states, now.timestamp(), uid, intent=intent, pin=pin)
    return decision, snapshot, states


# -- the parts ----------------------------------------------------------------------------


def _timestamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _badges(
    key: bytes, uids: Iterable[str] | None, holder_ids: Iterable[int] | None
) -> tuple[dict[str, core.BadgeInfo], dict[int, tuple[str, str, int | None]]]:
    """(badges by hashed UID, {holder id: (first name, status, department id)})."""
    badges = Badge.objects.all()
    if uids is not None:
        badges = badges.filter(uid__in={normalize_uid(uid) for uid in uids})
    wanted = None
    if holder_ids is not None:
        wanted = set(holder_ids)
        # Every badge of the UIDs they hold: a UID stands for one badge, whoever holds it.
        badges = badges.filter(
            uid__in=Badge.objects.filter(employee_id__in=wanted).values("uid").distinct()
        )
    rows = badges.order_by("uid", "-issued_at", "-pk").values_list(
        "uid",
        "status",
        "valid_from",
        "valid_until",
        "pin_hash",
        "employee_id",
        "employee__first_name",
        "employee__status",
        "employee__department_id",
    )
    standing: dict[str, tuple] = {}
    for row in rows:
        uid, status = row[0], row[1]
        # The latest badge of a UID comes first; an active one, if any, replaces it.
        if uid not in standing or (
            status == Badge.Status.ACTIVE and standing[uid][1] != Badge.Status.ACTIVE
        ):
            standing[uid] = row
    result: dict[str, core.BadgeInfo] = {}
    people: dict[int, tuple[str, str, int | None]] = {}
    for uid, row in standing.items():
        _, status, valid_from, valid_until, pin_hash, holder, first, holder_status, dept = row
        if wanted is not None and holder not in wanted:
            continue
        result[core.hash_uid(key, uid)] = core.BadgeInfo(
            holder=holder,
            status=status,
            valid_from=valid_from.timestamp(),
            valid_until=_timestamp(valid_until),
            pin_hash=pin_hash,
        )
        people[holder] = (first, holder_status, dept)
    return result, people


def _rules(
    bank: LockerBank,
    people: dict[int, tuple[str, str, int | None]],
    scope: list[int] | None,
) -> dict[int, tuple[core.Rule, ...]]:
    """Each person's active rules that hold at ``bank`` (``AccessRule.for_employee`` and
    ``at_bank``: named in person, by a group, or by their department)."""
    rows = list(
        AccessRule.objects.filter(is_active=True)
        .at_bank(bank)
        .order_by("pk")
        .values_list(
            "pk", "require_shift", "grace_before_minutes", "grace_after_minutes", "max_concurrent"
        )
    )
    if not rows:
        return {}
    rule_ids = [row[0] for row in rows]
    # Who each rule names and which types it gives, in one query.
    links = [
        through.objects.filter(accessrule_id__in=rule_ids).values_list(
            "accessrule_id", Value(kind), F(f"{kind}_id")
        )
        for kind, through in (
            ("assettype", AccessRule.asset_types.through),
            ("department", AccessRule.departments.through),
            ("employeegroup", AccessRule.groups.through),
            ("employee", AccessRule.employees.through),
        )
    ]
    types: dict[int, set[int]] = defaultdict(set)
    named: dict[tuple[str, int], set[int]] = defaultdict(set)
    for rule_id, kind, target in links[0].union(*links[1:], all=True):
        if kind == "assettype":
            types[rule_id].add(target)
        else:
            named[(kind, target)].add(rule_id)
    groups: dict[int, list[int]] = defaultdict(list)
    if any(kind == "employeegroup" for kind, _ in named):
        members = EmployeeGroup.members.through.objects.all()
        if scope is not None:
            members = members.filter(employee_id__in=scope)
        for employee_id, group_id in members.values_list("employee_id", "employeegroup_id"):
            groups[employee_id].append(group_id)
    built = {
        rule_id: core.Rule(
            types=frozenset(types[rule_id]),
            require_shift=require_shift,
            grace_before=before * 60.0,
            grace_after=after * 60.0,
            max_concurrent=max_concurrent,
        )
        for rule_id, require_shift, before, after, max_concurrent in rows
    }
    result: dict[int, tuple[core.Rule, ...]] = {}
    for holder_id, (_, _, department_id) in people.items():
        mine = set(named.get(("employee", holder_id), ()))
        if department_id is not None:
            mine |= named.get(("department", department_id), set())
        for group_id in groups.get(holder_id, ()):
            mine |= named.get(("employeegroup", group_id), set())
        if mine:
            result[holder_id] = tuple(built[rule_id] for rule_id in sorted(mine))
    return result


def _shifts(
    start: datetime, end: datetime, scope: list[int] | None
) -> dict[int, set[tuple[float, float]]]:
    """Each person's assigned shift occurrences that overlap [start, end), as UTC intervals.

    An assignment counts for an occurrence that starts on a day within its validity, that day
    read in the shift's site time zone; ``Shift.occurrence`` gives its times (DST included).
    """
    assignments = ShiftAssignment.objects.filter(
        valid_from__lte=end.astimezone(UTC).date() + timedelta(days=2)
    ).exclude(valid_until__lt=start.astimezone(UTC).date() - timedelta(days=2))
    if scope is not None:
        assignments = assignments.filter(employee_id__in=scope)
    rows = assignments.values_list(
        "employee_id",
        "valid_from",
        "valid_until",
        "shift_id",
        "shift__days",
        "shift__start",
        "shift__end",
        "shift__site__time_zone",
    )
    occurrences: dict[int, list[tuple[date, float, float]]] = {}
    result: dict[int, set[tuple[float, float]]] = defaultdict(set)
    for employee_id, valid_from, valid_until, shift_id, days, begins, ends, zone in rows:
        if shift_id not in occurrences:
            occurrences[shift_id] = _occurrences(days, begins, ends, ZoneInfo(zone), start, end)
        for day, begin_at, end_at in occurrences[shift_id]:
            if valid_from <= day and (valid_until is None or day <= valid_until):
                result[employee_id].add((begin_at, end_at))
    return result


def _occurrences(
    days: int, begins: time, ends: time, tz: ZoneInfo, start: datetime, end: datetime
) -> list[tuple[date, float, float]]:
    """(local start day, UTC start, UTC end) of a shift's occurrences overlapping [start, end)."""
    shift = Shift(days=days, start=begins, end=ends)
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    found = []
    while day <= last:
        if shift.runs_on(day):
            begin_at, end_at = shift.occurrence(day, tz)
            if end_at > start and begin_at < end:
                found.append(
                    (begin_at.astimezone(tz).date(), begin_at.timestamp(), end_at.timestamp())
                )
        day += timedelta(days=1)
    return found


def _loans(scope: list[int] | None) -> dict[int, list[core.Loan]]:
    """Each person's open loans (being taken, or out) at any bank, oldest first."""
    checkouts = Checkout.objects.open()
    if scope is not None:
        checkouts = checkouts.filter(employee_id__in=scope)
    result: dict[int, list[core.Loan]] = defaultdict(list)
    for row in checkouts.order_by("reserved_at", "pk").values_list(
        "employee_id",
        "pk",
        "asset__asset_type_id",
        "status",
        "due_at",
        "reserved_at",
        "slot_out__bank__code",
        "slot_out__number",
        "asset__asset_tag",
    ):
        employee_id, pk, type_id, status, due_at, reserved_at, bank_code, number, tag = row
        result[employee_id].append(
            core.Loan(
                checkout=pk,
                asset_type=type_id,
                status=status,
                due_at=_timestamp(due_at),
                reserved_at=reserved_at.timestamp(),
                bank=bank_code,
                slot=number,
                asset=tag,
            )
        )
    return result


def _slots(bank: LockerBank) -> dict[int, core.SlotInfo]:
    return {
        number: core.SlotInfo(number, has_charger, out_of_service, tag, type_id, status)
        for number, has_charger, out_of_service, tag, type_id, status in Slot.objects.filter(
            bank=bank
        )
        .order_by("number")
        .values_list(
            "number",
            "has_charger",
            "out_of_service",
            "asset__asset_tag",
            "asset__asset_type_id",
            "asset__status",
        )
    }


def _types() -> dict[int, core.AssetTypeInfo]:
    return {
        pk: core.AssetTypeInfo(name, requires_pin, minutes * 60.0)
        for pk, name, requires_pin, minutes in AssetType.objects.order_by("pk").values_list(
            "pk", "name", "requires_pin", "max_loan_minutes"
        )
    }
