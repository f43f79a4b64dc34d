"""Every state change of banks and slots: sensor readings, remote opens, service flags,
devices put in or taken out by hand, and banks and doors set up by hand.

Sensor readings arrive from the bank worker (devices/consumers.py) and are applied here with
the slot row locked; the checkout transitions they trigger live in ``assets.actions``.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access.models import AccessEvent
from assets import actions as asset_actions
from assets.models import Asset, Checkout, Reservation
from devices import bankbus
from devices.models import FailedDeviceEvent, Kiosk, LockerBank, Site, Slot
from lockerhub import audit, events
from lockerhub.actions import do_resolve_gone, raise_alert
from lockerhub.models import Alert
from lockerhub.writes import save_unique

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class SlotChange:
    """What one sensor reading changed."""

    slot: Slot
    changed: bool
    reservation: Reservation | None = None
    door_forced: bool = False


def _locked_slot(bank: LockerBank, number: int) -> Slot:
    slot = (
        Slot.objects.select_for_update(of=("self",))
        .select_related("asset")
        .get(bank=bank, number=number)
    )
    slot.bank = bank  # the caller's row: no join to read it again on every sensor event
    return slot


def record_slot_state(
    bank: LockerBank,
    number: int,
    *,
    at: datetime,
    door_open: bool | None = None,
    present: bool | None = None,
    charge_state: str | None = None,
    actor: str | None = None,
) -> SlotChange:
    """Apply one reading of a slot's sensors; only what changed has any effect.

    Order matters when several change at once: the door opens, the asset leaves, the door
    closes, so presence is applied after an opening and before a closing.
    """
    actor = actor or audit.actor_for_bank(bank.code)
    # No savepoint when nested (the bank worker's events run inside apply_worker_event): an
    # error here fails the whole event, and a savepoint would be two more round trips per event.
    with transaction.atomic(savepoint=False):
        slot = _locked_slot(bank, number)
        change = SlotChange(slot, changed=False)
        if door_open is True and slot.door_state != Slot.DoorState.OPEN:
            _door_opened(slot, at, actor, change)
        if present is not None and present != slot.present:
            slot.present = present
            slot.save(update_fields=["present"])
            asset_actions.do_presence_changed(slot, present, at)
            change.changed = True
        if door_open is False and slot.door_state != Slot.DoorState.CLOSED:
            slot.door_state = Slot.DoorState.CLOSED
            slot.lock_state = Slot.LockState.LOCKED
            slot.door_opened_at = None
            slot.state_changed_at = at
            change.reservation = (
                asset_actions.do_door_closed(slot, at, actor=actor) or change.reservation
            )
            # One UPDATE for the door and the device a completed take or return moved.
            slot.save(
                update_fields=[
                    "door_state", "lock_state", "door_opened_at", "state_changed_at", "asset"
                ]
            )  # fmt: skip
            change.changed = True
        if charge_state is not None and charge_state != slot.charge_state:
            slot.set_charge_state(charge_state, at)
            slot.save(update_fields=["charge_state", "charge_state_since"])
            change.changed = True
            if charge_state == Slot.ChargeState.FAULT:
                raise_alert(
                    Alert.Kind.CHARGE_FAULT,
                    f"charge-fault:{bank.code}:{number}",
                    f"Charge fault at {bank.code} door {number}",
                    now=at,
                    bank=bank,
                    slot=slot,
                    site_id=bank.site_id,
                )
        if change.changed:
            asset_actions.broadcast_slot(slot)
    return change


def _door_opened(slot: Slot, at: datetime, actor: str, change: SlotChange) -> None:
    slot.door_state = Slot.DoorState.OPEN
    slot.lock_state = Slot.LockState.UNLOCKED
    slot.door_opened_at = at
    slot.state_changed_at = at
    slot.save(update_fields=["door_state", "lock_state", "door_opened_at", "state_changed_at"])
    change.changed = True
    change.reservation = asset_actions.do_door_opened(slot, at, actor=actor)
    if change.reservation is None:
        # Nobody asked for this door to open: forced, or a lock that failed.
        change.door_forced = True
        bank = slot.bank
        audit.record(
            "slot.door_forced",
            actor=actor,
            subject=slot,
            data={"bank": bank.code, "slot": slot.number},
            at=at,
        )
        raise_alert(
            Alert.Kind.DOOR_FORCED,
            # The worker's clock may carry any zone: key on UTC so a replay raises it once.
            f"door-forced:{bank.code}:{slot.number}:{at.astimezone(UTC):%Y%m%d%H%M}",
            f"Door {slot.number} at {bank.code} opened without an unlock",
            severity=Alert.Severity.CRITICAL,
            now=at,
            bank=bank,
            slot=slot,
            site_id=bank.site_id,
        )


def remote_open(
    slot: Slot,
    *,
    user: AbstractBaseUser | AnonymousUser,
    reason: str,
    actor: str | None = None,
    now: datetime | None = None,
) -> Reservation:
    """A supervisor opens a door from the dashboard or through the API. A reason is mandatory
    and audited; an API key's caller is named by ``actor`` (``audit.caller``)."""
    requested_by, actor = audit.caller(user, actor)
    reason = reason.strip()
    if len(reason) < 3:
        raise ValueError("Say why the door is opened remotely.")
    now = now or timezone.now()
    with transaction.atomic():
        slot = Slot.objects.select_for_update(of=("self",)).select_related("bank").get(pk=slot.pk)
        if Reservation.objects.active().filter(slot=slot).exists():
            raise ValueError(f"Door {slot.number} is already waiting to be opened.")
        reservation = Reservation.objects.create(
            slot=slot,
            purpose=Reservation.Purpose.REMOTE,
            requested_by=requested_by,
            requested_by_actor=actor,
            reason=reason[:200],
            created_at=now,
            expires_at=now + asset_actions.reservation_timeout(),
            command_id=uuid.uuid4(),
        )
        audit.record(
            "slot.remote_open",
            actor=actor,
            subject=slot,
            data={"bank": slot.bank.code, "slot": slot.number, "reason": reason[:200]},
            at=now,
        )
        send_command(slot.bank)
    return reservation


