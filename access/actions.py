"""Every state change about people and access: the badge decision, badges, offboarding.

``present_badge`` is the server's decision path (DESIGN §4.1-4.3): the rule is
``access.core``'s, the one a bank runs itself, applied to what the database says now; this
module locks, records and tells. It reads only the database: no Redis, no Celery, so a bank
keeps working when the live fan-out is down.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, When
from django.utils import timezone

from access import core
from access.models import (
    REASON_MESSAGES,
    AccessEvent,
    AccessRule,
    ApiKey,
    Badge,
    Department,
    Employee,
    EmployeeGroup,
    Reason,
    Shift,
    ShiftAssignment,
    normalize_uid,
)
from access.snapshot_builder import server_decision
from assets import actions as asset_actions
from assets.models import AssetType, Checkout, Reservation
from devices.models import LockerBank, Site, Slot
from lockerhub import audit, events
from lockerhub.actions import raise_alert
from lockerhub.alerts import tap_key
from lockerhub.models import Alert
from lockerhub.writes import save_unique

logger = logging.getLogger(__name__)


# Re-exported: callers name the intent of a tap from here.
Intent = core.Intent


@dataclass
class TapResult:
    """What a badge presentation led to; the kiosk and the bank worker act on it."""

    granted: bool
    reason: Reason
    message: str
    employee: Employee | None = None
    badge: Badge | None = None
    reservation: Reservation | None = None
    access_event: AccessEvent | None = None
    extra: dict = field(default_factory=dict)

    @property
    def command(self) -> dict | None:
        return asset_actions.unlock_command(self.reservation) if self.reservation else None

    def as_kiosk_payload(self) -> dict:
        payload = {"granted": self.granted, "reason": str(self.reason), "message": self.message}
        if self.employee is not None:
            payload["first_name"] = self.employee.first_name
        if self.reservation is not None:
            checkout = self.reservation.checkout
            payload.update(
                purpose=self.reservation.purpose,
                slot=self.reservation.slot.number,
                asset=checkout.asset.asset_tag,
                asset_type=checkout.asset.asset_type.name,
                due_at=checkout.due_at.isoformat() if checkout.due_at else None,
                expires_at=self.reservation.expires_at.isoformat(),
            )
        return payload


def _message(reason: Reason, employee: Employee | None) -> str:
    return REASON_MESSAGES.get(reason, reason.label).format(
        name=employee.first_name if employee else ""
    )


def present_badge(
    bank: LockerBank,
    uid: str,
    *,
    now: datetime | None = None,
    intent: Intent = Intent.AUTO,
    pin: str | None = None,
    damaged: bool = False,
    damage_note: str = "",
    actor: str | None = None,
) -> TapResult:
    """A badge was presented at ``bank``: decide, reserve a slot if granted, record everything.

    The decision is ``access.core.decide``'s, on a snapshot of this UID read from the
    database (``access.snapshot_builder.server_decision``): the rule a bank applies itself.
    """
    now = now or timezone.now()
    uid = normalize_uid(uid)
    actor = actor or audit.actor_for_bank(bank.code)
    # No savepoint when nested (a bank worker's tap runs inside apply_worker_event): an error
    # fails the whole event, and a savepoint would be two more round trips on every tap.
    with transaction.atomic(savepoint=False):
        badge, *decided = _decide(bank, uid, now, intent, pin)
        employee = badge.employee if badge else None
        reservation, reason = _hold(
            bank,
            uid,
            badge,
            decided,
            now=now,
            intent=intent,
            pin=pin,
            damaged=damaged,
            damage_note=damage_note,
            actor=actor,
        )
        granted = reservation is not None
        access_event = record_presentation(
            bank,
            uid,
            badge,
            granted=granted,
            reason=str(reason),
            hold=reservation,
            at=now,
            actor=actor,
        )
        if reservation is not None:
            message = _granted_message(reservation, employee)
        else:
            message = _message(reason, employee)
        result = TapResult(granted, reason, message, employee, badge, reservation, access_event)
        events.broadcast(events.bank_group(bank.code), "tap", result.as_kiosk_payload())
        flag_misuse(bank, uid, str(reason), employee, at=now)
    return result


def record_presentation(
    bank: LockerBank,
    uid: str,
    badge: Badge | None,
    *,
    granted: bool,
    reason: str,
    hold: Reservation | None,
    at: datetime,
    actor: str,
    data: dict[str, Any] | None = None,
) -> AccessEvent:
    """Record one badge presentation, decided by the server or by the bank: its access event
    and its audit record (written last, so the chain's lock is held only briefly)."""
    checkout = hold.checkout if hold is not None else None
    access_event = AccessEvent.objects.create(
        bank=bank,
        at=at,
        uid=uid,
        badge=badge,
        employee=badge.employee if badge else None,
        granted=granted,
        reason=reason,
        slot=hold.slot if hold is not None else None,
        checkout=checkout,
    )
    audit.record(
        "badge.presented",
        actor=actor,
        subject=access_event,
        data={
            "bank": bank.code,
            "uid": uid,
            "granted": granted,
            "reason": reason,
            "purpose": hold.purpose if hold is not None else None,
            "slot": hold.slot.number if hold is not None else None,
            "checkout": checkout.pk if checkout is not None else None,
            "asset": checkout.asset.asset_tag if checkout is not None else None,
            **(data or {}),
        },
        at=at,
    )
    return access_event


def flag_misuse(
    bank: LockerBank, uid: str, reason: str, employee: Employee | None, *, at: datetime
) -> None:
    """A revoked or lost badge, or an offboarded person's, was presented: suspicious access."""
    if reason not in core.MISUSE:
        return
    raise_alert(
        Alert.Kind.SUSPICIOUS_ACCESS,
        tap_key("badge-misuse", uid, bank.code, at),
        f"{core.REASON_LABELS[reason]} presented at {bank.code}",
        severity=Alert.Severity.WARNING,
        details={"uid": uid, "reason": reason},
        now=at,
        bank=bank,
        site_id=bank.site_id,
        employee=employee,
    )


def _granted_message(reservation: Reservation, employee: Employee) -> str:
    asset = reservation.checkout.asset
    if reservation.purpose == Reservation.Purpose.TAKE:
        return f"Hi {employee.first_name} — door {reservation.slot.number} is open, take {asset.asset_type.name.lower()} {asset.asset_tag}"
    return f"Thanks {employee.first_name} — door {reservation.slot.number} is open, put {asset.asset_tag} back and close the door"


def select_badge(uid: str) -> Badge | None:
    """The badge this UID stands for: the active one if any, otherwise the most recent.

    Its holder's row is locked in the same statement, and read as it is once the lock is
    granted: taps of one person are serialised (two banks at once must not exceed a limit),
    and an offboarding that committed while this tap waited is seen.
    """
    return (
        Badge.objects.filter(uid=uid)
        .select_related("employee__department")
        .select_for_update(of=("employee",))
        .order_by(Case(When(status=Badge.Status.ACTIVE, then=0), default=1), "-issued_at", "-pk")
        .first()
    )


def _decide(
    bank: LockerBank, uid: str, now: datetime, intent: Intent, pin: str | None
) -> tuple[Badge | None, core.Decision, core.Snapshot | None, list[core.SlotState]]:
    """Lock the holder, then the bank's slots, and decide: the badge, the core's decision and
    what it was made from.

    The decision reads the database again after the locks; should the UID have passed to
    another person's badge in between, that person is locked and the tap decided again.
    """
    for _ in range(3):
        badge = select_badge(uid)
        decision, snapshot, states = server_decision(
            bank, uid, now=now, intent=intent, pin=pin, lock=True
        )
        if decision.holder == (badge.employee_id if badge else None):
            return badge, decision, snapshot, states
    logger.warning("badge %s changed hands during every try of a tap at %s", uid, bank.code)
    return None, core.Decision(False, core.Reason.BADGE_UNKNOWN), None, []


def _hold(
    bank: LockerBank,
    uid: str,
    badge: Badge | None,
    decided: tuple[core.Decision, core.Snapshot | None, list[core.SlotState]],
    *,
    now: datetime,
    intent: Intent,
    pin: str | None,
    damaged: bool,
    damage_note: str,
    actor: str,
) -> tuple[Reservation | None, Reason]:
    """Make the records of a granted tap: the reservation (None when denied), and why.

    The bank's slot rows are locked (``_decide``), so the decided slot is as it was read.
    """
    decision, snapshot, states = decided
    while decision.granted and snapshot is not None:
        if decision.again:
            # The same door shown again to someone already holding it: no new reservation.
            return _active_reservation(bank, decision.slot), Reason(decision.reason)
        slot = Slot.objects.select_related("asset__asset_type").get(bank=bank, number=decision.slot)
        slot.bank = bank  # no join to read it again
        if decision.purpose == core.Purpose.RETURN:
            reservation = asset_actions.do_reserve_return(
                checkout=Checkout.objects.select_related("asset__asset_type").get(
                    pk=decision.checkout
                ),
                slot=slot,
                now=now,
                actor=actor,
                damaged=damaged,
                damage_note=damage_note,
            )
            if reservation is None:  # its return is under way at another bank, door open
                return None, Reason.NO_RETURN_SLOT
            return reservation, Reason.GRANTED_RETURN
        reservation = asset_actions.do_reserve_take(
            employee=badge.employee,
            badge=badge,
            slot=slot,
            shift_end_at=_at(decision.shift_end),
            now=now,
        )
        if reservation is not None:
            return reservation, Reason.GRANTED_TAKE
        # The device left circulation after the snapshot was read: decide again without it.
        asset = slot.asset
        left = replace(
            snapshot.slots[slot.number],
            asset=asset.asset_tag if asset else None,
            asset_status=asset.status if asset else None,
        )
        snapshot = replace(snapshot, slots={**snapshot.slots, slot.number: left})
        decision = core.decide(snapshot, states, now.timestamp(), uid, intent=intent, pin=pin)
    return None, Reason(decision.reason)


def _active_reservation(bank: LockerBank, number: int) -> Reservation:
    reservation = (
        Reservation.objects.active()
        .select_related("slot", "checkout__asset__asset_type")
        .get(slot__bank=bank, slot__number=number)
    )
    reservation.slot.bank = bank
    return reservation


def _at(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)


# --- Badges ---


def issue_badge(
    employee: Employee,
    uid: str,
    *,
    actor: str,
    technology: str = Badge.Technology.ISO14443A,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    temporary: bool = False,
    pin: str | None = None,
    now: datetime | None = None,
) -> Badge:
    """Give ``employee`` a new active badge. A UID already active on another badge is refused."""
    now = now or timezone.now()
    with transaction.atomic():
        employee = Employee.objects.select_for_update().get(pk=employee.pk)
        if employee.status == Employee.Status.OFFBOARDED:
            raise ValueError(f"{employee} is offboarded; issue no badges.")
        badge = Badge(
            employee=employee,
            uid=normalize_uid(uid),
            technology=technology,
            is_temporary=temporary,
            valid_from=valid_from or now,
            valid_until=valid_until,
            issued_at=now,
        )
        if pin:
            badge.set_pin(pin)
        badge.full_clean()
        badge.save()
        audit.record(
            "badge.issued",
            actor=actor,
            subject=badge,
            data={"employee": employee.employee_number, "uid": badge.uid, "temporary": temporary},
            at=now,
        )
    return badge


def revoke_badge(
    badge: Badge,
    *,
    actor: str,
    status: str = Badge.Status.REVOKED,
    reason: str = "",
    now: datetime | None = None,
) -> Badge:
    """Revoke a badge (or mark it lost). Takes effect at the next tap at every bank."""
    if status not in (Badge.Status.REVOKED, Badge.Status.LOST):
        raise ValueError("A badge is revoked or lost.")
    now = now or timezone.now()
    with transaction.atomic():
        badge = Badge.objects.select_for_update().get(pk=badge.pk)
        if badge.status != Badge.Status.ACTIVE:
            return badge
        do_revoke_badge(badge, status=status, reason=reason, now=now, actor=actor)
    return badge


def do_revoke_badge(badge: Badge, *, status: str, reason: str, now: datetime, actor: str) -> None:
    badge.status = status
    badge.revoked_at = now
    badge.revoked_reason = reason[:200]
    badge.save(update_fields=["status", "revoked_at", "revoked_reason"])
    audit.record(
        f"badge.{status}",
        actor=actor,
        subject=badge,
        data={"uid": badge.uid, "reason": reason[:200]},
        at=now,
    )
    # The audit record carries it to every bank's snapshot (devices.bankbus), after commit.


# --- Offboarding ---


@dataclass
class OffboardResult:
    employee: Employee
    revoked_badges: list[Badge]
    devices_out: list[Checkout]
    alert: Alert | None
    already_offboarded: bool = False


def offboard_employee(
    employee: Employee, *, actor: str, now: datetime | None = None
) -> OffboardResult:
    """End someone's access everywhere in one step (DESIGN §4.4).

    Marks them offboarded, revokes every badge, ends shift assignments, cancels pending
    reservations and lists the devices still out, with a recovery alert if there are any.
    Running it again changes nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        employee = Employee.objects.select_for_update().get(pk=employee.pk)
        already = employee.status == Employee.Status.OFFBOARDED
        revoked: list[Badge] = []
        for badge in Badge.objects.select_for_update().filter(
            employee=employee, status=Badge.Status.ACTIVE
        ):
            do_revoke_badge(
                badge, status=Badge.Status.REVOKED, reason="offboarded", now=now, actor=actor
            )
            revoked.append(badge)
        _end_assignments(employee, now.date())
        pending = (
            Reservation.objects.select_for_update(of=("self",))
            .select_related("slot__bank", "slot__asset")
            .filter(
                checkout__employee=employee,
                purpose=Reservation.Purpose.TAKE,
                status=Reservation.Status.PENDING,
            )
        )
        for reservation in pending:
            asset_actions.do_end_reservation(
                reservation,
                Reservation.Status.CANCELLED,
                at=now,
                actor=actor,
                data={"reason": "offboarded"},
            )
        devices_out = list(
            Checkout.objects.active()
            .filter(employee=employee)
            .select_related("asset__asset_type", "slot_out__bank")
        )
        if not already:
            employee.status = Employee.Status.OFFBOARDED
            employee.offboarded_at = now
            employee.save(update_fields=["status", "offboarded_at"])
            audit.record(
                "employee.offboarded",
                actor=actor,
                subject=employee,
                data={
                    "badges_revoked": [b.uid for b in revoked],
                    "devices_out": [c.asset.asset_tag for c in devices_out],
                },
                at=now,
            )
        alert = None
        if devices_out:
            alert, _ = raise_alert(
                Alert.Kind.RECOVERY,
                f"recovery:{employee.pk}",
                f"Recover {len(devices_out)} device(s) from {employee.full_name}",
                severity=Alert.Severity.CRITICAL,
                details={"assets": [c.asset.asset_tag for c in devices_out]},
                now=now,
                employee=employee,
                site_id=employee.home_site_id,
            )
    return OffboardResult(employee, revoked, devices_out, alert, already)


def _end_assignments(employee: Employee, today: date) -> None:
    # Assignments that have not started yet go; the others end yesterday (the last full day).
    ShiftAssignment.objects.filter(employee=employee, valid_from__gte=today).delete()
    ShiftAssignment.objects.filter(employee=employee).exclude(valid_until__lt=today).update(
        valid_until=today - timedelta(days=1)
    )


# --- People (used by the admin, the API, SCIM and the CSV import) ---

EMPLOYEE_FIELDS = (
    "employee_number",
    "first_name",
    "last_name",
    "email",
    "department",
    "home_site",
    "external_id",
    "supervisor",
    "user",
)


def _department(value: Department | str | None, *, actor: str, now: datetime) -> Department | None:
    # HR systems and identity providers send a department by name; a new name makes a new one,
    # recorded like one added in the admin (lockerhub.actions.save_row).
    if value is None or isinstance(value, Department):
        return value
    name = value.strip()
    if not name:
        return None
    if len(name) > 120:
        raise ValidationError({"department": "A department name is at most 120 characters."})
    department, created = Department.objects.get_or_create(name=name)
    if created:
        audit.record(
            f"{Department._meta.label_lower}.created",
            actor=actor,
            subject=department,
            data={"name": department.name},
            at=now,
        )
    return department


def _check_number_free(employee_number: str, exclude_pk: int | None = None) -> None:
    taken = Employee.objects.filter(employee_number=employee_number)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ValidationError(
            {"employee_number": f"Employee number {employee_number!r} is taken already."}
        )


def _check_links(employee: Employee) -> None:
    """Refuse (``ValidationError``) a supervisor who is the employee, or a web login that
    belongs to another employee."""
    if employee.pk is not None and employee.supervisor_id == employee.pk:
        raise ValidationError({"supervisor": "Nobody is their own supervisor."})
    if (
        employee.user_id is not None
        and Employee.objects.filter(user_id=employee.user_id).exclude(pk=employee.pk).exists()
    ):
        raise ValidationError({"user": "This login belongs to another employee already."})


def create_employee(
    *,
    employee_number: str,
    first_name: str,
    actor: str,
    last_name: str = "",
    email: str = "",
    department: Department | str | None = None,
    home_site: Site | None = None,
    external_id: str = "",
    supervisor: Employee | None = None,
    user: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> Employee:
    """Add an active employee. A taken employee number is refused (``ValidationError``), as is
    a web login another employee has."""
    now = now or timezone.now()
    with transaction.atomic():
        employee = Employee(
            employee_number=employee_number.strip(),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            email=email.strip(),
            department=_department(department, actor=actor, now=now),
            home_site=home_site,
            external_id=external_id.strip(),
            supervisor=supervisor,
            user=user,
            created_at=now,
        )
        employee.full_clean(validate_unique=False)
        _check_number_free(employee.employee_number)
        _check_links(employee)
        employee.save()
        audit.record(
            "employee.created",
            actor=actor,
            subject=employee,
            data={"employee_number": employee.employee_number, "name": employee.full_name},
            at=now,
        )
    return employee


def update_employee(
    employee: Employee,
    *,
    actor: str,
    active: bool | None = None,
    now: datetime | None = None,
    **changes: object,
) -> Employee:
    """Change someone's details; ``active=False`` offboards them in the same transaction.

    Offboarding is final: ``active=True`` for an offboarded employee is refused.
    """
    unknown = set(changes) - set(EMPLOYEE_FIELDS)
    if unknown:
        raise ValueError(f"Not an employee field: {', '.join(sorted(unknown))}")
    now = now or timezone.now()
    with transaction.atomic():
        employee = Employee.objects.select_for_update().get(pk=employee.pk)
        if active and employee.status == Employee.Status.OFFBOARDED:
            raise ValidationError(
                {"active": "An offboarded employee cannot be reactivated; add a new employee."}
            )
        if "department" in changes:
            changes["department"] = _department(changes["department"], actor=actor, now=now)  # type: ignore[arg-type]
        changed: dict[str, list[str]] = {}
        for name, value in changes.items():
            if isinstance(value, str):
                value = value.strip()
            old = getattr(employee, name)
            if old != value:
                changed[name] = [str(old or ""), str(value or "")]
                setattr(employee, name, value)
        if changed:
            employee.full_clean(validate_unique=False)
            if "employee_number" in changed:
                _check_number_free(employee.employee_number, exclude_pk=employee.pk)
            _check_links(employee)
            employee.save(update_fields=list(changed))
            audit.record("employee.updated", actor=actor, subject=employee, data=changed, at=now)
        if active is False and employee.status != Employee.Status.OFFBOARDED:
            employee = offboard_employee(employee, actor=actor, now=now).employee
    return employee


def deprovision_employee(
    employee: Employee, *, actor: str, now: datetime | None = None
) -> OffboardResult:
    """An identity provider deleted this person: offboard them and hide them from SCIM."""
    now = now or timezone.now()
    with transaction.atomic():
        result = offboard_employee(employee, actor=actor, now=now)
        updated = Employee.objects.filter(pk=employee.pk, scim_deleted_at__isnull=True).update(
            scim_deleted_at=now
        )
        if updated:
            audit.record("employee.scim_deleted", actor=actor, subject=result.employee, at=now)
    return result


# --- Badge lifecycle ---


def replace_badge(
    badge: Badge,
    new_uid: str,
    *,
    actor: str,
    status: str = Badge.Status.LOST,
    reason: str = "",
    technology: str | None = None,
    valid_until: datetime | None = None,
    now: datetime | None = None,
) -> Badge:
    """Revoke (or mark lost) a badge and issue its successor in one transaction.

    The old card is dead at every bank the moment this commits; a PIN carries over, since it
    belongs to the person, not to the card.
    """
    if status not in (Badge.Status.REVOKED, Badge.Status.LOST):
        raise ValueError("A replaced badge is revoked or lost.")
    now = now or timezone.now()
    with transaction.atomic():
        badge = Badge.objects.select_for_update().get(pk=badge.pk)
        if badge.status != Badge.Status.ACTIVE:
            raise ValidationError({"badge": f"Badge {badge.uid} is {badge.status}, not active."})
        do_revoke_badge(badge, status=status, reason=reason or "replaced", now=now, actor=actor)
        successor = issue_badge(
            badge.employee,
            new_uid,
            actor=actor,
            technology=technology or badge.technology,
            valid_from=now,
            valid_until=valid_until,
            now=now,
        )
        if badge.pin_hash:
            successor.pin_hash = badge.pin_hash
            successor.save(update_fields=["pin_hash"])
        audit.record(
            "badge.replaced",
            actor=actor,
            subject=successor,
            data={"old_uid": badge.uid, "new_uid": successor.uid, "old_status": status},
            at=now,
        )
    return successor


def set_badge_pin(
    badge: Badge, pin: str | None, *, actor: str, now: datetime | None = None
) -> Badge:
    """Set (or, with ``None``, clear) the PIN asked for with high-value asset types."""
    now = now or timezone.now()
    with transaction.atomic():
        badge = Badge.objects.select_for_update().get(pk=badge.pk)
        if badge.status != Badge.Status.ACTIVE:
            raise ValidationError({"badge": f"Badge {badge.uid} is {badge.status}, not active."})
        if pin is None:
            badge.pin_hash = ""
        else:
            try:
                badge.set_pin(pin)
            except ValidationError as error:
                raise ValidationError({"pin": error.messages}) from None
        badge.save(update_fields=["pin_hash"])
        # The PIN itself never reaches the audit log.
        audit.record(
            "badge.pin_set" if pin is not None else "badge.pin_cleared",
            actor=actor,
            subject=badge,
            data={"uid": badge.uid},
            at=now,
        )
    return badge


# Of a badge already issued; the holder and the UID stay (another card is another badge), and
# the status changes by revoke_badge, the PIN by set_badge_pin.
BADGE_FIELDS = ("technology", "is_temporary", "valid_from", "valid_until")


def check_badge_change(badge: Badge, changes: Mapping[str, Any]) -> None:
    """Refuse (``ValidationError``) changing ``badge`` (as stored) by ``changes``.

    A badge no longer active stays as it ended, and a validity ends after it starts. The
    action calls this with the badge locked; forms call it beforehand to show refusals as
    field errors.
    """
    if badge.status != Badge.Status.ACTIVE:
        raise ValidationError(
            f"Badge {badge.uid} is {badge.get_status_display().lower()}; it is kept as it "
            "ended. Issue a new badge instead."
        )
    valid_from = changes.get("valid_from", badge.valid_from)
    valid_until = changes.get("valid_until", badge.valid_until)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ValidationError({"valid_until": "A badge's validity has to end after it starts."})


def update_badge(badge: Badge, *, actor: str, now: datetime | None = None, **changes: Any) -> Badge:
    """Change an active badge's technology, temporary flag or validity window.

    Takes effect at the next tap. Only the fields that change are written; the audit record
    has each as ``[old, new]``. Refused (``ValidationError``) as ``check_badge_change`` says,
    and a temporary badge without an expiry. The same values change nothing.
    """
    unknown = set(changes) - set(BADGE_FIELDS)
    if unknown:
        raise ValueError(f"Not a badge field to change: {', '.join(sorted(unknown))}")
    now = now or timezone.now()
    with transaction.atomic():
        badge = (
            Badge.objects.select_for_update(of=("self",))
            .select_related("employee")
            .get(pk=badge.pk)
        )
        changed = {
            name: [getattr(badge, name), value]
            for name, value in changes.items()
            if getattr(badge, name) != value
        }
        if not changed:
            return badge
        check_badge_change(badge, changes)
        for name, (_, value) in changed.items():
            setattr(badge, name, value)
        badge.full_clean(validate_unique=False)
        badge.save(update_fields=list(changed))
        audit.record(
            "badge.updated",
            actor=actor,
            subject=badge,
            data={"uid": badge.uid, "employee": badge.employee.employee_number, **changed},
            at=now,
        )
    return badge


# --- Shift patterns ---

SHIFT_FIELDS = ("site", "name", "days", "start", "end")


def _shift_data(shift: Shift) -> dict[str, object]:
    return {
        "site": shift.site_id,
        "name": shift.name,
        "days": shift.days_display,
        "start": shift.start.isoformat(timespec="minutes"),
        "end": shift.end.isoformat(timespec="minutes"),
    }


def _save_shift(shift: Shift) -> None:
    """Validate and save; a name taken at the site is a field error, whoever wins a race."""
    shift.name = shift.name.strip()
    save_unique(
        shift,
        Shift.objects.filter(site_id=shift.site_id, name=shift.name),
        lambda: ValidationError(
            {"name": f"{shift.site} has a shift called {shift.name!r} already."}
        ),
        validate_constraints=False,
    )


def create_shift(
    *,
    site: Site,
    name: str,
    days: int,
    start: time,
    end: time,
    actor: str,
    now: datetime | None = None,
) -> Shift:
    """Add a shift pattern at a site.

    ``days`` is the weekday bit mask (bit 0 = Monday). Refused (``ValidationError``): a name
    taken at the site, no days, a start equal to the end.
    """
    now = now or timezone.now()
    with transaction.atomic():
        shift = Shift(site=site, name=name, days=days, start=start, end=end)
        _save_shift(shift)
        audit.record("shift.created", actor=actor, subject=shift, data=_shift_data(shift), at=now)
    return shift


def update_shift(
    shift: Shift, *, actor: str, now: datetime | None = None, **changes: object
) -> Shift:
    """Change a shift pattern; everyone assigned to it follows the new times from now on."""
    unknown = set(changes) - set(SHIFT_FIELDS)
    if unknown:
        raise ValueError(f"Not a shift field: {', '.join(sorted(unknown))}")
    now = now or timezone.now()
    with transaction.atomic():
        shift = Shift.objects.select_for_update().select_related("site").get(pk=shift.pk)
        before = _shift_data(shift)
        for name, value in changes.items():
            setattr(shift, name, value.strip() if isinstance(value, str) else value)
        after = _shift_data(shift)
        changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        if changed:
            _save_shift(shift)
            audit.record("shift.updated", actor=actor, subject=shift, data=changed, at=now)
    return shift


def delete_shift(shift: Shift, *, actor: str, now: datetime | None = None) -> None:
    """Remove a shift pattern nobody works any more.

    Refused (``ValidationError``) while an assignment to it is current or still to come:
    deleting would silently take those people's access away, so HR ends or moves them first.
    Assignments that ended before today go with the pattern; the audit log keeps them.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    with transaction.atomic():
        # Locking the row holds off a concurrent assignment (its foreign key needs the row).
        shift = Shift.objects.select_for_update().get(pk=shift.pk)
        current = shift.assignments.exclude(valid_until__lt=today).count()
        if current:
            raise ValidationError(
                f"{current} assignment(s) to {shift.name} are current or still to come; "
                "end them before deleting the shift."
            )
        data = {**_shift_data(shift), "past_assignments": shift.assignments.count()}
        audit.record("shift.deleted", actor=actor, subject=shift, data=data, at=now)
        shift.delete()


# --- Shift assignments ---


def assign_shift(
    employee: Employee,
    shift: Shift,
    *,
    valid_from: date,
    actor: str,
    valid_until: date | None = None,
    now: datetime | None = None,
) -> ShiftAssignment:
    """Put someone on a shift pattern between two dates (inclusive).

    Refused (``ValidationError``) as ``check_shift_assignment`` says.
    """
    now = now or timezone.now()
    with transaction.atomic():
        employee = Employee.objects.select_for_update().get(pk=employee.pk)
        check_shift_assignment(employee, shift, valid_from, valid_until)
        assignment = ShiftAssignment.objects.create(
            employee=employee, shift=shift, valid_from=valid_from, valid_until=valid_until
        )
        audit.record(
            "shift.assigned",
            actor=actor,
            subject=assignment,
            data={
                "employee": employee.employee_number,
                "shift": shift.name,
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat() if valid_until else None,
            },
            at=now,
        )
    return assignment


def assign_shifts(
    employees: list[Employee],
    shift: Shift,
    *,
    valid_from: date,
    actor: str,
    valid_until: date | None = None,
    now: datetime | None = None,
) -> list[ShiftAssignment]:
    """Put many people on one shift pattern at once: all of them, or none.

    Every refusal is collected, so HR sees each person that needs attention in one answer
    (``ValidationError`` with a message per person under ``employees``).
    """
    if not employees:
        raise ValidationError({"employees": "Choose at least one person."})
    if valid_until is not None and valid_until < valid_from:
        raise ValidationError({"valid_until": "The last day comes before the first."})
    problems: list[str] = []
    assignments: list[ShiftAssignment] = []
    with transaction.atomic():
        # Lock in one order so two overlapping batches cannot deadlock.
        for employee in sorted({e.pk: e for e in employees}.values(), key=lambda e: e.pk):
            try:
                with transaction.atomic():
                    assignments.append(
                        assign_shift(
                            employee,
                            shift,
                            valid_from=valid_from,
                            valid_until=valid_until,
                            actor=actor,
                            now=now,
                        )
                    )
            except ValidationError as error:
                problems.extend(error.messages)
        if problems:
            # Leaving the block by exception undoes the assignments already made.
            raise ValidationError({"employees": problems})
    return assignments


def end_shift_assignment(
    assignment: ShiftAssignment, *, actor: str, now: datetime | None = None
) -> ShiftAssignment | None:
    """Stop an assignment: one not yet started goes; a running one ends yesterday.

    Returns the ended assignment, or None when it was removed.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    with transaction.atomic():
        assignment = ShiftAssignment.objects.select_for_update().get(pk=assignment.pk)
        data = {"employee_id": assignment.employee_id, "shift_id": assignment.shift_id}
        if assignment.valid_from >= today:
            audit.record("shift.unassigned", actor=actor, subject=assignment, data=data, at=now)
            assignment.delete()
            return None
        if assignment.valid_until is None or assignment.valid_until >= today:
            assignment.valid_until = today - timedelta(days=1)
            assignment.save(update_fields=["valid_until"])
            audit.record("shift.ended", actor=actor, subject=assignment, data=data, at=now)
    return assignment


# --- Access rules ---

ACCESS_RULE_FIELDS = (
    "name",
    "is_active",
    "require_shift",
    "grace_before_minutes",
    "grace_after_minutes",
    "max_concurrent",
)
# The rule's many-to-many links, each with what the audit log names its members by.
ACCESS_RULE_LINKS: dict[str, str] = {
    "departments": "name",
    "groups": "name",
    "employees": "employee_number",
    "asset_types": "code",
    "sites": "name",
    "banks": "code",
}


def _rule_data(rule: AccessRule) -> dict[str, object]:
    data: dict[str, object] = {name: getattr(rule, name) for name in ACCESS_RULE_FIELDS}
    for link, label in ACCESS_RULE_LINKS.items():
        data[link] = sorted(str(v) for v in getattr(rule, link).values_list(label, flat=True))
    return data


def _save_rule(rule: AccessRule, links: Mapping[str, Any]) -> None:
    """Validate, save and link; a taken name is a field error, whoever wins a race."""
    rule.name = rule.name.strip()
    if "asset_types" in links and not list(links["asset_types"]):
        raise ValidationError({"asset_types": "Name at least one asset type."})
    save_unique(
        rule,
        AccessRule.objects.filter(name=rule.name),
        lambda: ValidationError({"name": f"An access rule called {rule.name!r} exists already."}),
    )
    for link, members in links.items():
        getattr(rule, link).set(list(members))


def create_access_rule(
    *,
    name: str,
    asset_types: Iterable[AssetType],
    actor: str,
    departments: Iterable[Department] = (),
    groups: Iterable[EmployeeGroup] = (),
    employees: Iterable[Employee] = (),
    sites: Iterable[Site] = (),
    banks: Iterable[LockerBank] = (),
    is_active: bool = True,
    require_shift: bool = True,
    grace_before_minutes: int = 15,
    grace_after_minutes: int = 15,
    max_concurrent: int = 1,
    now: datetime | None = None,
) -> AccessRule:
    """Say who (departments, groups, named employees) may take which asset types, where (sites,
    banks; neither means everywhere) and when. Takes effect at the next tap."""
    now = now or timezone.now()
    with transaction.atomic():
        rule = AccessRule(
            name=name,
            is_active=is_active,
            require_shift=require_shift,
            grace_before_minutes=grace_before_minutes,
            grace_after_minutes=grace_after_minutes,
            max_concurrent=max_concurrent,
        )
        _save_rule(
            rule,
            {
                "departments": departments,
                "groups": groups,
                "employees": employees,
                "asset_types": asset_types,
                "sites": sites,
                "banks": banks,
            },
        )
        audit.record(
            "access_rule.created", actor=actor, subject=rule, data=_rule_data(rule), at=now
        )
    return rule


def update_access_rule(
    rule: AccessRule, *, actor: str, now: datetime | None = None, **changes: object
) -> AccessRule:
    """Change a rule; a list given for a link (``departments``, ``banks``…) replaces it whole.

    ``is_active=False`` pauses the rule without losing it. Takes effect at the next tap.
    """
    unknown = set(changes) - set(ACCESS_RULE_FIELDS) - set(ACCESS_RULE_LINKS)
    if unknown:
        raise ValueError(f"Not an access rule field: {', '.join(sorted(unknown))}")
    now = now or timezone.now()
    with transaction.atomic():
        rule = AccessRule.objects.select_for_update().get(pk=rule.pk)
        before = _rule_data(rule)
        links = {k: v for k, v in changes.items() if k in ACCESS_RULE_LINKS}
        for name, value in changes.items():
            if name in ACCESS_RULE_FIELDS:
                setattr(rule, name, value)
        _save_rule(rule, links)
        after = _rule_data(rule)
        changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        if changed:
            audit.record("access_rule.updated", actor=actor, subject=rule, data=changed, at=now)
    return rule


def delete_access_rule(rule: AccessRule, *, actor: str, now: datetime | None = None) -> None:
    """Remove a rule for good; the audit log keeps what it said. Pausing is
    ``update_access_rule(rule, is_active=False)``."""
    now = now or timezone.now()
    with transaction.atomic():
        rule = AccessRule.objects.select_for_update().get(pk=rule.pk)
        audit.record(
            "access_rule.deleted", actor=actor, subject=rule, data=_rule_data(rule), at=now
        )
        rule.delete()


# --- API keys ---


def create_api_key(
    name: str,
    role: str,
    *,
    actor: str,
    scope: str = ApiKey.Scope.API,
    created_by: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Make a key for another system; returns it with its secret, which is shown only once."""
    now = now or timezone.now()
    with transaction.atomic():
        key = ApiKey(
            name=name.strip(), role=role, scope=scope, created_by=created_by, created_at=now
        )
        secret = key.new_secret()
        key.full_clean()
        key.save()
        audit.record(
            "api_key.created",
            actor=actor,
            subject=key,
            data={"name": key.name, "role": role, "scope": scope, "prefix": key.prefix},
            at=now,
        )
    return key, secret


def revoke_api_key(key: ApiKey, *, actor: str, now: datetime | None = None) -> ApiKey:
    """Stop a key working, at once. Revoking twice changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is None:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
            audit.record(
                "api_key.revoked", actor=actor, subject=key, data={"prefix": key.prefix}, at=now
            )
    return key


# --- Shift assignments: checks and changes ---


class Keep(enum.Enum):
    """An argument left out where None means something (an assignment without an end)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def check_shift_assignment(
    employee: Employee,
    shift: Shift,
    valid_from: date,
    valid_until: date | None,
    *,
    assignment: ShiftAssignment | None = None,
) -> None:
    """Refuse (``ValidationError``) putting ``employee`` on ``shift`` for these dates.

    An offboarded person gets no shift, the last day may not come before the first, and
    nobody is on the same shift twice on one day. ``assignment`` is the one being changed,
    which does not count against itself. The actions call this with the employee locked;
    forms call it beforehand to show refusals as field errors.
    """
    if employee.status == Employee.Status.OFFBOARDED:
        raise ValidationError({"employee": f"{employee} is offboarded."})
    if valid_until is not None and valid_until < valid_from:
        raise ValidationError({"valid_until": "The last day comes before the first."})
    if employee.pk is None or shift.pk is None:
        return  # a person being added in the same form has no assignments yet
    overlapping = (
        ShiftAssignment.objects.filter(employee=employee, shift=shift)
        .exclude(valid_until__lt=valid_from)
        .exclude(**({"valid_from__gt": valid_until} if valid_until else {}))
    )
    if assignment is not None:
        overlapping = overlapping.exclude(pk=assignment.pk)
    if overlapping.exists():
        raise ValidationError(
            {"shift": f"{employee} is already on {shift.name} for some of these days."}
        )


def update_shift_assignment(
    assignment: ShiftAssignment,
    *,
    actor: str,
    valid_from: date | Keep = KEEP,
    valid_until: date | Keep | None = KEEP,
    now: datetime | None = None,
) -> ShiftAssignment:
    """Move an assignment's first or last day (``valid_until=None``: no end).

    The person and the shift stay; working another shift is a new assignment. Refused
    (``ValidationError``) as ``check_shift_assignment`` says. The same dates change nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # The employee first, as assign_shift locks it, so two changes for one person cannot
        # both pass the overlap check.
        employee = Employee.objects.select_for_update().get(pk=assignment.employee_id)
        assignment = (
            ShiftAssignment.objects.select_for_update(of=("self",))
            .select_related("shift")
            .get(pk=assignment.pk)
        )
        before = {"valid_from": assignment.valid_from, "valid_until": assignment.valid_until}
        after = {
            "valid_from": before["valid_from"] if valid_from is KEEP else valid_from,
            "valid_until": before["valid_until"] if valid_until is KEEP else valid_until,
        }
        changed = {k: [_day(before[k]), _day(after[k])] for k in before if before[k] != after[k]}
        if not changed:
            return assignment
        check_shift_assignment(
            employee,
            assignment.shift,
            after["valid_from"],
            after["valid_until"],
            assignment=assignment,
        )
        assignment.valid_from = after["valid_from"]
        assignment.valid_until = after["valid_until"]
        assignment.save(update_fields=["valid_from", "valid_until"])
        audit.record(
            "shift.assignment_changed",
            actor=actor,
            subject=assignment,
            data={"employee": employee.employee_number, "shift": assignment.shift.name, **changed},
            at=now,
        )
    return assignment


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None
