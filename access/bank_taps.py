"""Recording a tap the bank decided itself (docs/device-protocol.md, "Taps are decided at the bank").

The bank has already unlocked (or refused) by the time its ``tap`` event arrives, perhaps hours
later after an outage. The server records what happened with its real time, opens the same
hold on its side so the door and presence events that follow complete the take or return as
usual, and re-checks the decision with the same core on its own current state: where the two
disagree about whether the person may take or return, one ``decision_mismatch`` alert names
both snapshot versions. A take that physically happened is never dropped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from access import core
from access.actions import flag_misuse, record_presentation, select_badge
from access.models import AccessEvent, Badge, Employee
from access.snapshot_builder import server_decision
from assets import actions as asset_actions
from assets.models import Asset, Checkout, Reservation
from devices.models import LockerBank, Slot
from lockerhub import events
from lockerhub.actions import raise_alert
from lockerhub.models import Alert

logger = logging.getLogger(__name__)

# Denials that only say which door was free (the bank and the server may see slots
# differently for a moment), not whether the person may take or return at all.
SLOT_REASONS = frozenset(
    {
        core.Reason.NO_ASSET_AVAILABLE,
        core.Reason.NO_RETURN_SLOT,
        core.Reason.PIN_REQUIRED,
        core.Reason.PIN_INCORRECT,
        core.Reason.SNAPSHOT_STALE,
        core.Reason.BANK_NOT_READY,
    }
)
# A tap older than this is a replay after an outage: recorded, but not flashed on the kiosk.
LIVE_FOR = timedelta(seconds=30)


def disagree(bank_granted: bool, bank_reason: str, server: core.Decision) -> bool:
    """Whether the bank's decision and the server's differ on what the person may do."""
    if bank_granted and server.granted:
        return str(bank_reason) != str(server.reason)  # a take where a return was due, or back
    if bank_granted:
        return server.reason not in SLOT_REASONS
    if server.granted:
        return bank_reason not in SLOT_REASONS
    return False


def _moment(epoch: Any) -> datetime | None:
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        return datetime.fromtimestamp(epoch, UTC)
    return None


def record_bank_tap(
    bank: LockerBank, body: dict[str, Any], *, at: datetime, actor: str
) -> AccessEvent:
    """Record a tap decided at ``bank`` (its ``tap`` event ``body``), observed at ``at``."""
    uid = body["uid"]
    granted = bool(body["granted"])
    reason = str(body["reason"])
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        badge = select_badge(uid)
        employee = badge.employee if badge else None
        # The server's own decision for the same tap, at the tap's time, before this tap's hold.
        server, _, _ = server_decision(bank, uid, now=at)
        hold: Reservation | None = None
        if granted and isinstance(body.get("slot"), int):
            hold = _open_hold(bank, body, employee, badge, at=at, actor=actor)
        access_event = record_presentation(
            bank,
            uid,
            badge,
            granted=granted,
            reason=reason,
            hold=hold,
            at=at,
            actor=actor,
            data={"decided_at": "bank", "snapshot_version": body.get("version")},
        )
        if now - at < LIVE_FOR:
            events.broadcast(
                events.bank_group(bank.code), "tap", _kiosk_payload(body, employee, hold)
            )
        flag_misuse(bank, uid, reason, employee, at=at)
        if disagree(granted, reason, server):
            _mismatch(bank, body, server, access_event, employee, at=at)
    return access_event


def _kiosk_payload(
    body: dict[str, Any], employee: Employee | None, hold: Reservation | None
) -> dict[str, Any]:
    """What the kiosk shows of the tap: the words the bank's own screen showed."""
    asset = hold.checkout.asset if hold is not None and hold.checkout is not None else None
    said = core.Decision(
        granted=bool(body["granted"]),
        reason=core.Reason(body["reason"]),
        first_name=employee.first_name if employee is not None else "",
        purpose=body.get("purpose"),
        slot=body.get("slot"),
        asset=body.get("asset"),
        type_name=asset.asset_type.name if asset is not None else "device",
    )
    payload = {
        "granted": said.granted,
        "reason": str(said.reason),
        "message": said.message,
        "purpose": said.purpose,
        "slot": said.slot,
        "asset": said.asset,
    }
    if employee is not None:
        payload["first_name"] = employee.first_name
    return payload


