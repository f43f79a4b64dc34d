"""Every state change of checkouts and reservations.

``do_*`` functions expect the caller's transaction and the rows they consume already locked
(Zulip's convention); the device-event entry points live in ``devices.actions`` and call the
transition functions here with the slot row locked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access.models import Badge, Employee
from assets.models import Asset, AssetType, Checkout, Reservation
from devices.models import Slot
from lockerhub import actions as alert_actions
from lockerhub import audit, events
from lockerhub.models import Alert
from lockerhub.writes import save_unique

logger = logging.getLogger(__name__)


def reservation_timeout() -> timedelta:
    return timedelta(seconds=settings.LOCKERHUB["RESERVATION_TIMEOUT_SECONDS"])


def due_at_for(
    asset_type: AssetType, taken_at: datetime, shift_end_at: datetime | None
) -> datetime:
    """Shift end plus the return grace, never later than the type's maximum loan."""
    cap = taken_at + asset_type.max_loan
    if shift_end_at is None:
        return cap
    grace = timedelta(minutes=settings.LOCKERHUB["RETURN_GRACE_MINUTES"])
    return min(shift_end_at + grace, cap)


def unlock_command(reservation: Reservation) -> dict:
    """The command the bank worker executes at most once (by ``id``) and never after ``expires_at``."""
    slot = reservation.slot
    return {
        "id": str(reservation.command_id),
        "action": "unlock",
        "slot": slot.number,
        "board": slot.board,
        "lock_index": slot.lock_index,
        "expires_at": reservation.expires_at.isoformat(),
    }


def _slot_payload(slot: Slot) -> dict:
    return {
        # Dashboards watch many banks over one connection: every event names its bank.
        "bank": slot.bank.code,
        "slot": slot.number,
        "door": slot.door_state,
        "lock": slot.lock_state,
        "present": slot.present,
        "charge": slot.charge_state,
        "asset": slot.asset.asset_tag if slot.asset_id and slot.asset else None,
        "out_of_service": slot.out_of_service,
    }


def broadcast_slot(slot: Slot) -> None:
    events.broadcast(events.bank_group(slot.bank.code), "slot.changed", _slot_payload(slot))


def _unlock(slot: Slot) -> None:
    slot.lock_state = Slot.LockState.UNLOCKED
    slot.save(update_fields=["lock_state"])
    broadcast_slot(slot)


def do_reserve_take(
    *,
    employee: Employee,
    badge: Badge | None,
    slot: Slot,
    shift_end_at: datetime | None,
    now: datetime,
) -> Reservation | None:
    """Hold ``slot`` for ``employee`` to take the device in it: a reserved checkout, due after
    ``shift_end_at`` (None: no shift bound), and the reservation that unlocks the door.

    Which slot is the decision's (``access.core``); the caller holds the slot's row lock and
    read ``slot.asset`` with its type. The asset row is locked here, after the slot, as
    retiring a device does: a status change committed while the caller waited is seen, and
    wins. None (with ``slot.asset.status`` as it is now) when the device is no longer
    available. The partial unique indexes on open checkouts and active reservations are the
    last word.
    """
    asset = slot.asset
    if asset is None:
        return None
    asset.status = (
        Asset.objects.select_for_update().values_list("status", flat=True).get(pk=asset.pk)
    )
    if asset.status != Asset.Status.AVAILABLE:
        return None
    checkout = Checkout.objects.create(
        asset=asset,
        employee=employee,
        badge=badge,
        slot_out=slot,
        reserved_at=now,
        shift_end_at=shift_end_at,
        due_at=due_at_for(asset.asset_type, now, shift_end_at),
    )
    reservation = Reservation.objects.create(
        slot=slot,
        checkout=checkout,
        purpose=Reservation.Purpose.TAKE,
        created_at=now,
        expires_at=now + reservation_timeout(),
    )
    _unlock(slot)
    return reservation