def set_out_of_service(
    slot: Slot, *, out_of_service: bool, reason: str = "", actor: str, now: datetime | None = None
) -> Slot:
    """Take a slot out of circulation (or put it back). A slot out of service is never chosen."""
    now = now or timezone.now()
    with transaction.atomic():
        slot = (
            Slot.objects.select_for_update(of=("self",))
            .select_related("bank", "asset")
            .get(pk=slot.pk)
        )
        if slot.out_of_service == out_of_service:
            return slot
        slot.out_of_service = out_of_service
        slot.out_of_service_reason = reason[:200] if out_of_service else ""
        slot.save(update_fields=["out_of_service", "out_of_service_reason"])
        audit.record(
            "slot.out_of_service" if out_of_service else "slot.back_in_service",
            actor=actor,
            subject=slot,
            data={"bank": slot.bank.code, "slot": slot.number, "reason": reason[:200]},
            at=now,
        )
        asset_actions.broadcast_slot(slot)
    return slot


def send_command(bank: LockerBank) -> None:
    """Wake the bank's connection after commit: it reads the command from the database
    (``pending_commands``) and sends it. No Redis on the way to a door."""
    bankbus.wake(bank.code)


def record_heartbeat(bank: LockerBank, at: datetime) -> bool:
    """Note a heartbeat; returns True when the bank just came back online."""
    # The usual case, a bank already online, is one statement in autocommit: every bank sends
    # one every few seconds.
    if LockerBank.objects.filter(pk=bank.pk, is_online=True).update(last_heartbeat_at=at):
        return False
    with transaction.atomic():
        came_online = (
            LockerBank.objects.filter(pk=bank.pk, is_online=False).update(
                is_online=True, last_heartbeat_at=at
            )
            == 1
        )
        if not came_online:
            LockerBank.objects.filter(pk=bank.pk).update(last_heartbeat_at=at)
        else:
            # Resolved now rather than at the next fault sweep, so no one chases a bank that is
            # already back.
            do_resolve_gone(
                Alert.objects.filter(kind=Alert.Kind.BANK_OFFLINE, bank_id=bank.pk),
                now=at,
                reason="back online",
            )
            audit.record("bank.online", actor=audit.actor_for_bank(bank.code), subject=bank, at=at)
            events.broadcast(
                events.bank_group(bank.code), "bank.status", {"bank": bank.code, "online": True}
            )
    return came_online


def mark_stale_banks_offline(now: datetime, *, after: timedelta) -> list[str]:
    """Banks whose heartbeats stopped are offline. Claimed by a conditional update, so safe to run twice."""
    codes = []
    for bank in LockerBank.objects.filter(is_online=True, last_heartbeat_at__lt=now - after):
        with transaction.atomic():
            if (
                LockerBank.objects.filter(
                    pk=bank.pk, is_online=True, last_heartbeat_at__lt=now - after
                ).update(is_online=False)
                != 1
            ):
                continue
            audit.record(
                "bank.offline",
                actor=audit.SYSTEM,
                subject=bank,
                data={"last_heartbeat_at": bank.last_heartbeat_at},
                at=now,
            )
            events.broadcast(
                events.bank_group(bank.code), "bank.status", {"bank": bank.code, "online": False}
            )
            raise_alert(
                Alert.Kind.BANK_OFFLINE,
                f"bank-offline:{bank.code}",
                f"Bank {bank.code} is offline",
                severity=Alert.Severity.CRITICAL,
                now=now,
                bank=bank,
                site_id=bank.site_id,
            )
            codes.append(bank.code)
    return codes


