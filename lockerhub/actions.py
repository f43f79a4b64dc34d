"""Cross-cutting actions: alerts and their delivery, and the rows with no actions of their own.

An alert is raised once per cause (its dedup key), shown live, e-mailed and sent to webhooks.
Every notification is first written as an ``AlertDelivery`` row in the alert's own
transaction; Celery sends it after commit, claiming the row by a conditional update, so a task
that runs twice, or a second beat, sends nothing twice (docs/alerts.md).

Reference rows that carry no rules of their own (sites, departments, employee groups, asset
types, webhook endpoints) are saved and deleted by ``save_row`` and ``delete_row``, audited as
``<app_label.model>.created``, ``.updated`` and ``.deleted``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models import F, Field, Model, ProtectedError, Q, QuerySet, RestrictedError
from django.db.models.deletion import Collector
from django.utils import timezone

from lockerhub import audit, events
from lockerhub.alerts import ALL_ALERTS_GROUP, conf, enabled, notify, site_alerts_group
from lockerhub.models import Alert, AlertDelivery, WebhookEndpoint, new_webhook_secret

logger = logging.getLogger(__name__)

MAX_SNOOZE = timedelta(days=7)


def raise_alert(
    kind: str,
    dedup_key: str,
    title: str,
    *,
    severity: str = Alert.Severity.WARNING,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
    rule: str | None = None,
    subject: str | None = None,
    cooldown: timedelta | None = None,
    email_roles: list[str] | None = None,
    recipients: notify.Recipients | None = None,
    **subjects: Any,
) -> tuple[Alert | None, bool]:
    """Open an alert for a cause unless one is already open for it. Returns (alert, created).

    ``rule`` defaults to the key's first part (``door-forced:BANK-A:3:…`` → ``door-forced``).
    Nothing is raised when the rule is switched off, when the same key was raised within
    ``cooldown`` (so an alert resolved by hand does not come straight back), or when the rule
    already raised ``RATE_LIMIT`` alerts about this subject recently: then the newest open one
    counts the suppressed raise instead. The alert is then None unless one is open.
    """
    now = now or timezone.now()
    rule = rule or dedup_key.split(":", 1)[0]
    if not enabled(rule):
        return None, False
    subject = subject or _subject_of(dedup_key, subjects)
    with transaction.atomic():
        existing = Alert.objects.open().filter(dedup_key=dedup_key).first()
        if existing is not None:
            return existing, False
        if cooldown is not None:
            recent = (
                Alert.objects.filter(dedup_key=dedup_key, opened_at__gt=now - cooldown)
                .order_by("-opened_at")
                .first()
            )
            if recent is not None:
                return recent, False
        window = timedelta(minutes=conf("RATE_LIMIT_MINUTES"))
        same_subject = Alert.objects.filter(rule=rule, subject=subject)
        if same_subject.filter(opened_at__gt=now - window).count() >= conf("RATE_LIMIT"):
            newest = same_subject.open().order_by("-opened_at").first()
            if newest is not None:
                Alert.objects.filter(pk=newest.pk).update(
                    suppressed_count=F("suppressed_count") + 1
                )
            logger.info("alert %s rate-limited (rule %s, subject %s)", dedup_key, rule, subject)
            return newest, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    kind=kind,
                    dedup_key=dedup_key,
                    title=title[:200],
                    severity=severity,
                    details=details or {},
                    opened_at=now,
                    rule=rule,
                    subject=subject[:120],
                    **subjects,
                )
        except IntegrityError:  # raised concurrently by someone else: theirs stands
            return Alert.objects.open().get(dedup_key=dedup_key), False
        audit.record(
            "alert.raised",
            actor=audit.SYSTEM,
            subject=alert,
            data={"kind": kind, "rule": rule, "dedup_key": dedup_key},
            at=now,
        )
        roles = email_roles if email_roles is not None else notify.email_roles(rule)
        _notify(alert, "alert.raised", roles, now, recipients)
        _broadcast(alert, "alert.raised")
        return alert, True


def _subject_of(dedup_key: str, subjects: dict[str, Any]) -> str:
    for name in ("employee", "slot", "bank", "site"):
        value = subjects.get(name)
        if value is not None:
            return f"{name}:{value.pk}"
        value = subjects.get(f"{name}_id")
        if value is not None:
            return f"{name}:{value}"
    return dedup_key


def do_escalate(
    alert: Alert, level: int, roles: list[str], *, now: datetime, recipients: notify.Recipients
) -> bool:
    """Move an alert up its ladder to ``level`` and tell that rung. Claimed by a conditional
    update, so two sweeps escalate it once. Must run inside the caller's transaction."""
    claimed = Alert.objects.filter(
        pk=alert.pk, resolved_at__isnull=True, escalation_level__lt=level
    ).update(escalation_level=level)
    if claimed != 1:
        return False
    alert.escalation_level = level
    audit.record(
        "alert.escalated", actor=audit.SYSTEM, subject=alert, data={"level": level}, at=now
    )
    _notify(alert, "alert.escalated", roles, now, recipients)
    _broadcast(alert, "alert.changed", change="escalated")
    return True


