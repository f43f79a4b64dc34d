"""Read-side questions about banks: what the live dashboard shows.

One shape serves the server-rendered page, the WebSocket's snapshot and its events, so a page
that reconnects lands on exactly what a fresh page load would show.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from assets.models import Checkout
from devices.models import LockerBank, Slot
from lockerhub.models import Alert
from lockerhub.roles import Role, has_role

# The dashboard lists the newest open alerts; older ones are in the admin.
ALERT_LIMIT = 100


# How the dashboard words each state (the page and dashboard.js share this table).
LABELS: dict[str, dict[str, str]] = {
    "door": dict(Slot.DoorState.choices),
    "lock": dict(Slot.LockState.choices),
    "charge": dict(Slot.ChargeState.choices),
    "present": {"true": "Device in", "false": "Empty", "null": "Unknown"},
    "severity": dict(Alert.Severity.choices),
    "state": {"open": "Open", "acknowledged": "Acknowledged", "resolved": "Resolved"},
}


def label(kind: str, value: Any) -> str:
    if kind == "present":
        value = "null" if value is None else str(bool(value)).lower()
    return LABELS.get(kind, {}).get(value, str(value))


def can_watch_dashboard(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Supervisors (and administrators) who may see slots."""
    return has_role(user, Role.SUPERVISOR) and user.has_perm("devices.view_slot")


def slot_state(slot: Slot) -> dict[str, Any]:
    """One slot as the dashboard shows it (the keys of the ``slot.changed`` event, and more)."""
    asset = slot.asset if slot.asset_id else None
    return {
        "id": slot.pk,
        "bank": slot.bank.code,
        "slot": slot.number,
        "door": slot.door_state,
        "lock": slot.lock_state,
        "present": slot.present,
        "charge": slot.charge_state,
        "asset": asset.asset_tag if asset else None,
        "out_of_service": slot.out_of_service,
        "out_of_service_reason": slot.out_of_service_reason,
    }


def checkout_state(checkout: Checkout, now: datetime) -> dict[str, Any]:
    return {
        "id": checkout.pk,
        "status": checkout.status,
        "bank": checkout.slot_out.bank.code,
        "slot": checkout.slot_out.number,
        "asset": checkout.asset.asset_tag,
        "asset_type": checkout.asset.asset_type.name,
        "employee": checkout.employee.full_name,
        "employee_number": checkout.employee.employee_number,
        "taken_at": checkout.taken_at.isoformat() if checkout.taken_at else None,
        "due_at": checkout.due_at.isoformat() if checkout.due_at else None,
        "overdue": checkout.is_overdue(now),
    }


def bank_state(bank: LockerBank, slots: list[Slot]) -> dict[str, Any]:
    return {
        "code": bank.code,
        "name": bank.name or bank.code,
        "site": bank.site.name,
        "location": bank.location,
        "online": bank.is_online,
        "last_heartbeat_at": bank.last_heartbeat_at.isoformat() if bank.last_heartbeat_at else None,
        "slots": [slot_state(slot) for slot in slots],
    }


def open_checkouts(banks: list[LockerBank]) -> list[Checkout]:
    return list(
        Checkout.objects.active()
        .filter(slot_out__bank__in=banks)
        .select_related("asset__asset_type", "employee", "slot_out__bank")
        .order_by("due_at", "pk")
    )


def checkout_for_dashboard(checkout_id: int) -> Checkout | None:
    return (
        Checkout.objects.select_related("asset__asset_type", "employee", "slot_out__bank")
        .filter(pk=checkout_id)
        .first()
    )


def dashboard_state(user: AbstractBaseUser, now: datetime) -> dict[str, Any]:
    """Everything the dashboard shows ``user``, as plain data: banks and slots, open checkouts
    (oldest due first), open alerts (newest first). A fixed number of queries, however many
    banks and slots there are."""
    banks = list(LockerBank.objects.visible_to(user).select_related("site").order_by("code"))
    slots_by_bank: dict[int, list[Slot]] = {bank.pk: [] for bank in banks}
    for slot in (
        Slot.objects.filter(bank__in=banks).select_related("bank", "asset").order_by("number")
    ):
        slots_by_bank[slot.bank_id].append(slot)
    alerts = (
        Alert.objects.visible_to(user)
        .open()
        .select_related("bank", "slot")
        .order_by("-opened_at")[:ALERT_LIMIT]
    )
    return {
        "now": now.isoformat(),
        "banks": [bank_state(bank, slots_by_bank[bank.pk]) for bank in banks],
        "checkouts": [checkout_state(c, now) for c in open_checkouts(banks)],
        "alerts": [alert.as_event() for alert in alerts],
    }