def _mismatch(
    bank: LockerBank,
    body: dict[str, Any],
    server: core.Decision,
    access_event: AccessEvent,
    employee: Employee | None,
    *,
    at: datetime,
) -> None:
    bank_version = body.get("version")
    server_version = LockerBank.objects.values_list("snapshot_version", flat=True).get(pk=bank.pk)
    verdict = "granted" if body["granted"] else "denied"
    raise_alert(
        Alert.Kind.DECISION_MISMATCH,
        # One alert per badge and bank snapshot: taps again on the same stale list are one case.
        f"decision-mismatch:{bank.code}:{body['uid']}:{bank_version}",
        f"{bank.code} {verdict} a tap the server would have "
        f"{'granted' if server.granted else 'denied'} ({body['reason']} vs {server.reason})",
        severity=Alert.Severity.CRITICAL if body["granted"] else Alert.Severity.WARNING,
        details={
            "uid": body["uid"],
            "bank_decision": body["reason"],
            "server_decision": str(server.reason),
            "bank_snapshot_version": bank_version,
            "server_snapshot_version": server_version,
            "slot": body.get("slot"),
            "asset": body.get("asset"),
            "tapped_at": at.isoformat(),
        },
        now=at,
        bank=bank,
        site_id=bank.site_id,
        employee=employee,
    )


def _open_hold(
    bank: LockerBank,
    body: dict[str, Any],
    employee: Employee | None,
    badge: Badge | None,
    *,
    at: datetime,
    actor: str,
) -> Reservation | None:
    """The server's side of the bank's hold on a door: the reservation the door events end."""
    slot = (
        Slot.objects.select_for_update(of=("self",))
        .select_related("asset__asset_type")
        .filter(bank=bank, number=body["slot"])
        .first()
    )
    if slot is None:
        logger.warning("bank %s granted a tap at unknown door %s", bank.code, body["slot"])
        return None
    slot.bank = bank
    current = (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("checkout")
        .filter(slot=slot, status__in=Reservation.ACTIVE_STATUSES)
        .first()
    )
    if body.get("again") and current is not None:
        return current  # the same door shown again: the hold is already there
    if current is not None:
        if current.status != Reservation.Status.PENDING:
            logger.warning(
                "bank %s: door %s is open already; no second hold", bank.code, slot.number
            )
            return None
        asset_actions.do_end_reservation(
            current,
            Reservation.Status.CANCELLED,
            at=at,
            actor=actor,
            data={"reason": "superseded by a tap decided at the bank"},
        )
    purpose = body.get("purpose")
    checkout = None
    if employee is not None and purpose == core.Purpose.TAKE:
        checkout = _take_checkout(slot, employee, badge, body, at=at)
    elif employee is not None and purpose == core.Purpose.RETURN:
        checkout = _return_checkout(bank, employee, body, at=at, actor=actor)
    timeout = asset_actions.reservation_timeout()
    if checkout is None:
        # Nothing on record to lend or take back here, but the door did open for someone:
        # hold it as a plain opening, so the door events are not taken for a forced door.
        reservation = Reservation.objects.create(
            slot=slot,
            purpose=Reservation.Purpose.REMOTE,
            requested_by_actor=actor,
            reason=f"tap decided at the bank ({purpose}) with no matching record"[:200],
            created_at=at,
            expires_at=at + timeout,
            decided_at_bank=True,
        )
    else:
        reservation = Reservation.objects.create(
            slot=slot,
            checkout=checkout,
            purpose=purpose,
            created_at=at,
            expires_at=at + timeout,
            decided_at_bank=True,
        )
    slot.lock_state = Slot.LockState.UNLOCKED
    slot.save(update_fields=["lock_state"])
    asset_actions.broadcast_slot(slot)
    return reservation


def _take_checkout(
    slot: Slot, employee: Employee, badge: Badge | None, body: dict[str, Any], *, at: datetime
) -> Checkout | None:
    asset = slot.asset
    if asset is None and body.get("asset"):
        asset = Asset.objects.filter(asset_tag=body["asset"]).select_related("asset_type").first()
    if asset is None:
        return None
    asset = Asset.objects.select_for_update().select_related("asset_type").get(pk=asset.pk)
    if Checkout.objects.open().filter(asset=asset).exists():
        return None
    shift_end = _moment(body.get("shift_end"))
    return Checkout.objects.create(
        asset=asset,
        employee=employee,
        badge=badge,
        slot_out=slot,
        reserved_at=at,
        shift_end_at=shift_end,
        due_at=asset_actions.due_at_for(asset.asset_type, at, shift_end),
    )


def _return_checkout(
    bank: LockerBank, employee: Employee, body: dict[str, Any], *, at: datetime, actor: str
) -> Checkout | None:
    loans = Checkout.objects.active().filter(employee=employee).select_for_update(of=("self",))
    number = body.get("checkout")
    checkout = None
    if isinstance(number, int) and number > 0:
        checkout = loans.filter(pk=number).first()
    if checkout is None and body.get("asset"):
        # A loan the bank made offline has no server id yet: the device names it.
        checkout = loans.filter(asset__asset_tag=body["asset"]).first()
    if checkout is None:
        return None
    # One loan, one return in progress, whatever the bank: one still waiting elsewhere ends.
    for other in (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("slot__bank")
        .filter(checkout=checkout, status=Reservation.Status.PENDING)
    ):
        asset_actions.do_end_reservation(
            other,
            Reservation.Status.CANCELLED,
            at=at,
            actor=actor,
            data={"reason": f"returned at {bank.code}"},
        )
    return checkout