# 16 lock boards of 16 locks each: every address a KR-CU16 address byte can name.
MAX_SLOTS = 256


def rotate_token(bank: LockerBank, *, actor: str, now: datetime | None = None) -> str:
    """Give ``bank`` a new device token and return it (only its hash is kept). The old one stops working."""
    now = now or timezone.now()
    with transaction.atomic():
        bank = LockerBank.objects.select_for_update().get(pk=bank.pk)
        token = bank.new_token()
        bank.save(update_fields=["token_hash"])
        audit.record("bank.token_rotated", actor=actor, subject=bank, at=now)
    return token


def create_bank(
    site: Site,
    code: str,
    *,
    slots: int,
    actor: str,
    name: str = "",
    protocol: str = LockerBank.Protocol.KERONG_CU16,
    chargers: bool = True,
    location: str = "",
    invert_hook: bool = False,
    door_held_open_seconds: int | None = None,
    now: datetime | None = None,
) -> tuple[LockerBank, str]:
    """Create a bank with ``slots`` doors (16 per board, lock 1 = index 0) and return it with its token.

    Refused (``ValidationError``): a code already taken, more doors than 16 boards address.
    """
    if not 0 <= slots <= MAX_SLOTS:
        raise ValidationError({"slots": f"A bank has 0 to {MAX_SLOTS} doors (16 boards of 16)."})
    now = now or timezone.now()
    with transaction.atomic():
        bank = LockerBank(
            site=site,
            code=code,
            name=name or code,
            protocol=protocol,
            location=location,
            invert_hook=invert_hook,
        )
        if door_held_open_seconds is not None:
            bank.door_held_open_seconds = door_held_open_seconds
        token = bank.new_token()
        bank.full_clean()
        bank.save()
        Slot.objects.bulk_create(
            Slot(
                bank=bank,
                number=n,
                board=(n - 1) // 16,
                lock_index=(n - 1) % 16,
                has_charger=chargers,
                charge_state=Slot.ChargeState.UNKNOWN,
                charge_state_since=now,
                state_changed_at=now,
            )
            for n in range(1, slots + 1)
        )
        audit.record(
            "bank.created",
            actor=actor,
            subject=bank,
            data={"site": site.name, "slots": slots},
            at=now,
        )
    return bank, token


# --- The bank worker's connection (devices/consumers.py) ---


def register_worker(bank: LockerBank, worker_id: uuid.UUID, *, at: datetime) -> int:
    """A worker said hello. Returns the highest event sequence already applied from its journal.

    A new journal identity (a replaced or wiped worker) starts counting afresh.
    """
    with transaction.atomic():
        bank = LockerBank.objects.select_for_update().get(pk=bank.pk)
        if bank.worker_id != worker_id:
            audit.record(
                "bank.worker_registered",
                actor=audit.actor_for_bank(bank.code),
                subject=bank,
                data={"worker_id": str(worker_id), "previous": str(bank.worker_id or "")},
                at=at,
            )
            bank.worker_id = worker_id
            bank.last_event_seq = 0
            bank.save(update_fields=["worker_id", "last_event_seq"])
    record_heartbeat(bank, at)
    return bank.last_event_seq


_CLAIM_SEQ_SQL = 'UPDATE "devices_lockerbank" SET "last_event_seq" = %s WHERE "id" = %s AND "last_event_seq" < %s'


def apply_worker_event(
    bank: LockerBank, seq: int, apply: Callable[[LockerBank], T]
) -> tuple[bool, T | None]:
    """Run ``apply`` for event ``seq`` unless it was applied before; returns (applied, result).

    The sequence mark is written in the same transaction as the event's effects, so an event
    is applied exactly once even when the worker replays it after a lost acknowledgement.
    """
    with transaction.atomic():
        # One statement both claims the sequence number and takes the bank's row lock, which
        # is held to commit: events of one bank are applied one at a time, in order.
        # Written out, not built by the ORM: every event of every bank runs it.
        with transaction.get_connection().cursor() as cursor:
            cursor.execute(_CLAIM_SEQ_SQL, [seq, bank.pk, seq])
            claimed = cursor.rowcount
        if not claimed:
            return False, None
        if seq > bank.last_event_seq + 1:
            # bank.last_event_seq is the caller's copy; a gap is worth a look, not a refusal.
            logger.warning(
                "bank %s: events %d-%d never arrived", bank.code, bank.last_event_seq + 1, seq - 1
            )
        result = apply(bank)
    bank.last_event_seq = seq
    return True, result


def end_bank_hold(bank: LockerBank, number: int, *, at: datetime, actor: str) -> bool:
    """The bank reports that a hold it granted ended with its door never opened: lapse it."""
    reservation = (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("slot__bank", "slot__asset")
        .filter(
            slot__bank=bank,
            slot__number=number,
            status=Reservation.Status.PENDING,
            decided_at_bank=True,
        )
        .first()
    )
    if reservation is None:
        return False
    asset_actions.do_end_reservation(reservation, Reservation.Status.LAPSED, at=at, actor=actor)
    return True