def do_reserve_return(
    *,
    checkout: Checkout,
    slot: Slot,
    now: datetime,
    actor: str,
    damaged: bool = False,
    damage_note: str = "",
) -> Reservation | None:
    """Hold the empty ``slot`` for ``checkout``'s device to come back.

    One loan has one return under way, whatever the bank: a return still waiting for its door
    elsewhere is cancelled ("returned elsewhere"); one whose door is already open there wins,
    and this gives None. The caller holds the slot's row lock (the slot is the decision's).
    """
    elsewhere = list(
        Reservation.objects.select_for_update(of=("self",))
        .select_related("slot__bank", "slot__asset")
        .filter(
            checkout=checkout,
            purpose=Reservation.Purpose.RETURN,
            status__in=Reservation.ACTIVE_STATUSES,
        )
        .exclude(slot=slot)
    )
    if any(other.status == Reservation.Status.OPENED for other in elsewhere):
        return None
    for other in elsewhere:
        do_end_reservation(
            other,
            Reservation.Status.CANCELLED,
            at=now,
            actor=actor,
            data={"reason": "returned elsewhere"},
        )
    reservation = Reservation.objects.create(
        slot=slot,
        checkout=checkout,
        purpose=Reservation.Purpose.RETURN,
        created_at=now,
        expires_at=now + reservation_timeout(),
        damaged=damaged,
        damage_note=damage_note[:500],
    )
    _unlock(slot)
    return reservation


def report_damage(
    reservation: Reservation, note: str, *, actor: str, now: datetime | None = None
) -> Reservation:
    """Mark a pending return as damaged (reported at the kiosk before the door closes)."""
    now = now or timezone.now()
    with transaction.atomic():
        reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
        if reservation.purpose != Reservation.Purpose.RETURN or not reservation.is_active:
            raise ValueError("Damage can be reported only on a return in progress.")
        reservation.damaged = True
        reservation.damage_note = note[:500]
        reservation.save(update_fields=["damaged", "damage_note"])
        audit.record(
            "return.damage_reported",
            actor=actor,
            subject=reservation.checkout,
            data={"note": note[:500]},
            at=now,
        )
    return reservation


# --- Transitions driven by the slot's sensors. The caller holds the slot row lock. ---


def do_door_opened(slot: Slot, at: datetime, *, actor: str) -> Reservation | None:
    """The door of ``slot`` opened. Returns the reservation it served; None means nobody unlocked it."""
    reservation = (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("checkout")
        .filter(slot=slot, status=Reservation.Status.PENDING)
        .first()
    )
    if reservation is None:
        return None
    reservation.status = Reservation.Status.OPENED
    reservation.opened_at = at
    reservation.save(update_fields=["status", "opened_at"])
    if reservation.purpose == Reservation.Purpose.TAKE:
        Checkout.objects.filter(pk=reservation.checkout_id).update(opened_at=at)
    audit.record(
        f"{reservation.purpose}.door_opened",
        actor=actor,
        subject=reservation.checkout or reservation,
        data={"slot": slot.number, "bank": slot.bank.code},
        at=at,
    )
    return reservation


def do_presence_changed(slot: Slot, present: bool, at: datetime) -> None:
    """Note when a reserved asset physically left its slot (the take completes on door close)."""
    if present:
        return
    Checkout.objects.filter(
        slot_out=slot,
        status=Checkout.Status.RESERVED,
        taken_at__isnull=True,
        reservations__status=Reservation.Status.OPENED,
    ).update(taken_at=at)