def resolve_alerts(
    dedup_key: str, *, actor: str = audit.SYSTEM, now: datetime | None = None
) -> int:
    """Resolve the open alert for a cause that has gone away. Returns how many were resolved."""
    now = now or timezone.now()
    with transaction.atomic():
        alerts = list(
            Alert.objects.open()
            .select_for_update(of=("self",))
            .select_related("bank", "slot")
            .filter(dedup_key=dedup_key)
        )
        for alert in alerts:
            do_resolve(alert, now=now, actor=actor)
        return len(alerts)


def do_resolve_gone(alerts: QuerySet[Alert], *, now: datetime, reason: str) -> int:
    """Resolve, as the system, the open alerts of ``alerts`` whose cause the caller just saw go
    away (an item returned, a bank back online). Returns how many were resolved.

    Must run inside the caller's transaction, ideally before the caller's own audit record:
    the sweeps lock alert rows before the audit chain's head, and taking them in the other
    order could deadlock with one.
    """
    locked = list(alerts.open().select_for_update(of=("self",)).select_related("bank", "slot"))
    for alert in locked:
        do_resolve(alert, now=now, actor=audit.SYSTEM, reason=reason)
    return len(locked)


def do_resolve(
    alert: Alert,
    *,
    now: datetime,
    actor: str,
    user: AbstractBaseUser | None = None,
    reason: str | None = None,
) -> None:
    """Resolve a locked, open alert. Must run inside the caller's transaction."""
    alert.resolved_at = now
    alert.resolved_by = user
    alert.save(update_fields=["resolved_at", "resolved_by"])
    audit.record(
        "alert.resolved",
        actor=actor,
        subject=alert,
        data={"reason": reason} if reason else None,
        at=now,
    )
    _notify(alert, "alert.resolved", [], now, None)
    _broadcast(alert, "alert.changed", change="resolved")


# --- What people do with an alert ---


def check_can_manage(user: AbstractBaseUser | AnonymousUser) -> None:
    """Refuse anyone without ``lockerhub.acknowledge_alert`` (the Supervisors group has it)."""
    if not user.is_authenticated or not user.has_perm("lockerhub.acknowledge_alert"):
        raise PermissionDenied("You may not acknowledge, snooze or resolve alerts.")


def _locked_open(alert: Alert) -> Alert:
    locked = (
        Alert.objects.select_for_update(of=("self",))
        .select_related("bank", "slot")
        .get(pk=alert.pk)
    )
    if locked.resolved_at is not None:
        raise ValidationError("This alert is resolved already.")
    return locked


def acknowledge_alert(
    alert: Alert,
    *,
    user: AbstractBaseUser | AnonymousUser,
    actor: str | None = None,
    now: datetime | None = None,
) -> Alert:
    """Someone is on it: the alert stays open but escalates no further. Repeating it changes nothing.

    ``user`` may be an API key's caller; then ``actor`` names the key (``audit.caller``).
    """
    check_can_manage(user)
    stored_user, actor = audit.caller(user, actor)
    now = now or timezone.now()
    with transaction.atomic():
        alert = _locked_open(alert)
        if alert.acknowledged_at is not None:
            return alert
        alert.acknowledged_at = now
        alert.acknowledged_by = stored_user
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        audit.record("alert.acknowledged", actor=actor, subject=alert, at=now)
        _notify(alert, "alert.acknowledged", [], now, None)
        _broadcast(alert, "alert.changed", change="acknowledged")
    return alert