def record_failed_event(
    bank: LockerBank, seq: int, kind: str, body: dict, error: BaseException, *, at: datetime
) -> FailedDeviceEvent | None:
    """Keep an event whose apply failed, with its error, and raise one alert; its sequence
    number is claimed so it is acknowledged and the bank goes on (no poison events)."""
    detail = f"{type(error).__name__}: {error}"[:2000]

    def keep(bank: LockerBank) -> FailedDeviceEvent:
        failed = FailedDeviceEvent.objects.create(
            bank=bank, worker_id=bank.worker_id, seq=seq, type=kind, body=body, error=detail
        )
        raise_alert(
            Alert.Kind.DEVICE_EVENT_FAILED,
            f"device-event-failed:{bank.code}:{bank.worker_id}:{seq}",
            f"{bank.code} event {seq} ({kind}) could not be applied",
            severity=Alert.Severity.CRITICAL,
            details={"seq": seq, "type": kind, "error": detail[:500]},
            now=at,
            bank=bank,
            site_id=bank.site_id,
        )
        return failed

    _, failed = apply_worker_event(bank, seq, keep)
    return failed


def reconcile_snapshot(bank: LockerBank, slots: list[dict], *, at: datetime) -> int:
    """The worker's snapshot is the physical truth: bring every slot in line. Returns slots changed.

    A hold the bank granted whose door went unseen (the worker was down while it opened and
    closed) is settled by what the sensors say now: a device gone from a take's slot, or back
    in a return's, completed it; a hold past its time that changed nothing lapses. No door
    stays held for ever, and no take that physically happened is dropped.
    """
    by_number = {entry["slot"]: entry for entry in slots}
    actor = audit.actor_for_bank(bank.code)
    for reservation in (
        Reservation.objects.select_related("slot")
        .filter(slot__bank=bank, status=Reservation.Status.PENDING, decided_at_bank=True)
        .order_by("created_at")
    ):
        entry = by_number.get(reservation.slot.number)
        moved = entry is not None and entry.get("present") is (
            reservation.purpose == Reservation.Purpose.RETURN
        )
        if moved and reservation.purpose != Reservation.Purpose.REMOTE:
            number = reservation.slot.number
            record_slot_state(bank, number, at=at, door_open=True, actor=actor)
            record_slot_state(bank, number, at=at, present=entry["present"], actor=actor)
            record_slot_state(bank, number, at=at, door_open=False, actor=actor)
        elif reservation.expires_at <= at:
            locked = (
                Reservation.objects.select_for_update(of=("self",))
                .select_related("slot__bank", "slot__asset")
                .filter(pk=reservation.pk, status=Reservation.Status.PENDING)
                .first()
            )
            if locked is not None:
                asset_actions.do_end_reservation(
                    locked,
                    Reservation.Status.LAPSED,
                    at=at,
                    actor=actor,
                    data={"reason": "the bank no longer holds it"},
                )
    known = set(bank.slots.values_list("number", flat=True))
    changed = 0
    for entry in slots:
        if entry["slot"] not in known:
            logger.warning("bank %s snapshot names unknown slot %s", bank.code, entry["slot"])
            continue
        change = record_slot_state(
            bank,
            entry["slot"],
            at=at,
            door_open=entry["door_open"],
            present=entry.get("present"),
            charge_state=entry.get("charge_state"),
        )
        changed += change.changed
    return changed


def pending_commands(bank: LockerBank, now: datetime) -> list[dict]:
    """Unlocks issued for ``bank`` whose doors have not opened yet and that have not expired."""
    # Holds the bank decided itself it has unlocked already: nothing to send.
    reservations = Reservation.objects.filter(
        slot__bank=bank,
        status=Reservation.Status.PENDING,
        expires_at__gt=now,
        decided_at_bank=False,
    ).select_related("slot")
    return [asset_actions.unlock_command(r) for r in reservations]


def flag_doors_held_open(now: datetime) -> int:
    """Raise an alert for each door open longer than its bank allows (once per opening)."""
    raised = 0
    open_slots = Slot.objects.filter(
        door_state=Slot.DoorState.OPEN, door_opened_at__isnull=False
    ).select_related("bank")
    for slot in open_slots:
        limit = timedelta(seconds=slot.bank.door_held_open_seconds)
        if slot.door_opened_at + limit > now:
            continue
        _, created = raise_alert(
            Alert.Kind.DOOR_HELD_OPEN,
            f"door-held-open:{slot.bank.code}:{slot.number}:{slot.door_opened_at.isoformat()}",
            f"Door {slot.number} at {slot.bank.code} open for over {slot.bank.door_held_open_seconds} s",
            now=now,
            bank=slot.bank,
            site_id=slot.bank.site_id,
            details={"opened_at": slot.door_opened_at.isoformat()},
        )
        raised += created
    return raised