def do_door_closed(slot: Slot, at: datetime, *, actor: str) -> Reservation | None:
    """The door of ``slot`` closed: finish, or cancel, the reservation that opened it.

    A completed take or return sets ``slot.asset``; the caller (``record_slot_state``) saves
    the slot once, with its door state.
    """
    reservation = (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("checkout__asset__asset_type")
        .filter(slot=slot, status=Reservation.Status.OPENED)
        .first()
    )
    if reservation is None:
        return None
    reservation.ended_at = at
    if reservation.purpose == Reservation.Purpose.REMOTE:
        reservation.status = Reservation.Status.DONE
        reservation.save(update_fields=["status", "ended_at"])
        audit.record(
            "remote.door_closed",
            actor=actor,
            subject=reservation,
            data={"slot": slot.number, "bank": slot.bank.code, "present": slot.present},
            at=at,
        )
        return reservation
    checkout = reservation.checkout
    asset = checkout.asset
    if reservation.purpose == Reservation.Purpose.TAKE:
        if slot.present is False:
            reservation.status = Reservation.Status.DONE
            checkout.status = Checkout.Status.ACTIVE
            checkout.taken_at = checkout.taken_at or at
            checkout.due_at = due_at_for(asset.asset_type, checkout.taken_at, checkout.shift_end_at)
            asset.status = Asset.Status.CHECKED_OUT
            asset.save(update_fields=["status"])
            slot.asset = None
            action = "take.completed"
        else:
            reservation.status = Reservation.Status.CANCELLED
            checkout.status = Checkout.Status.CANCELLED
            checkout.taken_at = None
            action = "take.cancelled"
    else:
        if slot.present and checkout.status == Checkout.Status.ACTIVE:
            reservation.status = Reservation.Status.DONE
            checkout.status = Checkout.Status.RETURNED
            checkout.slot_back = slot
            checkout.returned_at = at
            checkout.condition = (
                Checkout.Condition.DAMAGED if reservation.damaged else Checkout.Condition.OK
            )
            checkout.condition_note = reservation.damage_note
            # A damaged device stays in its slot but out of circulation until someone checks it.
            asset.status = (
                Asset.Status.MAINTENANCE if reservation.damaged else Asset.Status.AVAILABLE
            )
            asset.save(update_fields=["status"])
            slot.asset = asset
            action = "return.completed"
        else:
            reservation.status = Reservation.Status.CANCELLED
            action = "return.cancelled"
    reservation.save(update_fields=["status", "ended_at"])
    checkout.save()
    if action == "return.completed":
        # The dashboard and the employee see the overdue alert close with the door, not at the
        # next sweep.
        alert_actions.do_resolve_gone(
            Alert.objects.filter(kind=Alert.Kind.OVERDUE, checkout=checkout),
            now=at,
            reason="returned",
        )
    audit.record(
        action,
        actor=actor,
        subject=checkout,
        data={
            "slot": slot.number,
            "bank": slot.bank.code,
            "asset": asset.asset_tag,
            "due_at": checkout.due_at,
        },
        at=at,
    )
    events.broadcast(
        events.bank_group(slot.bank.code),
        action,
        {
            "bank": slot.bank.code,
            "checkout": checkout.pk,
            "slot": slot.number,
            "asset": asset.asset_tag,
            "employee": checkout.employee_id,
        },
    )
    return reservation


def do_end_reservation(
    reservation: Reservation, status: str, *, at: datetime, actor: str, data: dict | None = None
) -> None:
    """End a reservation whose door never opened (lapsed or cancelled): relock and free the slot.

    The caller holds the reservation's row lock. A take's checkout ends with it; a return's
    checkout stays active (the device is still out).
    """
    reservation.status = status
    reservation.ended_at = at
    reservation.save(update_fields=["status", "ended_at"])
    if reservation.purpose == Reservation.Purpose.TAKE:
        checkout_status = (
            Checkout.Status.LAPSED
            if status == Reservation.Status.LAPSED
            else Checkout.Status.CANCELLED
        )
        Checkout.objects.filter(pk=reservation.checkout_id, status=Checkout.Status.RESERVED).update(
            status=checkout_status
        )
    slot = reservation.slot
    Slot.objects.filter(pk=slot.pk).update(lock_state=Slot.LockState.LOCKED)
    slot.lock_state = Slot.LockState.LOCKED
    audit.record(
        f"{reservation.purpose}.{status}",
        actor=actor,
        subject=reservation.checkout or reservation,
        data={"slot": slot.number, "bank": slot.bank.code, **(data or {})},
        at=at,
    )
    broadcast_slot(slot)


def lapse_expired_reservations(now: datetime | None = None, *, actor: str = audit.SYSTEM) -> int:
    """Reservations whose door never opened in time lapse; the slot is free again."""
    now = now or timezone.now()
    lapsed = 0
    expired_ids = list(Reservation.objects.expired(now).values_list("pk", flat=True)[:500])
    for reservation_id in expired_ids:
        with transaction.atomic():
            reservation = (
                Reservation.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("slot__bank", "slot__asset")
                .filter(pk=reservation_id, status=Reservation.Status.PENDING, expires_at__lte=now)
                .first()
            )
            if reservation is None:  # opened or handled meanwhile
                continue
            do_end_reservation(reservation, Reservation.Status.LAPSED, at=now, actor=actor)
            lapsed += 1
    return lapsed