def snooze_alert(
    alert: Alert,
    *,
    user: AbstractBaseUser | AnonymousUser,
    until: datetime,
    actor: str | None = None,
    now: datetime | None = None,
) -> Alert:
    """Quiet an alert until ``until`` (at most a week ahead): no escalation, no new e-mail."""
    check_can_manage(user)
    _, actor = audit.caller(user, actor)
    now = now or timezone.now()
    if until.tzinfo is None:
        raise ValidationError({"until": "A snooze needs a time with its time zone."})
    if not now < until <= now + MAX_SNOOZE:
        raise ValidationError({"until": "Snooze until a time in the next 7 days."})
    with transaction.atomic():
        alert = _locked_open(alert)
        alert.snoozed_until = until
        alert.save(update_fields=["snoozed_until"])
        audit.record(
            "alert.snoozed",
            actor=actor,
            subject=alert,
            data={"until": until},
            at=now,
        )
        _broadcast(alert, "alert.changed", change="snoozed")
    return alert


def resolve_alert(
    alert: Alert,
    *,
    user: AbstractBaseUser | AnonymousUser,
    actor: str | None = None,
    now: datetime | None = None,
) -> Alert:
    """A person (or an integration's key) closes the alert. A cause that persists is raised
    again after its cooldown."""
    check_can_manage(user)
    stored_user, actor = audit.caller(user, actor)
    now = now or timezone.now()
    with transaction.atomic():
        alert = _locked_open(alert)
        do_resolve(alert, now=now, actor=actor, user=stored_user)
    return alert


# --- Notifications and their delivery ---


def _broadcast(alert: Alert, event_type: str, change: str | None = None) -> None:
    payload = alert.as_event()
    if change is not None:
        payload["change"] = change
    groups = [ALL_ALERTS_GROUP]
    if alert.site_id:
        groups.append(site_alerts_group(alert.site_id))
    if alert.bank_id:
        groups.append(events.bank_group(alert.bank.code))
    for group in groups:
        events.broadcast(group, event_type, payload)


