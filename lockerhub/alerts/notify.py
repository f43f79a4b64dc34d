"""Who hears about an alert, and the two ways it reaches them: e-mail and signed webhooks.

Nothing here writes to the database; ``lockerhub.actions.deliver`` claims a delivery, calls
``send`` and records the outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMessage

from lockerhub.alerts import RULES, conf
from lockerhub.models import Alert, AlertDelivery, WebhookEndpoint
from lockerhub.roles import Role

SIGNATURE_HEADER = "X-LockerHub-Signature"
TIMESTAMP_HEADER = "X-LockerHub-Timestamp"
DELIVERY_HEADER = "X-LockerHub-Delivery"
EVENT_HEADER = "X-LockerHub-Event"
# Receivers should refuse a signature whose timestamp is further off than this (replays).
SIGNATURE_TOLERANCE_SECONDS = 300


class DeliveryError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# --- Recipients ---


class Recipients:
    """Who hears about alerts: e-mail addresses per role and the active webhooks, each looked up
    once for a whole sweep."""

    def __init__(self) -> None:
        self._groups: dict[tuple[Role, int | None], list[str]] = {}
        self._webhooks: list[WebhookEndpoint] | None = None

    def webhooks(self) -> list[WebhookEndpoint]:
        if self._webhooks is None:
            self._webhooks = list(WebhookEndpoint.objects.filter(is_active=True))
        return self._webhooks

    def for_roles(self, alert: Alert, roles: list[str]) -> list[str]:
        found: list[str] = []
        for role in roles:
            for address in self._for_role(alert, role):
                if address and address not in found:
                    found.append(address)
        return found

    def _for_role(self, alert: Alert, role: str) -> list[str]:
        employee = alert.employee
        if role == "employee":
            return [employee.email] if employee is not None and employee.email else []
        if role == "supervisor":
            boss = employee.supervisor if employee is not None else None
            if boss is not None and boss.email:
                return [boss.email]
            return self._group(Role.SUPERVISOR, alert.site_id)
        if role == "facility_manager":
            return self._group(Role.FACILITY_MANAGER, None)
        raise ValueError(f"unknown alert recipient role {role!r}")

    def _group(self, role: Role, site_id: int | None) -> list[str]:
        key = (role, site_id)
        if key not in self._groups:
            rows = list(
                User.objects.filter(is_active=True, groups__name=role.group_name)
                .exclude(email="")
                .order_by("pk")
                .values_list("email", "employee__home_site_id")
            )
            # People of the alert's site when the group has any, otherwise the whole group.
            at_site = [email for email, home in rows if site_id is not None and home == site_id]
            self._groups[key] = at_site or [email for email, _ in rows]
        return self._groups[key]


def email_roles(rule: str) -> list[str]:
    roles = conf("EMAIL_ROLES")
    return list(roles.get(rule, roles["*"]))


# --- Sending ---


def send(delivery: AlertDelivery) -> int | None:
    """Send one delivery; returns the HTTP status for webhooks. Raises DeliveryError."""
    if delivery.channel == AlertDelivery.Channel.EMAIL:
        send_email(delivery)
        return None
    return send_webhook(delivery)


def send_email(delivery: AlertDelivery) -> None:
    alert = delivery.payload["alert"]
    subject = f"[LockerHub] {alert['severity'].upper()}: {alert['title']}"
    lines = [
        alert["title"],
        "",
        f"Why: {RULES.get(alert['rule'], alert['kind'])}.",
    ]
    if alert.get("bank"):
        where = f"Bank {alert['bank']}"
        if alert.get("slot"):
            where += f", door {alert['slot']}"
        lines.append(f"Where: {where}")
    lines.append(f"Opened: {alert['opened_at']}")
    if delivery.event == "alert.escalated":
        lines.append(f"Escalated to level {alert['escalation_level']} of the overdue ladder.")
    lines += ["", "Acknowledge or snooze it on the dashboard: /dashboard/"]
    message = EmailMessage(
        subject=subject[:200],
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.recipient],
        headers={DELIVERY_HEADER: str(delivery.uuid)},
    )
    try:
        message.send(fail_silently=False)
    except Exception as exc:  # SMTP errors come in many classes; each means "try again later"
        raise DeliveryError(f"e-mail not sent: {exc}") from exc


def body_of(delivery: AlertDelivery) -> bytes:
    return json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` HMAC-SHA256 of ``"<timestamp>." + body`` keyed with the endpoint's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature (constant-time compare)."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - stamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET elsewhere; treat it as a failure instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def send_webhook(delivery: AlertDelivery) -> int:
    endpoint = delivery.endpoint
    if endpoint is None or not endpoint.is_active:
        raise DeliveryError("the webhook endpoint is gone or switched off")
    if not endpoint.url.startswith(("https://", "http://")):
        raise DeliveryError("a webhook URL must be http(s)")
    body = body_of(delivery)
    timestamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "LockerHub-Webhook/1",
            DELIVERY_HEADER: str(delivery.uuid),
            EVENT_HEADER: delivery.event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
        },
    )
    try:
        with _opener.open(request, timeout=conf("WEBHOOK_TIMEOUT_SECONDS")) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from the endpoint", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"endpoint unreachable: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status} from the endpoint", status)
    return status