# --- Kiosk screens (devices/views.py, devices/consumers.py) ---

PAIRING_VALID_FOR = timedelta(hours=24)
# A kiosk's last_seen_at is refreshed at most this often, so page loads and reconnects do
# not turn into a write each.
SEEN_EVERY = timedelta(minutes=1)
# How long after a return was granted its kiosk may still report damage on it.
DAMAGE_REPORT_WINDOW = timedelta(minutes=5)


@dataclass
class Pairing:
    """A kiosk and its one-time pairing code (shown once, as a URL)."""

    kiosk: Kiosk
    code: str


def pair_kiosk(bank: LockerBank, name: str, *, actor: str, now: datetime | None = None) -> Pairing:
    """Issue a one-time pairing code for the kiosk ``name`` at ``bank`` (made if it is new).

    Pairing an existing kiosk again gives it a new code; its current browser keeps working
    until the new code is redeemed somewhere.
    """
    name = name.strip()
    if not name:
        raise ValueError("Give the kiosk a name, e.g. the gate it hangs at.")
    now = now or timezone.now()
    code = secrets.token_urlsafe(24)
    with transaction.atomic():
        kiosk = Kiosk.objects.active().select_for_update().filter(bank=bank, name=name[:80]).first()
        if kiosk is None:
            kiosk = Kiosk(bank=bank, name=name[:80], created_at=now)
        kiosk.pairing_code_hash = LockerBank.hash_token(code)
        kiosk.pairing_expires_at = now + PAIRING_VALID_FOR
        kiosk.save()
        audit.record(
            "kiosk.pairing_issued",
            actor=actor,
            subject=kiosk,
            data={"bank": bank.code, "name": kiosk.name, "expires_at": kiosk.pairing_expires_at},
            at=now,
        )
    return Pairing(kiosk, code)


def redeem_kiosk_pairing(code: str, *, now: datetime | None = None) -> tuple[Kiosk, str]:
    """Exchange a pairing code for the kiosk's long-lived token (returned once, for a cookie).

    The code works once; the token it replaces stops working.
    """
    now = now or timezone.now()
    with transaction.atomic():
        kiosk = (
            Kiosk.objects.active()
            .select_for_update()
            .select_related("bank")
            .filter(pairing_code_hash=LockerBank.hash_token(code))
            .first()
        )
        if kiosk is None or not kiosk.pairing_open(now):
            raise ValueError("This pairing link is not valid (used, expired or revoked).")
        token = f"lhk_{secrets.token_urlsafe(32)}"
        kiosk.token_hash = LockerBank.hash_token(token)
        kiosk.pairing_code_hash = ""
        kiosk.pairing_expires_at = None
        kiosk.paired_at = kiosk.last_seen_at = now
        kiosk.save(
            update_fields=[
                "token_hash",
                "pairing_code_hash",
                "pairing_expires_at",
                "paired_at",
                "last_seen_at",
            ]
        )
        audit.record(
            "kiosk.paired",
            actor=audit.SYSTEM,
            subject=kiosk,
            data={"bank": kiosk.bank.code, "name": kiosk.name},
            at=now,
        )
    return kiosk, token


def revoke_kiosk(kiosk: Kiosk, *, actor: str, now: datetime | None = None) -> Kiosk:
    """Stop trusting a kiosk screen: its page and its live feed are refused from now on."""
    now = now or timezone.now()
    with transaction.atomic():
        kiosk = Kiosk.objects.select_for_update().select_related("bank").get(pk=kiosk.pk)
        if kiosk.revoked_at is not None:
            return kiosk
        kiosk.revoked_at = now
        kiosk.token_hash = kiosk.pairing_code_hash = ""
        kiosk.save(update_fields=["revoked_at", "token_hash", "pairing_code_hash"])
        audit.record(
            "kiosk.revoked",
            actor=actor,
            subject=kiosk,
            data={"bank": kiosk.bank.code, "name": kiosk.name},
            at=now,
        )
        # Screens showing the feed right now drop it at once.
        events.broadcast(events.bank_group(kiosk.bank.code), "kiosk.revoked", {"kiosk": kiosk.pk})
    return kiosk


def note_kiosk_seen(kiosk: Kiosk, now: datetime | None = None) -> None:
    """Remember when a kiosk last showed up (bookkeeping, not audited)."""
    now = now or timezone.now()
    Kiosk.objects.filter(pk=kiosk.pk).filter(
        Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=now - SEEN_EVERY)
    ).update(last_seen_at=now)


