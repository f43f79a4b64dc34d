"""Cross-cutting records: the append-only audit chain and alerts."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
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
        indexes = [models.Index(fields=["kind", "resolved_at"])]

    def __str__(self) -> str:
        return self.title
