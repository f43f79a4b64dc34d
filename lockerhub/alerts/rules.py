"""The alert rules: what raises an alert, when it escalates, when it resolves itself.

Each sweep reads with a fixed number of queries however much history there is, then spends a
fixed number per alert it raises, escalates or resolves (at most ``SWEEP_BATCH`` of each per
run). Sweeps are safe to run twice at once (two beats, a retried task): raising is deduplicated
by the open-alert constraint and a cooldown, escalation and resolution claim their rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from access.models import AccessEvent, ApiKey, Employee, Reason
from assets.models import Checkout, Reservation
from devices.models import LockerBank, Slot
from lockerhub import actions, audit
from lockerhub.alerts import conf, enabled, minutes, tap_key
from lockerhub.alerts.notify import Recipients
from lockerhub.models import Alert


@dataclass
class SweepResult:
    raised: int = 0
    escalated: int = 0
    resolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _raise(result: SweepResult, *args, **kwargs) -> None:
    _, created = actions.raise_alert(*args, **kwargs)
    result.raised += created


# Alerts written per transaction: few commits for a backlog, yet the audit chain's head lock
# (which every badge tap also takes) is never held for long.
CHUNK = 20


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _claim_in_chunks(alerts: QuerySet[Alert], handle: Callable[[Alert], object]) -> None:
    """Call ``handle`` on each alert of ``alerts`` under its row lock, re-checked after locking.

    Rows another sweep holds are skipped; rows that stopped matching meanwhile drop out, since
    the locking query repeats the whole filter.
    """
    ids = list(alerts.values_list("pk", flat=True)[: conf("SWEEP_BATCH")])
    for chunk in _chunks(ids):
        with transaction.atomic():
            for alert in (
                alerts.filter(pk__in=chunk)
                .select_for_update(of=("self",), skip_locked=True)
                .select_related("bank", "slot", "employee__supervisor")
            ):
                handle(alert)


def _resolve_where(result: SweepResult, alerts: QuerySet[Alert], now: datetime) -> None:
    """Resolve the open alerts of ``alerts``."""

    def resolve(alert: Alert) -> None:
        actions.do_resolve(alert, now=now, actor=audit.SYSTEM)
        result.resolved += 1

    _claim_in_chunks(alerts.open(), resolve)


# --- Overdue returns and their escalation ladder ---


def ladder() -> list[tuple[str, timedelta]]:
    return [(role, timedelta(minutes=after)) for role, after in conf("OVERDUE_LADDER")]


def sweep_overdue(now: datetime | None = None) -> SweepResult:
    """Raise an alert for each newly overdue item, climb the ladder, resolve what came back.

    The employee hears at the due time, then the supervisor, then the facility managers
    (``OVERDUE_LADDER``). Acknowledged and snoozed alerts do not climb. An item overdue blocks
    new takes in ``access.actions`` on its own.
    """
    now = now or timezone.now()
    result = SweepResult()
    rungs = ladder()
    recipients = Recipients()
    batch = conf("SWEEP_BATCH")

    _resolve_where(
        result,
        Alert.objects.filter(kind=Alert.Kind.OVERDUE).filter(
            ~Q(checkout__status=Checkout.Status.ACTIVE) | Q(checkout__due_at__gte=now)
        ),
        now,
    )

    if enabled("overdue"):
        # One alert per checkout, ever: an alert resolved by hand while the item is still out
        # stays resolved (snooze is the way to quiet one for a while).
        fresh = (
            Checkout.objects.overdue(now)
            .exclude(Exists(Alert.objects.filter(kind=Alert.Kind.OVERDUE, checkout=OuterRef("pk"))))
            .select_related("employee__supervisor", "asset", "slot_out__bank")
            .order_by("due_at")[:batch]
        )
        for chunk in _chunks(list(fresh)):
            with transaction.atomic():
                for checkout in chunk:
                    _raise_overdue(result, checkout, rungs, now, recipients)

    # Highest rung first, so an alert that waited long jumps straight to the rung it reached.
    for level in range(len(rungs) - 1, 0, -1):
        role, after = rungs[level]

        def escalate(alert: Alert, level: int = level, role: str = role) -> None:
            if level == len(rungs) - 1:
                alert.severity = Alert.Severity.CRITICAL
                alert.save(update_fields=["severity"])
            result.escalated += actions.do_escalate(
                alert, level, [role], now=now, recipients=recipients
            )

        _claim_in_chunks(
            Alert.objects.quiet_at(now).filter(
                kind=Alert.Kind.OVERDUE,
                escalation_level__lt=level,
                checkout__due_at__lte=now - after,
            ),
            escalate,
        )
    return result


def _raise_overdue(
    result: SweepResult,
    checkout: Checkout,
    rungs: list[tuple[str, timedelta]],
    now: datetime,
    recipients: Recipients,
) -> None:
    """One overdue item: raised on the rung it has reached, everyone up to it told."""
    reached = max(i for i, (_, after) in enumerate(rungs) if checkout.due_at + after <= now)
    employee = checkout.employee
    _raise(
        result,
        Alert.Kind.OVERDUE,
        f"overdue:{checkout.pk}",
        f"{checkout.asset.asset_tag} overdue from {employee.full_name}",
        severity=Alert.Severity.CRITICAL
        if reached == len(rungs) - 1 and reached
        else Alert.Severity.WARNING,
        details={
            "asset": checkout.asset.asset_tag,
            "employee_number": employee.employee_number,
            "due_at": checkout.due_at.isoformat(),
        },
        now=now,
        rule="overdue",
        subject=f"checkout:{checkout.pk}",
        email_roles=[role for role, _ in rungs[: reached + 1]],
        recipients=recipients,
        employee=employee,
        checkout=checkout,
        bank=checkout.slot_out.bank,
        site_id=checkout.slot_out.bank.site_id,
        escalation_level=reached,
    )


# --- Suspicious access ---

MISUSE_REASONS = (Reason.BADGE_EXPIRED,)  # revoked, lost, offboarded: raised at the tap itself


def _hours() -> tuple[time, time]:
    opens, closes = conf("SITE_HOURS")
    return time.fromisoformat(opens), time.fromisoformat(closes)


def within_site_hours(local: datetime) -> bool:
    opens, closes = _hours()
    now = local.time()
    if opens <= closes:
        return opens <= now < closes
    return now >= opens or now < closes


def scan_access(now: datetime | None = None) -> SweepResult:
    """Look at recent badge taps, remote opens and checkouts for the suspicious-access rules.

    Each run looks back ``ACCESS_SCAN_MINUTES``; dedup keys and cooldowns make the overlap
    between runs harmless.
    """
    now = now or timezone.now()
    result = SweepResult()
    recipients = Recipients()
    scan_from = now - minutes("ACCESS_SCAN_MINUTES")
    hour_later = timedelta(hours=2)  # longer than the look-back: an event alerts once

    denied = (
        AccessEvent.objects.filter(granted=False, at__gt=scan_from, at__lte=now)
        .filter(reason__in=[*MISUSE_REASONS, Reason.OUTSIDE_SHIFT])
        .select_related("bank", "employee")
        .order_by("at")
    )
    for event in denied:
        bank = event.bank
        if event.reason == Reason.OUTSIDE_SHIFT:
            rule, severity = "outside-shift", Alert.Severity.INFO
            title = f"Tap outside shift at {bank.code}"
            if event.employee is not None:
                title = f"{event.employee.full_name} tapped outside their shift at {bank.code}"
        else:
            rule, severity = "badge-misuse", Alert.Severity.WARNING
            title = f"{Reason(event.reason).label} presented at {bank.code}"
        _raise(
            result,
            Alert.Kind.SUSPICIOUS_ACCESS,
            tap_key(rule, event.uid, bank.code, event.at),
            title,
            severity=severity,
            details={"uid": event.uid, "reason": event.reason, "access_event": event.pk},
            now=now,
            rule=rule,
            subject=f"badge:{event.uid}",
            cooldown=hour_later,
            recipients=recipients,
            bank=bank,
            site_id=bank.site_id,
            employee=event.employee,
        )

    _denied_bursts(result, now, recipients)
    _unusual_volume(result, now, recipients)
    _remote_opens_after_hours(result, now, recipients, scan_from)
    _recovery(result, now, recipients)
    return result


def _denied_bursts(result: SweepResult, now: datetime, recipients: Recipients) -> None:
    window = minutes("DENIED_BURST_MINUTES")
    recent = AccessEvent.objects.filter(granted=False, at__gt=now - window, at__lte=now)
    if enabled("denied-burst-badge"):
        for row in (
            recent.values("uid")
            .annotate(taps=Count("id"), bank_id=Max("bank_id"))
            .filter(taps__gte=conf("DENIED_BURST_BADGE"))
        ):
            bank = LockerBank.objects.get(pk=row["bank_id"])
            _raise(
                result,
                Alert.Kind.SUSPICIOUS_ACCESS,
                f"denied-burst-badge:{row['uid']}",
                f"{row['taps']} denied taps on badge {row['uid']} in {conf('DENIED_BURST_MINUTES')} min",
                details={"uid": row["uid"], "taps": row["taps"]},
                now=now,
                rule="denied-burst-badge",
                subject=f"badge:{row['uid']}",
                cooldown=window,
                recipients=recipients,
                bank=bank,
                site_id=bank.site_id,
            )
    if enabled("denied-burst-bank"):
        for row in (
            recent.values("bank_id", "bank__code", "bank__site_id")
            .annotate(taps=Count("id"))
            .filter(taps__gte=conf("DENIED_BURST_BANK"))
        ):
            _raise(
                result,
                Alert.Kind.SUSPICIOUS_ACCESS,
                f"denied-burst-bank:{row['bank__code']}",
                f"{row['taps']} denied taps at {row['bank__code']} in {conf('DENIED_BURST_MINUTES')} min",
                details={"taps": row["taps"]},
                now=now,
                rule="denied-burst-bank",
                subject=f"bank:{row['bank_id']}",
                cooldown=window,
                recipients=recipients,
                bank_id=row["bank_id"],
                site_id=row["bank__site_id"],
            )


TAKEN = (Checkout.Status.ACTIVE, Checkout.Status.RETURNED)


def _unusual_volume(result: SweepResult, now: datetime, recipients: Recipients) -> None:
    if not enabled("unusual-volume"):
        return
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    days = conf("VOLUME_HISTORY_DAYS")
    busy = dict(
        Checkout.objects.filter(status__in=TAKEN, reserved_at__gte=today, reserved_at__lte=now)
        .values("employee_id")
        .annotate(takes=Count("id"))
        .filter(takes__gte=conf("VOLUME_MIN_TAKES"))
        .values_list("employee_id", "takes")
    )
    if not busy:
        return
    history = dict(
        Checkout.objects.filter(
            status__in=TAKEN,
            employee_id__in=busy,
            reserved_at__gte=today - timedelta(days=days),
            reserved_at__lt=today,
        )
        .values("employee_id")
        .annotate(takes=Count("id"))
        .values_list("employee_id", "takes")
    )
    for employee in Employee.objects.filter(pk__in=busy).select_related("home_site"):
        takes = busy[employee.pk]
        usual = history.get(employee.pk, 0) / days
        if takes < conf("VOLUME_FACTOR") * usual:
            continue
        _raise(
            result,
            Alert.Kind.SUSPICIOUS_ACCESS,
            f"unusual-volume:{employee.pk}:{today:%Y%m%d}",
            f"{employee.full_name} took {takes} devices today (usually {usual:.1f} a day)",
            details={"takes_today": takes, "daily_average": round(usual, 2), "days": days},
            now=now,
            rule="unusual-volume",
            subject=f"employee:{employee.pk}",
            recipients=recipients,
            employee=employee,
            site_id=employee.home_site_id,
        )


def _remote_opens_after_hours(
    result: SweepResult, now: datetime, recipients: Recipients, scan_from: datetime
) -> None:
    if not enabled("remote-open-after-hours"):
        return
    opens = Reservation.objects.filter(
        purpose=Reservation.Purpose.REMOTE, created_at__gt=scan_from, created_at__lte=now
    ).select_related("slot__bank__site", "requested_by")
    after_hours = [
        r for r in opens if not within_site_hours(r.created_at.astimezone(r.slot.bank.site.tz))
    ]
    key_names = _api_key_names(after_hours)
    for reservation in after_hours:
        slot = reservation.slot
        bank = slot.bank
        local = reservation.created_at.astimezone(bank.site.tz)
        who = _caller(reservation, key_names)
        _raise(
            result,
            Alert.Kind.SUSPICIOUS_ACCESS,
            f"remote-open-after-hours:{reservation.pk}",
            f"{who} opened door {slot.number} at {bank.code} remotely at {local:%H:%M}",
            details={"reason": reservation.reason, "local_time": local.isoformat()},
            now=now,
            rule="remote-open-after-hours",
            subject=f"bank:{bank.pk}",
            cooldown=timedelta(days=1),
            recipients=recipients,
            bank=bank,
            slot=slot,
            site_id=bank.site_id,
        )


def _api_key_names(reservations: list[Reservation]) -> dict[int, str]:
    """The names of the API keys that asked for ``reservations``, by key id (one query)."""
    key_ids = {_api_key_id(r.requested_by_actor) for r in reservations} - {None}
    return dict(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", "name"))


def _caller(reservation: Reservation, key_names: dict[int, str]) -> str:
    """Who asked for a remote open, in words: a user, an API key, or the actor on record."""
    if reservation.requested_by is not None:
        return reservation.requested_by.get_username()
    key_id = _api_key_id(reservation.requested_by_actor)
    if key_id is None:
        return reservation.requested_by_actor or "someone"  # e.g. a user since removed
    if key_id in key_names:
        return f"API key {key_names[key_id]} (#{key_id})"
    return f"API key #{key_id}"


def _api_key_id(actor: str) -> int | None:
    """The key in an ``api-key:<id>`` actor (``lockerhub.rest.actor_for_request``)."""
    kind, _, ident = actor.partition(":")
    return int(ident) if kind == "api-key" and ident.isdigit() else None


def _recovery(result: SweepResult, now: datetime, recipients: Recipients) -> None:
    # Offboarding raises this at once; the sweep also catches people offboarded some other way
    # (status edited, SCIM) and resolves the alert when the last device is back.
    out = (
        Checkout.objects.active()
        .filter(employee__status=Employee.Status.OFFBOARDED)
        .values("employee_id")
        .annotate(devices=Count("id"))
    )
    holding = {row["employee_id"]: row["devices"] for row in out}
    _resolve_where(
        result,
        Alert.objects.filter(kind=Alert.Kind.RECOVERY).exclude(employee_id__in=holding),
        now,
    )
    if not enabled("recovery") or not holding:
        return
    alerted = set(
        Alert.objects.open()
        .filter(kind=Alert.Kind.RECOVERY, employee_id__in=holding)
        .values_list("employee_id", flat=True)
    )
    for employee in Employee.objects.filter(pk__in=set(holding) - alerted):
        _raise(
            result,
            Alert.Kind.RECOVERY,
            f"recovery:{employee.pk}",
            f"Recover {holding[employee.pk]} device(s) from {employee.full_name}",
            severity=Alert.Severity.CRITICAL,
            now=now,
            rule="recovery",
            cooldown=timedelta(days=1),
            recipients=recipients,
            employee=employee,
            site_id=employee.home_site_id,
        )


# --- Door and bank faults ---


@dataclass
class Condition:
    title: str
    severity: str
    subjects: dict


def _sync(
    result: SweepResult,
    kind: str,
    rule: str,
    current: dict[str, Condition],
    now: datetime,
    recipients: Recipients,
) -> None:
    """Raise an alert for each condition that holds and resolve the open ones that no longer do."""
    open_keys = set(Alert.objects.open().filter(rule=rule).values_list("dedup_key", flat=True))
    gone = open_keys - set(current)
    if gone:
        _resolve_where(result, Alert.objects.filter(dedup_key__in=gone), now)
    if not enabled(rule):
        return
    for key in sorted(set(current) - open_keys)[: conf("SWEEP_BATCH")]:
        condition = current[key]
        _raise(
            result,
            kind,
            key,
            condition.title,
            severity=condition.severity,
            now=now,
            rule=rule,
            cooldown=minutes("CONDITION_COOLDOWN_MINUTES"),
            recipients=recipients,
            **condition.subjects,
        )


def _slot_subjects(slot: Slot) -> dict:
    return {"bank": slot.bank, "slot": slot, "site_id": slot.bank.site_id}


def sweep_faults(now: datetime | None = None) -> SweepResult:
    """Bank offline, charge faults, slots that never charge, sensors that disagree, doors held open."""
    now = now or timezone.now()
    result = SweepResult()
    recipients = Recipients()

    offline = LockerBank.objects.filter(is_online=False, last_heartbeat_at__isnull=False)
    _sync(
        result,
        Alert.Kind.BANK_OFFLINE,
        "bank-offline",
        {
            f"bank-offline:{bank.code}": Condition(
                f"Bank {bank.code} is offline",
                Alert.Severity.CRITICAL,
                {"bank": bank, "site_id": bank.site_id},
            )
            for bank in offline
        },
        now,
        recipients,
    )

    slots = Slot.objects.select_related("bank")
    _sync(
        result,
        Alert.Kind.CHARGE_FAULT,
        "charge-fault",
        {
            f"charge-fault:{slot.bank.code}:{slot.number}": Condition(
                f"Charge fault at {slot.bank.code} door {slot.number}",
                Alert.Severity.WARNING,
                _slot_subjects(slot),
            )
            for slot in slots.filter(charge_state=Slot.ChargeState.FAULT)
        },
        now,
        recipients,
    )

    stuck = slots.filter(
        has_charger=True,
        present=True,
        asset__isnull=False,
        charge_state__in=[Slot.ChargeState.CHARGING, Slot.ChargeState.PRESENT_NOT_CHARGING],
        charge_state_since__lte=now - minutes("NEVER_CHARGED_MINUTES"),
    )
    _sync(
        result,
        Alert.Kind.CHARGE_FAULT,
        "charge-stuck",
        {
            f"charge-stuck:{slot.bank.code}:{slot.number}": Condition(
                f"Device at {slot.bank.code} door {slot.number} has not charged "
                f"in {conf('NEVER_CHARGED_MINUTES')} min",
                Alert.Severity.WARNING,
                _slot_subjects(slot),
            )
            for slot in stuck
        },
        now,
        recipients,
    )

    mismatched = (
        slots.filter(
            door_state=Slot.DoorState.CLOSED,
            asset__isnull=False,
            present=False,
            state_changed_at__lte=now - timedelta(seconds=conf("SENSOR_MISMATCH_SECONDS")),
        )
        .exclude(Exists(Reservation.objects.active().filter(slot=OuterRef("pk"))))
        .select_related("asset")
    )
    _sync(
        result,
        Alert.Kind.SENSOR_MISMATCH,
        "sensor-mismatch",
        {
            f"sensor-mismatch:{slot.bank.code}:{slot.number}": Condition(
                f"{slot.bank.code} door {slot.number} should hold {slot.asset.asset_tag} "
                "but its sensor says empty",
                Alert.Severity.CRITICAL,
                _slot_subjects(slot),
            )
            for slot in mismatched
        },
        now,
        recipients,
    )

    # Held-open doors are raised by devices.tasks.flag_held_open_doors; they resolve here
    # once the door they name has closed (the key carries the opening's time).
    still_open = {
        f"door-held-open:{slot.bank.code}:{slot.number}:{slot.door_opened_at.isoformat()}"
        for slot in slots.filter(door_state=Slot.DoorState.OPEN, door_opened_at__isnull=False)
    }
    closed = (
        set(
            Alert.objects.open()
            .filter(kind=Alert.Kind.DOOR_HELD_OPEN)
            .values_list("dedup_key", flat=True)
        )
        - still_open
    )
    if closed:
        _resolve_where(result, Alert.objects.filter(dedup_key__in=closed), now)
    return result
