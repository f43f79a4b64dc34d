"""Cross-cutting records: the append-only audit chain and alerts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone

GENESIS_HASH = "0" * 64


class AuditQuerySet(models.QuerySet):
    """Audit rows are append-only: bulk updates and deletes are refused here and by the database."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One state change, chained to the previous one.

    ``hash = sha256(prev_hash ‖ canonical JSON of the row)``, so editing, inserting or removing
    any row breaks every link after it. ``verify_audit`` walks the chain. Triggers installed by a
    migration refuse UPDATE and DELETE at the database itself.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor = models.CharField(
        max_length=150, help_text="user:<id>, bank:<code>, api-key:<id> or system"
    )
    action = models.CharField(max_length=64, db_index=True)
    subject_type = models.CharField(max_length=64, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["subject_type", "subject_id"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.subject_type}:{self.subject_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise PermissionError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("Audit events are append-only.")

    def canonical(self) -> str:
        """The row as canonical JSON: sorted keys, no whitespace, UTC timestamp."""
        return json.dumps(
            {
                "seq": self.seq,
                "at": self.at.astimezone(dt.UTC).isoformat(),
                "actor": self.actor,
                "action": self.action,
                "subject_type": self.subject_type,
                "subject_id": self.subject_id,
                "data": self.data,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )

    def compute_hash(self) -> str:
        return hashlib.sha256((self.prev_hash + self.canonical()).encode()).hexdigest()


class AuditHead(models.Model):
    """The single row holding the chain's tip. Locking it serialises appends to the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audithead_singleton")]

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class AlertQuerySet(models.QuerySet):
    def open(self) -> AlertQuerySet:
        return self.filter(resolved_at__isnull=True)

    def visible_to(self, user: Any) -> AlertQuerySet:
        """Alerts ``user`` may see: every alert with the view permission, none without it."""
        if not user.is_authenticated or not user.has_perm("lockerhub.view_alert"):
            return self.none()
        return self

    def quiet_at(self, now: datetime) -> AlertQuerySet:
        """Open alerts that may notify people now: not acknowledged, not snoozed."""
        return (
            self.open()
            .filter(acknowledged_at__isnull=True)
            .filter(models.Q(snoozed_until__isnull=True) | models.Q(snoozed_until__lte=now))
        )


class Alert(models.Model):
    """Something a person should look at. Raised once per cause: the dedup key is unique among open alerts."""

    class Kind(models.TextChoices):
        OVERDUE = "overdue", "Overdue return"
        RECOVERY = "recovery", "Device to recover from an offboarded employee"
        SUSPICIOUS_ACCESS = "suspicious_access", "Suspicious access"
        DOOR_FORCED = "door_forced", "Door forced"
        DOOR_HELD_OPEN = "door_held_open", "Door held open"
        BANK_OFFLINE = "bank_offline", "Bank offline"
        CHARGE_FAULT = "charge_fault", "Charge fault"
        SENSOR_MISMATCH = "sensor_mismatch", "Sensors disagree"
        DECISION_MISMATCH = "decision_mismatch", "Bank and server decided a tap differently"
        DEVICE_EVENT_FAILED = "device_event_failed", "A bank event could not be applied"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    dedup_key = models.CharField(max_length=200)
    title = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)
    site = models.ForeignKey(
        "devices.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    bank = models.ForeignKey(
        "devices.LockerBank",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
    )
    employee = models.ForeignKey(
        "access.Employee", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    # The rule that raised it (lockerhub.alerts.RULES) and what it is about; the rate limit
    # counts alerts per (rule, subject).
    rule = models.CharField(max_length=40, blank=True)
    subject = models.CharField(max_length=120, blank=True)
    slot = models.ForeignKey(
        "devices.Slot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checkout = models.ForeignKey(
        "assets.Checkout",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
    )
    resolved_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Raises held back by the per-subject rate limit while this alert was the newest open one.
    suppressed_count = models.PositiveIntegerField(default=0)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        permissions = [
            ("acknowledge_alert", "Can acknowledge, snooze and resolve alerts"),
            ("view_reports", "Can read utilization reports"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=models.Q(resolved_at__isnull=True),
                name="alert_one_open_per_cause",
            )
        ]
        indexes = [
            models.Index(fields=["kind", "resolved_at"]),
            models.Index(fields=["dedup_key", "opened_at"]),
            models.Index(fields=["rule", "subject", "opened_at"]),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def state(self) -> str:
        if self.resolved_at is not None:
            return "resolved"
        if self.acknowledged_at is not None:
            return "acknowledged"
        return "open"

    def is_snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > now

    def as_event(self) -> dict[str, Any]:
        """The alert as live events and webhooks carry it (docs/alerts.md)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.pk,
            "kind": self.kind,
            "rule": self.rule,
            "severity": self.severity,
            "title": self.title,
            "state": self.state,
            "site": self.site_id,
            "bank": self.bank.code if self.bank_id else None,
            "slot": self.slot.number if self.slot_id else None,
            "employee": self.employee_id,
            "checkout": self.checkout_id,
            "details": self.details,
            "opened_at": iso(self.opened_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "resolved_at": iso(self.resolved_at),
            "snoozed_until": iso(self.snoozed_until),
            "escalation_level": self.escalation_level,
            "suppressed_count": self.suppressed_count,
        }


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookEndpoint(models.Model):
    """A URL that receives alert events as signed JSON POSTs (docs/alerts.md).

    The signing secret has to stay readable to sign with (unlike device tokens, which are only
    compared); it is shown once when made and never listed.
    """

    name = models.CharField(max_length=120, unique=True)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100, default=new_webhook_secret, editable=False)
    is_active = models.BooleanField(default=True)
    kinds = models.JSONField(
        default=list, blank=True, help_text="Alert kinds to send; empty sends every kind."
    )
    min_severity = models.CharField(
        max_length=16, choices=Alert.Severity.choices, default=Alert.Severity.INFO
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def wants(self, alert: Alert) -> bool:
        order = list(Alert.Severity.values)
        return (not self.kinds or alert.kind in self.kinds) and order.index(
            alert.severity
        ) >= order.index(self.min_severity)


class AlertDelivery(models.Model):
    """One notification of one alert event to one recipient, and its delivery log.

    ``key`` is unique, so planning a notification twice makes one row; sending is claimed by a
    conditional update (pending → sending with a lease), so a task that runs twice sends once.
    A worker killed mid-send leaves the row ``sending``; once the lease runs out it is claimed
    again and sent with the same ``uuid`` (receivers deduplicate on it).
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    key = models.CharField(max_length=300, unique=True)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    recipient = models.CharField(max_length=500)
    # Frozen at planning time, so a retry sends exactly the same body.
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "alert deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} → {self.recipient} ({self.status})"
