"""Cross-cutting actions: alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from lockerhub import audit, events
from lockerhub.models import Alert


def raise_alert(
    kind: str,
    dedup_key: str,
    title: str,
    *,
    severity: str = Alert.Severity.WARNING,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
    **subjects: Any,
) -> tuple[Alert, bool]:
    """Open an alert for a cause unless one is already open for it. Returns (alert, created)."""
    now = now or timezone.now()
    with transaction.atomic():
        existing = Alert.objects.open().filter(dedup_key=dedup_key).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    kind=kind,
                    dedup_key=dedup_key,
                    title=title,
                    severity=severity,
                    details=details or {},
                    opened_at=now,
                    **subjects,
                )
        except IntegrityError:  # raised concurrently by someone else: theirs stands
            return Alert.objects.open().get(dedup_key=dedup_key), False
        audit.record(
            "alert.raised",
            actor=audit.SYSTEM,
            subject=alert,
            data={"kind": kind, "dedup_key": dedup_key},
            at=now,
        )
        payload = {"id": alert.pk, "kind": kind, "severity": severity, "title": title}
        if alert.bank_id:
            events.broadcast(events.bank_group(alert.bank.code), "alert.raised", payload)
        return alert, True


def resolve_alerts(
    dedup_key: str, *, actor: str = audit.SYSTEM, now: datetime | None = None
) -> int:
    """Resolve the open alert for a cause that has gone away. Returns how many were resolved."""
    now = now or timezone.now()
    with transaction.atomic():
        alerts = list(Alert.objects.open().select_for_update().filter(dedup_key=dedup_key))
        for alert in alerts:
            alert.resolved_at = now
            alert.save(update_fields=["resolved_at"])
            audit.record("alert.resolved", actor=actor, subject=alert, at=now)
        return len(alerts)