def command_failed(command_id: str, detail: str, *, at: datetime, actor: str) -> Reservation | None:
    """The bank could not carry out an unlock: free the slot at once rather than wait for the lapse."""
    with transaction.atomic():
        reservation = (
            Reservation.objects.select_for_update(of=("self",))
            .select_related("slot__bank", "slot__asset")
            .filter(command_id=command_id, status=Reservation.Status.PENDING)
            .first()
        )
        if reservation is None:
            return None
        do_end_reservation(
            reservation,
            Reservation.Status.CANCELLED,
            at=at,
            actor=actor,
            data={"command": command_id, "detail": detail[:200]},
        )
    return reservation


# --- The fleet: registering, changing, maintaining and retiring devices ---

ASSET_FIELDS = ("asset_tag", "serial_number", "asset_type", "notes")
# A device arrives ready to lend, or goes to be set up first.
NEW_ASSET_STATUSES = (Asset.Status.AVAILABLE, Asset.Status.MAINTENANCE)
# The statuses a person sets, and what the audit log calls each change. "Checked out" is not
# among them: only the take and return flow sets and clears it.
STATUS_ACTIONS: dict[str, str] = {
    Asset.Status.AVAILABLE: "asset.back_in_service",
    Asset.Status.MAINTENANCE: "asset.maintenance",
    Asset.Status.LOST: "asset.lost",
    Asset.Status.RETIRED: "asset.retired",
}


def _asset_data(asset: Asset) -> dict[str, object]:
    return {
        "asset_tag": asset.asset_tag,
        "serial_number": asset.serial_number,
        "asset_type": asset.asset_type.code,
        "notes": asset.notes,
    }


def _save_asset(asset: Asset) -> None:
    """Validate and save; a taken tag is a field error, whoever wins a race."""
    asset.asset_tag = asset.asset_tag.strip()
    asset.serial_number = asset.serial_number.strip()
    save_unique(
        asset,
        Asset.objects.filter(asset_tag=asset.asset_tag),
        lambda: ValidationError(
            {"asset_tag": f"An asset tagged {asset.asset_tag!r} exists already."}
        ),
    )


def register_asset(
    *,
    asset_tag: str,
    asset_type: AssetType,
    actor: str,
    serial_number: str = "",
    notes: str = "",
    status: str = Asset.Status.AVAILABLE,
    now: datetime | None = None,
) -> Asset:
    """Add a device to the fleet, available or in maintenance while it is set up.

    Refused (``ValidationError``): a tag already taken, any other status. Which slot holds it
    is not this action's business: that is where the device physically is.
    """
    if status not in NEW_ASSET_STATUSES:
        raise ValidationError({"status": "A new asset starts available or in maintenance."})
    now = now or timezone.now()
    with transaction.atomic():
        asset = Asset(
            asset_tag=asset_tag,
            asset_type=asset_type,
            serial_number=serial_number,
            notes=notes,
            status=status,
        )
        _save_asset(asset)
        audit.record(
            "asset.registered",
            actor=actor,
            subject=asset,
            data={**_asset_data(asset), "status": asset.status},
            at=now,
        )
    return asset


def check_update_asset(asset: Asset, changes: Mapping[str, object]) -> None:
    """Refuse what ``update_asset`` may not change on ``asset`` now.

    ``ValueError`` for a field it never changes (the status has actions of its own);
    ``ValidationError`` for a new type while the device is lent or being taken, since the loan
    was granted, and its due time set, for the old one.
    """
    unknown = set(changes) - set(ASSET_FIELDS)
    if "status" in unknown:
        raise ValueError("An asset's status changes through set_asset_status or retire_asset.")
    if unknown:
        raise ValueError(f"Not an asset field: {', '.join(sorted(unknown))}")
    new_type = changes.get("asset_type")
    if (
        isinstance(new_type, AssetType)
        and new_type.pk != asset.asset_type_id
        and asset.is_on_loan()
    ):
        raise ValidationError(
            {"asset_type": f"{asset.asset_tag} is on loan; change its type once it is back."}
        )