def report_damage_at_kiosk(
    kiosk: Kiosk, slot_number: int, note: str, *, now: datetime | None = None
) -> Reservation:
    """A person returning a device says it is damaged, on the kiosk of the bank they return it to.

    Only a return in progress at this kiosk's own bank, behind door ``slot_number`` and granted
    in the last few minutes, can be marked; anything else is refused and changes nothing.
    """
    now = now or timezone.now()
    reservation = (
        Reservation.objects.active()
        .filter(
            slot__bank_id=kiosk.bank_id,
            slot__number=slot_number,
            purpose=Reservation.Purpose.RETURN,
            created_at__gte=now - DAMAGE_REPORT_WINDOW,
        )
        .order_by("-created_at")
        .first()
    )
    if reservation is None:
        raise ValueError(f"No return in progress behind door {slot_number}.")
    return asset_actions.report_damage(reservation, note, actor=f"kiosk:{kiosk.pk}", now=now)


# --- Stocking slots by hand ---


def check_stock_slot(slot: Slot, asset: Asset) -> None:
    """Refuse (``ValidationError``) recording that ``asset`` sits in ``slot``.

    The slot must be empty (or hold this asset already) and not be in the middle of a take or
    return; the asset must be in no other slot, not lent or being taken (it comes back through
    a return), and not lost or retired (its status changes first). The action calls this with
    both rows locked; forms call it beforehand to show refusals as field errors.
    """
    if slot.asset_id is not None and slot.asset_id != asset.pk:
        raise ValidationError({"asset": f"{slot} holds {slot.asset}; empty it first."})
    if asset.status in (Asset.Status.LOST, Asset.Status.RETIRED):
        raise ValidationError(
            {"asset": f"{asset} is {asset.get_status_display().lower()}; change its status first."}
        )
    if asset.is_on_loan():
        raise ValidationError(
            {"asset": f"{asset} is checked out or being taken; it comes back through a return."}
        )
    elsewhere = Slot.objects.filter(asset=asset).exclude(pk=slot.pk).select_related("bank").first()
    if elsewhere is not None:
        raise ValidationError({"asset": f"{asset} is in {elsewhere}; empty that slot first."})
    if slot.pk is not None and Reservation.objects.active().filter(slot=slot).exists():
        raise ValidationError(f"{slot} is held for a take or return right now; try again later.")