def _notify(
    alert: Alert,
    event: str,
    roles: list[str],
    now: datetime,
    recipients: notify.Recipients | None,
) -> None:
    """Plan the deliveries of one alert event (webhooks always, e-mail to ``roles``) and send
    them after commit. Planning the same event twice makes no second row (unique key)."""
    payload = {"event": event, "at": now.isoformat(), "alert": alert.as_event()}
    step = alert.escalation_level if event == "alert.escalated" else 0
    planned = []
    recipients = recipients or notify.Recipients()
    for endpoint in recipients.webhooks():
        if endpoint.wants(alert):
            planned.append(
                AlertDelivery(
                    key=f"{alert.pk}:{event}:{step}:webhook:{endpoint.pk}",
                    alert=alert,
                    event=event,
                    channel=AlertDelivery.Channel.WEBHOOK,
                    endpoint=endpoint,
                    recipient=endpoint.url,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
    if roles:
        for address in recipients.for_roles(alert, roles):
            planned.append(
                AlertDelivery(
                    key=f"{alert.pk}:{event}:{step}:email:{address.lower()}"[:300],
                    alert=alert,
                    event=event,
                    channel=AlertDelivery.Channel.EMAIL,
                    recipient=address,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
    if not planned:
        return
    AlertDelivery.objects.bulk_create(planned, ignore_conflicts=True)
    keys = [d.key for d in planned]
    transaction.on_commit(lambda: enqueue_deliveries(keys=keys))


def enqueue_deliveries(*, keys: list[str] | None = None, ids: list[int] | None = None) -> None:
    """Hand deliveries to Celery. A failed enqueue is harmless: ``redeliver`` picks them up."""
    from lockerhub.tasks import deliver_alert

    if keys is not None:
        ids = list(
            AlertDelivery.objects.filter(
                key__in=keys, status=AlertDelivery.Status.PENDING
            ).values_list("pk", flat=True)
        )
    for delivery_id in ids or []:
        try:
            deliver_alert.delay(delivery_id)
        except Exception:
            logger.warning("delivery %s not enqueued; the redeliver sweep will", delivery_id)


@dataclass
class DeliveryOutcome:
    status: str  # "sent", "retry", "failed" or "skipped" (someone else holds or finished it)
    retry_in: int | None = None


def _claimable(now: datetime) -> Q:
    # Pending and due, or claimed by a worker whose lease ran out (killed mid-send).
    return Q(status=AlertDelivery.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=AlertDelivery.Status.SENDING, claimed_until__lt=now
    )


def deliver(delivery_id: int, *, now: datetime | None = None) -> DeliveryOutcome:
    """Send one delivery if it is ours to send, and record what happened.

    The claim (pending → sending, with a lease) is a conditional update: of two workers given
    the same id, one sends. Sending happens outside any transaction.
    """
    now = now or timezone.now()
    lease = timedelta(seconds=conf("DELIVERY_LEASE_SECONDS"))
    claimed = AlertDelivery.objects.filter(_claimable(now), pk=delivery_id).update(
        status=AlertDelivery.Status.SENDING,
        claimed_until=now + lease,
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return DeliveryOutcome("skipped")
    delivery = AlertDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    mine = AlertDelivery.objects.filter(
        pk=delivery_id, status=AlertDelivery.Status.SENDING, attempts=delivery.attempts
    )
    try:
        response_status = notify.send(delivery)
    except notify.DeliveryError as error:
        if delivery.attempts >= conf("DELIVERY_MAX_ATTEMPTS"):
            mine.update(
                status=AlertDelivery.Status.FAILED,
                claimed_until=None,
                response_status=error.status,
                last_error=str(error)[:500],
            )
            logger.warning("delivery %s failed for good: %s", delivery_id, error)
            return DeliveryOutcome("failed")
        backoff = min(
            conf("DELIVERY_BACKOFF_SECONDS") * 2 ** (delivery.attempts - 1),
            conf("DELIVERY_BACKOFF_MAX_SECONDS"),
        )
        mine.update(
            status=AlertDelivery.Status.PENDING,
            claimed_until=None,
            next_attempt_at=now + timedelta(seconds=backoff),
            response_status=error.status,
            last_error=str(error)[:500],
        )
        return DeliveryOutcome("retry", retry_in=backoff)
    mine.update(
        status=AlertDelivery.Status.SENT,
        claimed_until=None,
        sent_at=timezone.now(),
        response_status=response_status,
        last_error="",
    )
    return DeliveryOutcome("sent")


def due_deliveries(now: datetime | None = None, *, limit: int = 500) -> list[int]:
    """Deliveries that should be sent now and that no live worker holds (for ``redeliver``)."""
    now = now or timezone.now()
    return list(
        AlertDelivery.objects.filter(_claimable(now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def rotate_webhook_secret(
    endpoint: WebhookEndpoint, *, actor: str, now: datetime | None = None
) -> str:
    """Give a webhook endpoint a new signing secret and return it; the old one stops signing."""
    now = now or timezone.now()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.secret = new_webhook_secret()
        endpoint.save(update_fields=["secret"])
        audit.record("webhook.secret_rotated", actor=actor, subject=endpoint, at=now)
    return endpoint.secret


# --- Rows with no actions of their own ---

RowT = TypeVar("RowT", bound=Model)

# A field whose name has one of these parts holds a secret or a hash of one: the audit log
# says only that it is set or changed.
SECRET_NAME_PARTS = frozenset({"secret", "token", "hash", "password"})


def is_secret(field_name: str) -> bool:
    """Whether ``field_name`` holds a secret (``secret``, ``token_hash``, ``pin_hash``…)."""
    return not SECRET_NAME_PARTS.isdisjoint(field_name.lower().split("_"))


def row_fields(model: type[Model]) -> dict[str, Field]:
    """What ``save_row`` writes, by name: every column but the primary key, and the
    many-to-many links the model declares."""
    fields = (*model._meta.concrete_fields, *model._meta.many_to_many)
    return {f.name: f for f in fields if not f.primary_key}


def _audited_value(row: Model, field: Field) -> object:
    """A field's value as the audit log shows it: a column's stored value, a link's members
    by name, and for a secret only whether it is set."""
    if is_secret(field.name):
        return "set" if getattr(row, field.attname) else ""
    if field.many_to_many:
        return sorted(str(member) for member in getattr(row, field.name).all())
    return getattr(row, field.attname)


def _save_checked(row: Model, update_fields: list[str] | None) -> None:
    try:
        with transaction.atomic():
            row.save(update_fields=update_fields)
    except IntegrityError:  # a unique value taken by a change that committed after full_clean
        raise ValidationError(
            f"Another change to the {row._meta.verbose_name_plural} was saved first with one "
            "of these values; nothing was saved."
        ) from None


def save_row(row: RowT, *, actor: str, now: datetime | None = None, **values: Any) -> RowT:
    """Add ``row`` (not saved yet) or change the stored one: set ``values`` (fields by name; a
    many-to-many link takes its full list of members), validate, and write what changed.

    For reference rows whose model has no actions of its own. Audited as
    ``<app_label.model>.created`` with every value, or ``.updated`` with each changed field as
    ``[old, new]``; a secret (``is_secret``) is recorded as set or changed, never its value.
    Refused (``ValidationError``): what ``full_clean`` refuses, a unique value taken meanwhile.
    Saving the values a row has writes and records nothing.
    """
    model = type(row)
    fields = row_fields(model)
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"Not a {model._meta.verbose_name} field: {', '.join(sorted(unknown))}")
    links = {name: list(v) for name, v in values.items() if fields[name].many_to_many}
    columns = {name: v for name, v in values.items() if name not in links}
    now = now or timezone.now()
    with transaction.atomic():
        creating = row._state.adding
        if not creating:
            row = model._default_manager.select_for_update().get(pk=row.pk)
        before = {} if creating else {name: _audited_value(row, fields[name]) for name in values}
        stored = {name: getattr(row, fields[name].attname) for name in columns}
        for name, value in columns.items():
            setattr(row, name, value)
        changed = [name for name in columns if getattr(row, fields[name].attname) != stored[name]]
        relinked = [
            name
            for name, members in links.items()
            if creating
            or {m.pk for m in members} != set(getattr(row, name).values_list("pk", flat=True))
        ]
        if not (creating or changed or relinked):
            return row
        row.full_clean()
        _save_checked(row, None if creating else changed)
        for name in relinked:
            getattr(row, name).set(links[name])
        if creating:
            data = {name: _audited_value(row, field) for name, field in fields.items()}
        else:
            data = {
                name: "changed"
                if is_secret(name)
                else [before[name], _audited_value(row, fields[name])]
                for name in (*changed, *relinked)
            }
        event = "created" if creating else "updated"
        audit.record(
            f"{model._meta.label_lower}.{event}", actor=actor, subject=row, data=data, at=now
        )
    return row


def _listed(rows: Iterable[Model]) -> str:
    """``2 locker banks (BANK-A, BANK-B)``, one part per kind of row."""
    names: dict[Any, list[str]] = defaultdict(list)
    for row in rows:
        names[row._meta].append(str(row))
    parts = []
    for opts, these in names.items():
        kind = opts.verbose_name if len(these) == 1 else opts.verbose_name_plural
        shown = ", ".join(sorted(these)[:5]) + (", …" if len(these) > 5 else "")
        parts.append(f"{len(these)} {kind} ({shown})")
    return " and ".join(parts)


def check_delete_row(row: Model) -> None:
    """Refuse (``ValidationError``) deleting a row that others still need.

    That is what the database would refuse (rows pointing at it with PROTECT or RESTRICT), and
    a row another row names in a many-to-many link: deleting it would change that row without
    an audit record of its own, and an access rule whose sites run empty applies everywhere.
    """
    what = f"{row._meta.verbose_name.capitalize()} {row}"
    collector = Collector(using=router.db_for_write(type(row), instance=row), origin=row)
    try:
        collector.collect([row])
    except ProtectedError as refusal:
        raise ValidationError(
            f"{what} cannot be deleted: still used by {_listed(refusal.protected_objects)}."
        ) from None
    except RestrictedError as refusal:
        raise ValidationError(
            f"{what} cannot be deleted: still used by {_listed(refusal.restricted_objects)}."
        ) from None
    for relation in row._meta.related_objects:
        if not relation.many_to_many:
            continue
        naming = list(relation.related_model._default_manager.filter(**{relation.field.name: row}))
        if naming:
            raise ValidationError(
                f"{what} cannot be deleted: named by {_listed(naming)}; take it out of those first."
            )


def delete_row(row: Model, *, actor: str, now: datetime | None = None) -> None:
    """Delete ``row`` (with what the database deletes along with it). Refused as
    ``check_delete_row`` says.

    Audited as ``<app_label.model>.deleted`` with the row's last values (a secret only as set)
    and, under ``cascaded``, how many rows of each kind went with it.
    """
    model = type(row)
    now = now or timezone.now()
    with transaction.atomic():
        # Locked, the row gains no new reference meanwhile (adding one locks it too).
        row = model._default_manager.select_for_update().get(pk=row.pk)
        check_delete_row(row)
        data = {name: _audited_value(row, field) for name, field in row_fields(model).items()}
        pk = row.pk
        _, counts = row.delete()
        cascaded = {
            label.lower(): n for label, n in counts.items() if n and label != model._meta.label
        }
        if cascaded:
            data["cascaded"] = cascaded
        row.pk = pk  # the record names the row that went
        audit.record(
            f"{model._meta.label_lower}.deleted", actor=actor, subject=row, data=data, at=now
        )
