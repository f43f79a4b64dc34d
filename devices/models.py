"""Sites, locker banks and their slots: the physical side of LockerHub."""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from devices.wire import ChargeState

CHARGE_LABELS = {
    ChargeState.EMPTY: "Empty",
    ChargeState.PRESENT_NOT_CHARGING: "Present, not charging",
    ChargeState.CHARGING: "Charging",
    ChargeState.CHARGED: "Charged",
    ChargeState.FAULT: "Charge fault",
    ChargeState.UNKNOWN: "Unknown",
}


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/Berlin).") from None


class Site(models.Model):
    """A warehouse or building. Shifts and opening hours are read in its time zone."""

    name = models.CharField(max_length=120, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


bank_code_validator = RegexValidator(
    r"^[A-Z0-9][A-Z0-9_-]{0,31}$", "Use capitals, digits, '-' and '_' (e.g. BANK-A)."
)


class LockerBankQuerySet(models.QuerySet):
    def visible_to(self, user) -> LockerBankQuerySet:
        """Banks ``user`` may watch live. Every site for now: supervisors are not yet tied to sites."""
        if not user.is_authenticated or not user.has_perm("devices.view_slot"):
            return self.none()
        return self


class LockerBank(models.Model):
    """A cabinet of slots driven by one bank worker, reached over its device WebSocket."""

    class Protocol(models.TextChoices):
        KERONG_CU16 = "kerong-cu16", "Kerong KR-CU16"

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="banks")
    code = models.CharField(max_length=32, unique=True, validators=[bank_code_validator])
    name = models.CharField(max_length=120, blank=True)
    location = models.CharField(
        max_length=200, blank=True, help_text="Where people find it, e.g. 'Gate 3, by the canteen'"
    )
    protocol = models.CharField(
        max_length=32, choices=Protocol.choices, default=Protocol.KERONG_CU16
    )
    invert_hook = models.BooleanField(
        default=False, help_text="This hardware reports 1 for an open door."
    )
    # sha256 of the device token; the token itself is shown once when made.
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Exactly-once delivery of worker events: the worker's journal identity and the highest
    # event sequence applied from it (see docs/device-protocol.md).
    worker_id = models.UUIDField(null=True, blank=True, editable=False)
    last_event_seq = models.PositiveBigIntegerField(default=0, editable=False)
    is_online = models.BooleanField(default=False)
    door_held_open_seconds = models.PositiveIntegerField(default=60)
    # The version of the last access snapshot or delta sent to the bank: every one sent gets
    # the next, whichever server process sends it (docs/device-protocol.md).
    snapshot_version = models.PositiveBigIntegerField(default=0, editable=False)

    objects = LockerBankQuerySet.as_manager()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @staticmethod
    def hash_token(token: str) -> str:
        # The token is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
        return hashlib.sha256(token.encode()).hexdigest()

    def new_token(self) -> str:
        """Set a fresh device token and return it; only its hash is kept. The caller saves."""
        token = f"lhb_{secrets.token_urlsafe(32)}"
        self.token_hash = self.hash_token(token)
        return token

    def check_token(self, token: str) -> bool:
        return bool(self.token_hash) and secrets.compare_digest(
            self.token_hash, self.hash_token(token)
        )


class SlotQuerySet(models.QuerySet):
    def in_service(self) -> SlotQuerySet:
        return self.filter(out_of_service=False).exclude(charge_state=Slot.ChargeState.FAULT)

    def unreserved(self) -> SlotQuerySet:
        from assets.models import Reservation

        return self.exclude(Exists(Reservation.objects.active().filter(slot=OuterRef("pk"))))

    def dispensable(self, bank: LockerBank, asset_type_ids: list[int] | set[int]) -> SlotQuerySet:
        """Slots at ``bank`` holding an available asset of one of the types, best first.

        Charged before anything else, then the longest charged, so devices rotate and each
        one leaves as full as it can be.
        """
        from assets.models import Asset

        return (
            self.filter(
                bank=bank,
                asset__isnull=False,
                asset__status=Asset.Status.AVAILABLE,
                asset__asset_type_id__in=asset_type_ids,
                door_state=Slot.DoorState.CLOSED,
            )
            .in_service()
            .unreserved()
            .annotate(
                is_charged=models.Case(
                    models.When(charge_state=Slot.ChargeState.CHARGED, then=0), default=1
                )
            )
            .order_by("is_charged", "charge_state_since", "number")
        )