def stock_slot(slot: Slot, asset: Asset, *, actor: str, now: datetime | None = None) -> Slot:
    """Record that someone put ``asset`` into ``slot`` by hand (a new device, one moved).

    Refused (``ValidationError``) as ``check_stock_slot`` says. Stocking a slot with the
    asset it holds changes nothing. The door and item sensors stay the bank's to report.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Slot, then asset, in the order a take locks them.
        slot = Slot.objects.select_for_update(of=("self",)).select_related("bank").get(pk=slot.pk)
        asset = Asset.objects.select_for_update().get(pk=asset.pk)
        if slot.asset_id == asset.pk:
            return slot
        check_stock_slot(slot, asset)
        slot.asset = asset
        try:
            with transaction.atomic():
                slot.save(update_fields=["asset"])
        except IntegrityError:
            # The one-to-one is the last word when another slot got the asset meanwhile.
            raise ValidationError({"asset": f"{asset} was just put in another slot."}) from None
        audit.record(
            "slot.stocked",
            actor=actor,
            subject=slot,
            data={"bank": slot.bank.code, "slot": slot.number, "asset": asset.asset_tag},
            at=now,
        )
        asset_actions.broadcast_slot(slot)
    return slot


def check_empty_slot(slot: Slot) -> None:
    """Refuse (``ValidationError``) emptying ``slot`` while a take or return is under way there."""
    if Reservation.objects.active().filter(slot=slot).exists():
        raise ValidationError(f"{slot} is held for a take or return right now; try again later.")


def empty_slot(slot: Slot, *, actor: str, now: datetime | None = None) -> Slot:
    """Record that someone took the asset out of ``slot`` by hand (for repair, to move it).

    Refused (``ValidationError``) as ``check_empty_slot`` says. An empty slot stays as it is.
    """
    now = now or timezone.now()
    with transaction.atomic():
        slot = (
            Slot.objects.select_for_update(of=("self",))
            .select_related("bank", "asset")
            .get(pk=slot.pk)
        )
        if slot.asset_id is None:
            return slot
        check_empty_slot(slot)
        asset = slot.asset
        slot.asset = None
        slot.save(update_fields=["asset"])
        audit.record(
            "slot.emptied",
            actor=actor,
            subject=slot,
            data={"bank": slot.bank.code, "slot": slot.number, "asset": asset.asset_tag},
            at=now,
        )
        asset_actions.broadcast_slot(slot)
    return slot


# --- The layout of banks and slots, set up by hand (devices/admin.py) ---

BANK_FIELDS = (
    "site",
    "code",
    "name",
    "location",
    "protocol",
    "invert_hook",
    "door_held_open_seconds",
)
# Where a door is and what it fits. Everything else on a slot is the bank's to report or has
# an action of its own (service, stocking).
SLOT_LAYOUT_FIELDS = ("number", "board", "lock_index", "size", "has_charger")
# What the worker finds a door by: a pending unlock command already carries it.
SLOT_ADDRESS_FIELDS = ("number", "board", "lock_index")


def _bank_data(bank: LockerBank) -> dict[str, object]:
    return {name: bank.site.name if name == "site" else getattr(bank, name) for name in BANK_FIELDS}


def _changes(before: Mapping[str, object], after: Mapping[str, object]) -> dict[str, list]:
    """Old and new value of each field that changed, for the audit log."""
    return {name: [before[name], after[name]] for name in before if before[name] != after[name]}


def update_bank(
    bank: LockerBank, *, actor: str, now: datetime | None = None, **changes: object
) -> LockerBank:
    """Change a bank's site, code, name, location, protocol or hardware settings.

    The device token and what the bank reports (heartbeat, online) are not changed here.
    Refused (``ValidationError``): a code another bank has, an invalid value.
    """
    unknown = set(changes) - set(BANK_FIELDS)
    if unknown:
        raise ValueError(f"Not a bank setting: {', '.join(sorted(unknown))}")
    now = now or timezone.now()
    with transaction.atomic():
        bank = LockerBank.objects.select_for_update().select_related("site").get(pk=bank.pk)
        before = _bank_data(bank)
        for name, value in changes.items():
            setattr(bank, name, value.strip() if isinstance(value, str) else value)
        changed = _changes(before, _bank_data(bank))
        if not changed:
            return bank
        save_unique(
            bank,
            LockerBank.objects.filter(code=bank.code),
            lambda: ValidationError({"code": f"A bank {bank.code!r} exists already."}),
            update_fields=list(changed),
        )
        audit.record(
            "bank.updated",
            actor=actor,
            subject=bank,
            data={"bank": before["code"], **changed},
            at=now,
        )
    return bank


def check_delete_bank(bank: LockerBank) -> None:
    """Refuse (``ValidationError``) deleting a bank that holds devices or has history.

    Takes, returns and badge taps at a bank stay on record (reports and investigations read
    them), so only a bank that never served anyone can go.
    """
    holding = list(
        Slot.objects.filter(bank=bank, asset__isnull=False)
        .order_by("number")
        .values_list("number", flat=True)
    )
    if holding:
        doors = ", ".join(str(n) for n in holding)
        raise ValidationError(
            f"{bank.code} still holds devices behind door(s) {doors}: empty those slots first."
        )
    if _served_takes("__bank", bank) or AccessEvent.objects.filter(bank=bank).exists():
        raise ValidationError(
            f"{bank.code} has checkout, reservation or badge-tap history, which stays on "
            "record: it cannot be deleted."
        )


def _served_takes(through: str, value: object) -> bool:
    """Whether a take or return ever went through the slot (``through=""``) or any slot of
    the bank (``through="__bank"``) that ``value`` is: its history stays on record."""
    return (
        Reservation.objects.filter(**{f"slot{through}": value}).exists()
        or Checkout.objects.filter(
            Q(**{f"slot_out{through}": value}) | Q(**{f"slot_back{through}": value})
        ).exists()
    )


def delete_bank(bank: LockerBank, *, actor: str, now: datetime | None = None) -> None:
    """Remove a bank set up by mistake, with its slots and kiosks. Refused as
    ``check_delete_bank`` says."""
    now = now or timezone.now()
    with transaction.atomic():
        bank = LockerBank.objects.select_for_update().select_related("site").get(pk=bank.pk)
        # Slot rows first, as a take or a stocking locks them: none can start meanwhile.
        slots = list(Slot.objects.select_for_update().filter(bank=bank).order_by("number"))
        check_delete_bank(bank)
        audit.record(
            "bank.deleted",
            actor=actor,
            subject=bank,
            data={**_bank_data(bank), "slots": len(slots)},
            at=now,
        )
        bank.delete()


def _slot_layout(slot: Slot) -> dict[str, object]:
    return {name: getattr(slot, name) for name in SLOT_LAYOUT_FIELDS}


def _slot_data(slot: Slot) -> dict[str, object]:
    """A door as the audit log names it: bank and number, then the rest of its layout."""
    layout = _slot_layout(slot)
    return {"bank": slot.bank.code, "slot": layout.pop("number"), **layout}


def _save_slot(slot: Slot, update_fields: list[str] | None = None) -> None:
    """Validate and save a slot's layout (checked by ``check_slot_layout`` already); a race to
    a door number or lock address is refused in words, whoever wins it."""
    # Only the layout: the rest is the bank's to report (``present`` is None until it does)
    # or has an action of its own.
    others = [f.name for f in Slot._meta.fields if f.name not in SLOT_LAYOUT_FIELDS]
    slot.full_clean(exclude=others, validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            slot.save(update_fields=update_fields)
    except IntegrityError:
        raise ValidationError(
            f"Another door of {slot.bank.code} was just given that number or lock address."
        ) from None


def check_slot_layout(slot: Slot, changes: Mapping[str, object]) -> None:
    """Refuse giving ``slot`` (a new one, or the stored row) the layout values in ``changes``.

    ``ValueError`` for a field that is not layout. ``ValidationError`` for a door number or
    lock address another door of the bank has, or a new one while a take or return is on its
    way to this door (its unlock command names the old one). Forms call it beforehand to
    show the refusal as a form error; the actions call it with the row locked.
    """
    unknown = set(changes) - set(SLOT_LAYOUT_FIELDS)
    if unknown:
        raise ValueError(f"Not a slot layout field: {', '.join(sorted(unknown))}")
    if not set(changes) & set(SLOT_ADDRESS_FIELDS):
        return
    if slot.pk is not None and Reservation.objects.active().filter(slot=slot).exists():
        raise ValidationError(f"{slot} is held for a take or return right now; try again later.")
    layout = {**_slot_layout(slot), **changes}
    others = Slot.objects.filter(bank_id=slot.bank_id).exclude(pk=slot.pk)
    if others.filter(number=layout["number"]).exists():
        raise ValidationError(
            {"number": f"{slot.bank.code} has a door {layout['number']} already."}
        )
    if others.filter(board=layout["board"], lock_index=layout["lock_index"]).exists():
        raise ValidationError(
            {
                "lock_index": f"Board {layout['board']}, lock index {layout['lock_index']} is "
                f"another door's at {slot.bank.code}."
            }
        )


def add_slot(
    bank: LockerBank,
    *,
    number: int,
    board: int,
    lock_index: int,
    actor: str,
    size: str = Slot.Size.SMALL,
    has_charger: bool = True,
    now: datetime | None = None,
) -> Slot:
    """Add a door to ``bank`` (empty; a device goes in through ``stock_slot``).

    Refused (``ValidationError``) as ``check_slot_layout`` says, or for an address out of range.
    """
    now = now or timezone.now()
    with transaction.atomic():
        bank = LockerBank.objects.select_for_update().get(pk=bank.pk)
        slot = Slot(
            bank=bank,
            number=number,
            board=board,
            lock_index=lock_index,
            size=size,
            has_charger=has_charger,
            charge_state=Slot.ChargeState.UNKNOWN,
            charge_state_since=now,
            state_changed_at=now,
        )
        check_slot_layout(slot, _slot_layout(slot))
        _save_slot(slot)
        audit.record("slot.added", actor=actor, subject=slot, data=_slot_data(slot), at=now)
    return slot


def update_slot_layout(
    slot: Slot, *, actor: str, now: datetime | None = None, **changes: object
) -> Slot:
    """Change where a door is (number, board, lock index) or what it fits (size, charger).

    Only those fields are written: the sensor readings are the bank's and may move on
    meanwhile. Refused as ``check_slot_layout`` says; no change, no audit.
    """
    unknown = set(changes) - set(SLOT_LAYOUT_FIELDS)
    if unknown:
        raise ValueError(f"Not a slot layout field: {', '.join(sorted(unknown))}")
    now = now or timezone.now()
    with transaction.atomic():
        slot = Slot.objects.select_for_update(of=("self",)).select_related("bank").get(pk=slot.pk)
        new = {name: value for name, value in changes.items() if getattr(slot, name) != value}
        if not new:
            return slot
        check_slot_layout(slot, new)
        before = _slot_layout(slot)
        for name, value in new.items():
            setattr(slot, name, value)
        changed = _changes(before, _slot_layout(slot))
        _save_slot(slot, update_fields=list(changed))
        audit.record(
            "slot.layout_changed",
            actor=actor,
            subject=slot,
            data={"bank": slot.bank.code, "slot": before["number"], **changed},
            at=now,
        )
    return slot


def check_delete_slot(slot: Slot) -> None:
    """Refuse (``ValidationError``) deleting a slot that holds a device or has history."""
    if slot.asset_id is not None:
        raise ValidationError(
            f"{slot} holds {slot.asset}: take the device out (empty the slot) before deleting it."
        )
    if _served_takes("", slot):
        raise ValidationError(
            f"{slot} has take and return history, which stays on record: take it out of "
            "service instead."
        )


def delete_slot(slot: Slot, *, actor: str, now: datetime | None = None) -> None:
    """Remove an empty door that never served a take or return. Refused as
    ``check_delete_slot`` says."""
    now = now or timezone.now()
    with transaction.atomic():
        slot = (
            Slot.objects.select_for_update(of=("self",))
            .select_related("bank", "asset")
            .get(pk=slot.pk)
        )
        check_delete_slot(slot)
        audit.record(
            "slot.deleted",
            actor=actor,
            subject=slot,
            data=_slot_data(slot),
            at=now,
        )
        slot.delete()
