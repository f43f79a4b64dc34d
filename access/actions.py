"""Every state change about people and access: the badge decision, badges, offboarding.

``present_badge`` is the decision path (DESIGN §4.1-4.3). It reads only the database: no
Redis, no Celery, so a bank keeps working when the live fan-out is down.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from access.models import (
    REASON_MESSAGES,
    AccessEvent,
    AccessRule,
    Badge,
    Employee,
    Reason,
    ShiftAssignment,
    normalize_uid,
)
from access.queries import assignments_around, shift_window
from assets import actions as asset_actions
from assets.models import AssetType, Checkout, Reservation
from devices.models import LockerBank, Slot
from lockerhub import audit, events
from lockerhub.actions import raise_alert
from lockerhub.models import Alert

logger = logging.getLogger(__name__)


class Intent(enum.StrEnum):
    AUTO = "auto"  # return if something is out, otherwise take
    TAKE = "take"
    RETURN = "return"


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


class Denied(Exception):
    def __init__(self, reason: Reason):
        self.reason = reason


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
    """A badge was presented at ``bank``: decide, reserve a slot if granted, record everything."""
    now = now or timezone.now()
    uid = normalize_uid(uid)
    actor = actor or audit.actor_for_bank(bank.code)
    with transaction.atomic():
        badge = _select_badge(uid, now)
        employee = badge.employee if badge else None
        if employee is not None:
            # Serialise taps of one person (two banks at once must not exceed the limit).
            employee = Employee.objects.select_for_update().get(pk=employee.pk)
        try:
            reservation, reason = _decide(
                bank, uid, badge, employee, now, intent, pin, damaged, damage_note
            )
            granted = True
        except Denied as denied:
            reservation, reason, granted = None, denied.reason, False
        access_event = AccessEvent.objects.create(
            bank=bank,
            at=now,
            uid=uid,
            badge=badge,
            employee=employee,
            granted=granted,
            reason=reason,
            slot=reservation.slot if reservation else None,
            checkout=reservation.checkout if reservation else None,
        )
        if reservation is not None:
            message = _granted_message(reservation, employee)
        else:
            message = _message(reason, employee)
        result = TapResult(granted, reason, message, employee, badge, reservation, access_event)
        audit.record(
            "badge.presented",
            actor=actor,
            subject=access_event,
            data={
                "bank": bank.code,
                "uid": uid,
                "granted": granted,
                "reason": str(reason),
                "slot": reservation.slot.number if reservation else None,
            },
            at=now,
        )
        events.broadcast(events.bank_group(bank.code), "tap", result.as_kiosk_payload())
        if reason in (Reason.BADGE_REVOKED, Reason.BADGE_LOST, Reason.EMPLOYEE_OFFBOARDED):
            raise_alert(
                Alert.Kind.SUSPICIOUS_ACCESS,
                f"badge-misuse:{uid}:{bank.code}:{now:%Y%m%d%H}",
                f"{reason.label} presented at {bank.code}",
                severity=Alert.Severity.WARNING,
                details={"uid": uid, "reason": str(reason)},
                now=now,
                bank=bank,
                site_id=bank.site_id,
                employee=employee,
            )
    return result


def _granted_message(reservation: Reservation, employee: Employee) -> str:
    asset = reservation.checkout.asset
    if reservation.purpose == Reservation.Purpose.TAKE:
        return f"Hi {employee.first_name} — door {reservation.slot.number} is open, take {asset.asset_type.name.lower()} {asset.asset_tag}"
    return f"Thanks {employee.first_name} — door {reservation.slot.number} is open, put {asset.asset_tag} back and close the door"


def _select_badge(uid: str, now: datetime) -> Badge | None:
    """The badge this UID stands for: the active one if any, otherwise the most recent."""
    badges = list(
        Badge.objects.filter(uid=uid)
        .select_related("employee__department")
        .order_by("-issued_at")[:5]
    )
    for badge in badges:
        if badge.status == Badge.Status.ACTIVE:
            return badge
    return badges[0] if badges else None


def _check_badge(badge: Badge | None, employee: Employee | None, now: datetime) -> None:
    if badge is None:
        raise Denied(Reason.BADGE_UNKNOWN)
    if badge.status == Badge.Status.REVOKED:
        raise Denied(
            Reason.EMPLOYEE_OFFBOARDED
            if employee.status == Employee.Status.OFFBOARDED
            else Reason.BADGE_REVOKED
        )
    if badge.status == Badge.Status.LOST:
        raise Denied(Reason.BADGE_LOST)
    if badge.status == Badge.Status.EXPIRED or (
        badge.valid_until is not None and badge.valid_until <= now
    ):
        raise Denied(Reason.BADGE_EXPIRED)
    if badge.valid_from > now:
        raise Denied(Reason.BADGE_NOT_YET_VALID)
    if employee.status == Employee.Status.OFFBOARDED:
        raise Denied(Reason.EMPLOYEE_OFFBOARDED)
    if employee.status == Employee.Status.SUSPENDED:
        raise Denied(Reason.EMPLOYEE_SUSPENDED)


def _decide(
    bank: LockerBank,
    uid: str,
    badge: Badge | None,
    employee: Employee | None,
    now: datetime,
    intent: Intent,
    pin: str | None,
    damaged: bool,
    damage_note: str,
) -> tuple[Reservation, Reason]:
    _check_badge(badge, employee, now)
    open_checkouts = list(
        Checkout.objects.open()
        .filter(employee=employee)
        .select_related("asset__asset_type")
        .order_by("reserved_at")
    )
    pending_take = next((c for c in open_checkouts if c.status == Checkout.Status.RESERVED), None)
    active = [c for c in open_checkouts if c.status == Checkout.Status.ACTIVE]

    if pending_take is not None and pending_take.slot_out.bank_id == bank.pk:
        # A second tap while the door waits: show the same door again, no new reservation.
        return pending_take.reservations.active().select_related("slot").get(), Reason.GRANTED_TAKE

    if active and intent in (Intent.AUTO, Intent.RETURN):
        # Return the item due first.
        checkout = min(active, key=lambda c: c.due_at or c.reserved_at)
        reservation = asset_actions.do_reserve_return(
            checkout=checkout, bank=bank, now=now, damaged=damaged, damage_note=damage_note
        )
        if reservation is None:
            raise Denied(Reason.NO_RETURN_SLOT)
        audit_data = {"slot": reservation.slot.number, "damaged": damaged}
        audit.record(
            "return.reserved",
            actor=audit.actor_for_bank(bank.code),
            subject=checkout,
            data=audit_data,
            at=now,
        )
        return reservation, Reason.GRANTED_RETURN
    if intent == Intent.RETURN:
        raise Denied(Reason.NO_RETURN_SLOT)

    rules = list(
        AccessRule.objects.for_employee(employee).at_bank(bank).prefetch_related("asset_types")
    )
    if not rules:
        raise Denied(Reason.NOT_PERMITTED)

    assignments = assignments_around(employee, now) if any(r.require_shift for r in rules) else []
    in_window: list[tuple[AccessRule, datetime | None]] = []
    for rule in rules:
        if not rule.require_shift:
            in_window.append((rule, None))
            continue
        window = shift_window(assignments, now, rule.grace_before, rule.grace_after)
        if window is not None:
            in_window.append((rule, window[2]))
    if not in_window:
        raise Denied(Reason.OUTSIDE_SHIFT)

    if any(c.is_overdue(now) for c in active):
        raise Denied(Reason.ITEM_OVERDUE)

    held_by_type: dict[int, int] = {}
    for checkout in open_checkouts:
        held_by_type[checkout.asset.asset_type_id] = (
            held_by_type.get(checkout.asset.asset_type_id, 0) + 1
        )
    allowed: dict[int, datetime | None] = {}
    for rule, shift_end in in_window:
        type_ids = {t.pk for t in rule.asset_types.all()}
        if sum(held_by_type.get(t, 0) for t in type_ids) >= rule.max_concurrent:
            continue
        for type_id in type_ids:
            allowed[type_id] = _later(allowed.get(type_id, shift_end), shift_end)
    if not allowed:
        raise Denied(Reason.LIMIT_REACHED)

    pin_types = set(
        AssetType.objects.filter(pk__in=allowed, requires_pin=True).values_list("pk", flat=True)
    )
    pin_ok = pin is not None and badge.check_pin(pin)
    usable = set(allowed) - pin_types if not pin_ok else set(allowed)
    reservation = (
        asset_actions.do_reserve_take(
            employee=employee, badge=badge, bank=bank, asset_type_ids=usable, now=now
        )
        if usable
        else None
    )
    # Only a PIN-protected device is left: ask for (or reject) the PIN rather than say "none".
    if (
        reservation is None
        and pin_types
        and not pin_ok
        and Slot.objects.dispensable(bank, pin_types).exists()
    ):
        raise Denied(Reason.PIN_REQUIRED if pin is None else Reason.PIN_INCORRECT)
    if reservation is None:
        raise Denied(Reason.NO_ASSET_AVAILABLE)
    checkout = reservation.checkout
    checkout.shift_end_at = allowed[checkout.asset.asset_type_id]
    checkout.due_at = asset_actions.due_at_for(
        checkout.asset.asset_type, now, checkout.shift_end_at
    )
    checkout.save(update_fields=["shift_end_at", "due_at"])
    audit.record(
        "take.reserved",
        actor=audit.actor_for_bank(bank.code),
        subject=checkout,
        data={"slot": reservation.slot.number, "asset": checkout.asset.asset_tag},
        at=now,
    )
    return reservation, Reason.GRANTED_TAKE


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    # None means "no shift bound" (a rule without shift), which is the latest of all.
    if a is None or b is None:
        return None
    return max(a, b)


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
    # Workers cache nothing that grants access, but tell them anyway so a kiosk can show it.
    events.broadcast(events.ALL_DEVICES_GROUP, "badge.revoked", {"uid": badge.uid})


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
