"""Alerts people act on (DESIGN §4.5): the rules, their settings and the live groups.

- ``rules`` detects: overdue items and their escalation ladder, suspicious access, door and
  bank faults. Each sweep is a Celery task (``lockerhub.tasks``) safe to run twice at once.
- ``lockerhub.actions`` changes alerts: raise, escalate, acknowledge, snooze, resolve, deliver.
- ``notify`` finds recipients and sends e-mail and signed webhooks.

Thresholds live in ``settings.LOCKERHUB_ALERTS``; docs/alerts.md lists them all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

# Live events (channel-layer groups). A bank's own alerts also go to events.bank_group(code).
ALL_ALERTS_GROUP = "alerts.all"


def site_alerts_group(site_id: int) -> str:
    """Browsers watching every alert of one site."""
    return f"alerts.site.{site_id}"


# Every rule, by the name alerts carry in ``Alert.rule`` and that DISABLED_RULES takes.
# The name is also the first part of the rule's dedup keys.
RULES: dict[str, str] = {
    "overdue": "An item was not returned by its due time",
    "recovery": "A device is still out after its holder was offboarded",
    "badge-misuse": "A revoked, lost or expired badge, or an offboarded person's, was presented",
    "denied-burst-badge": "Many denied taps on one badge in a short time",
    "denied-burst-bank": "Many denied taps at one bank in a short time",
    "outside-shift": "A tap outside the holder's shift",
    "unusual-volume": "An employee took far more devices today than they usually do",
    "remote-open-after-hours": "A door was opened remotely outside the site's hours",
    "door-forced": "A door opened without an unlock",
    "door-held-open": "A door stayed open past its bank's limit",
    "bank-offline": "A bank stopped sending heartbeats",
    "charge-fault": "A slot's charger reports a fault",
    "charge-stuck": "A device in its slot never reached charged",
    "sensor-mismatch": "Door closed and an asset expected, but the presence sensor says empty",
}


def conf(name: str) -> Any:
    return settings.LOCKERHUB_ALERTS[name]


def minutes(name: str) -> timedelta:
    return timedelta(minutes=conf(name))


def enabled(rule: str) -> bool:
    return rule not in conf("DISABLED_RULES")


def tap_key(rule: str, uid: str, bank_code: str, at: datetime) -> str:
    """The dedup key of a badge-tap alert: one per badge, bank and hour.

    The hour is taken in UTC, whatever zone ``at`` carries or the server runs in, so servers
    and callers set to different zones build the same key for the same tap and raise it once.
    """
    return f"{rule}:{uid}:{bank_code}:{at.astimezone(UTC):%Y%m%d%H}"