class Slot(models.Model):
    """One door of a bank: its lock address, what its sensors say, and the asset it holds."""

    class Size(models.TextChoices):
        SMALL = "small", "Small"
        MEDIUM = "medium", "Medium"
        LARGE = "large", "Large"

    class DoorState(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        UNKNOWN = "unknown", "Unknown"

    class LockState(models.TextChoices):
        LOCKED = "locked", "Locked"
        UNLOCKED = "unlocked", "Unlocked"
        UNKNOWN = "unknown", "Unknown"

    # The values are the bank worker's (devices.wire); only the labels are the server's.
    ChargeState = models.TextChoices(
        "ChargeState", [(state.name, (state.value, CHARGE_LABELS[state])) for state in ChargeState]
    )

    bank = models.ForeignKey(LockerBank, on_delete=models.CASCADE, related_name="slots")
    number = models.PositiveSmallIntegerField(help_text="The door number people see.")
    board = models.PositiveSmallIntegerField(validators=[MaxValueValidator(15)])
    lock_index = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(15)], help_text="0-15; lock 1 is index 0"
    )
    size = models.CharField(max_length=8, choices=Size.choices, default=Size.SMALL)
    has_charger = models.BooleanField(default=True)
    out_of_service = models.BooleanField(default=False)
    out_of_service_reason = models.CharField(max_length=200, blank=True)
    door_state = models.CharField(max_length=8, choices=DoorState.choices, default=DoorState.CLOSED)
    lock_state = models.CharField(max_length=8, choices=LockState.choices, default=LockState.LOCKED)
    door_opened_at = models.DateTimeField(null=True, blank=True)
    present = models.BooleanField(null=True, help_text="Item sensor; empty when unknown.")
    charge_state = models.CharField(
        max_length=24, choices=ChargeState.choices, default=ChargeState.UNKNOWN
    )
    charge_state_since = models.DateTimeField(default=timezone.now)
    asset = models.OneToOneField(
        "assets.Asset", null=True, blank=True, on_delete=models.PROTECT, related_name="slot"
    )
    state_changed_at = models.DateTimeField(default=timezone.now)

    objects = SlotQuerySet.as_manager()

    class Meta:
        ordering = ["bank", "number"]
        permissions = [
            ("remote_open_slot", "Can open a slot remotely"),
            ("set_slot_out_of_service", "Can take a slot out of service"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["bank", "number"], name="slot_number_unique_per_bank"),
            models.UniqueConstraint(
                fields=["bank", "board", "lock_index"], name="slot_address_unique_per_bank"
            ),
            models.CheckConstraint(
                condition=Q(board__lte=15) & Q(lock_index__lte=15), name="slot_address_in_range"
            ),
        ]
        indexes = [models.Index(fields=["bank", "charge_state", "charge_state_since"])]

    def __str__(self) -> str:
        return f"{self.bank.code} door {self.number}"

    @property
    def address(self) -> int:
        """KR-CU16 style address byte: board in the high nibble, lock index in the low one."""
        return (self.board << 4) | self.lock_index

    def set_charge_state(self, state: str, at: datetime) -> None:
        if state != self.charge_state:
            self.charge_state = state
            self.charge_state_since = at


class KioskQuerySet(models.QuerySet):
    def active(self) -> KioskQuerySet:
        return self.filter(revoked_at__isnull=True)


class Kiosk(models.Model):
    """A screen beside one bank, paired once and trusted to show that bank's taps.

    Pairing hands out a one-time code (shown as a URL); redeeming it in the kiosk's browser
    gives that browser a long-lived cookie holding the kiosk's own token. Only hashes are kept.
    """

    bank = models.ForeignKey(LockerBank, on_delete=models.CASCADE, related_name="kiosks")
    name = models.CharField(max_length=80, help_text="Where it hangs, e.g. 'Gate 3'.")
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    pairing_code_hash = models.CharField(max_length=64, blank=True, editable=False)
    pairing_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    paired_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = KioskQuerySet.as_manager()

    class Meta:
        ordering = ["bank", "name"]
        permissions = [("pair_kiosk", "Can pair and revoke kiosk screens")]
        constraints = [
            models.UniqueConstraint(
                fields=["bank", "name"],
                condition=Q(revoked_at__isnull=True),
                name="kiosk_name_unique_per_bank",
            )
        ]

    def __str__(self) -> str:
        return f"{self.bank.code} kiosk {self.name}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def check_token(self, token: str) -> bool:
        return (
            not self.is_revoked
            and bool(self.token_hash)
            and secrets.compare_digest(self.token_hash, LockerBank.hash_token(token))
        )

    def pairing_open(self, now: datetime) -> bool:
        return (
            not self.is_revoked
            and bool(self.pairing_code_hash)
            and self.pairing_expires_at is not None
            and now < self.pairing_expires_at
        )


class BankNotice(models.Model):
    """Something a connected bank must hear about: an access change its snapshot reflects.

    Written in the transaction of the change (``devices.bankbus.changed``); each bank's
    connection reads the notices after the last one it saw and sends the bank a delta. This
    is the server → bank path, and it needs only the database: no Redis.
    """

    class Scope(models.TextChoices):
        HOLDER = "holder", "One person's badges, rules, shifts or loans"
        SLOTS = "slots", "Slots and devices of a bank"
        ALL = "all", "Everything (rules, shift patterns, asset types)"

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now)
    scope = models.CharField(max_length=8, choices=Scope.choices)
    # None: every bank.
    bank = models.ForeignKey(
        LockerBank, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    holder_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="banknotice_created_idx")]

    def __str__(self) -> str:
        return f"{self.scope} {self.bank_id or '*'} {self.holder_id or ''}".strip()


class FailedDeviceEvent(models.Model):
    """A bank event that was well formed but could not be applied: kept with its error, and
    acknowledged, so the bank never stalls behind it (docs/device-protocol.md)."""

    bank = models.ForeignKey(LockerBank, on_delete=models.CASCADE, related_name="failed_events")
    worker_id = models.UUIDField(null=True, blank=True)
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=32)
    body = models.JSONField(default=dict)
    error = models.TextField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.bank_id} seq {self.seq} ({self.type}): {self.error[:60]}"