def update_asset(
    asset: Asset, *, actor: str, now: datetime | None = None, **changes: object
) -> Asset:
    """Change a device's tag, serial number, type or notes; never its status."""
    now = now or timezone.now()
    with transaction.atomic():
        asset = Asset.objects.select_for_update().get(pk=asset.pk)
        check_update_asset(asset, changes)
        before = _asset_data(asset)
        for name, value in changes.items():
            setattr(asset, name, value)
        _save_asset(asset)
        after = _asset_data(asset)
        changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        if changed:
            audit.record("asset.updated", actor=actor, subject=asset, data=changed, at=now)
    return asset


def check_status_change(asset: Asset, status: str, reason: str = "") -> None:
    """Refuse (``ValidationError``) a status a person may not give ``asset`` now.

    A device that is out, or being taken from a bank right now, keeps its status until the
    take or return flow is done with it. Taking one out of circulation needs a reason.
    """
    if status == Asset.Status.CHECKED_OUT:
        raise ValidationError({"status": "Only the take and return flow checks assets out."})
    if status not in STATUS_ACTIONS:
        raise ValidationError({"status": f"{status!r} is not an asset status."})
    if status == asset.status:
        return
    if asset.is_on_loan():
        raise ValidationError(
            f"{asset.asset_tag} is checked out or being taken from a bank; "
            "its status can change once it is back."
        )
    if status != Asset.Status.AVAILABLE and len(reason.strip()) < 3:
        raise ValidationError({"reason": "Say why the asset leaves circulation."})


def _set_status(
    asset: Asset,
    status: str,
    *,
    actor: str,
    reason: str,
    now: datetime | None,
    only_from: tuple[str, ...] = (),
) -> Asset:
    now = now or timezone.now()
    with transaction.atomic():
        # Lock the device's slot first, as a take does: a take already under way commits its
        # checkout before we look for one.
        list(Slot.objects.select_for_update().filter(asset_id=asset.pk).values_list("pk"))
        asset = Asset.objects.select_for_update().get(pk=asset.pk)
        if asset.status == status:
            return asset
        if only_from and asset.status not in only_from:
            raise ValidationError(
                f"{asset.asset_tag} is {asset.get_status_display().lower()}, "
                f"not {' or '.join(Asset.Status(s).label.lower() for s in only_from)}."
            )
        check_status_change(asset, status, reason)
        before = asset.status
        asset.status = status
        asset.save(update_fields=["status"])
        audit.record(
            STATUS_ACTIONS[status],
            actor=actor,
            subject=asset,
            data={"asset_tag": asset.asset_tag, "from": before, "reason": reason.strip()[:200]},
            at=now,
        )
    return asset


def set_asset_status(
    asset: Asset, status: str, *, actor: str, reason: str = "", now: datetime | None = None
) -> Asset:
    """Put a device back in service, into maintenance, or mark it lost or retired.

    Refused (``ValidationError``) as ``check_status_change`` says. Giving it the status it
    has changes nothing.
    """
    return _set_status(asset, status, actor=actor, reason=reason, now=now)


def retire_asset(asset: Asset, *, actor: str, reason: str, now: datetime | None = None) -> Asset:
    """Take a device out of the fleet for good; the audit log keeps why."""
    return _set_status(asset, Asset.Status.RETIRED, actor=actor, reason=reason, now=now)


def set_maintenance(
    asset: Asset,
    *,
    in_maintenance: bool,
    actor: str,
    reason: str = "",
    now: datetime | None = None,
) -> Asset:
    """Send a device to maintenance (with a reason) or bring it back into service.

    Only a device in maintenance comes back this way: a lost or retired one is not
    silently put back into circulation.
    """
    if in_maintenance:
        return _set_status(asset, Asset.Status.MAINTENANCE, actor=actor, reason=reason, now=now)
    return _set_status(
        asset,
        Asset.Status.AVAILABLE,
        actor=actor,
        reason=reason,
        now=now,
        only_from=(Asset.Status.MAINTENANCE,),
    )
