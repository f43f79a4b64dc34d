"""Asset types, assets, checkouts and the slot reservations that lead to them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AssetType(models.Model):
    """A kind of device (scanner, tablet…) with its loan limit."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=80)
    max_loan_minutes = models.PositiveIntegerField(
        default=12 * 60,
        validators=[MinValueValidator(1)],
        help_text="No loan lasts longer than this.",
    )
    requires_pin = models.BooleanField(
        default=False, help_text="High-value: badge and PIN needed to take one."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def max_loan(self) -> timedelta:
        return timedelta(minutes=self.max_loan_minutes)


class Asset(models.Model):
    """One physical device, known by its asset tag."""

    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        CHECKED_OUT = "checked_out", "Checked out"
        MAINTENANCE = "maintenance", "In maintenance"
        LOST = "lost", "Lost"
        RETIRED = "retired", "Retired"

    asset_tag = models.CharField(max_length=40, unique=True)
    serial_number = models.CharField(max_length=80, blank=True)
    asset_type = models.ForeignKey(AssetType, on_delete=models.PROTECT, related_name="assets")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.AVAILABLE, db_index=True
    )
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["asset_tag"]
        permissions = [("retire_asset", "Can retire a device (out of the fleet for good)")]

    def __str__(self) -> str:
        return self.asset_tag

    def is_on_loan(self) -> bool:
        """Out with someone, or being taken from a bank right now (an open checkout)."""
        return (
            self.status == Asset.Status.CHECKED_OUT
            or Checkout.objects.open().filter(asset=self).exists()
        )


class CheckoutQuerySet(models.QuerySet):
    def open(self) -> CheckoutQuerySet:
        return self.filter(status__in=Checkout.OPEN_STATUSES)

    def active(self) -> CheckoutQuerySet:
        return self.filter(status=Checkout.Status.ACTIVE)

    def overdue(self, now: datetime) -> CheckoutQuerySet:
        return self.active().filter(due_at__lt=now)


class Checkout(models.Model):
    """One loan of one asset to one employee, from reservation to return.

    reserved → active (door opened, asset left, door closed) → returned;
    reserved → cancelled (door closed with the asset inside) or lapsed (door never opened).
    """

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        ACTIVE = "active", "Checked out"
        RETURNED = "returned", "Returned"
        CANCELLED = "cancelled", "Cancelled"
        LAPSED = "lapsed", "Lapsed"

    class Condition(models.TextChoices):
        OK = "ok", "OK"
        DAMAGED = "damaged", "Damaged"

    OPEN_STATUSES = (Status.RESERVED, Status.ACTIVE)

    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="checkouts")
    employee = models.ForeignKey(
        "access.Employee", on_delete=models.PROTECT, related_name="checkouts"
    )
    badge = models.ForeignKey(
        "access.Badge", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    slot_out = models.ForeignKey(
        "devices.Slot", on_delete=models.PROTECT, related_name="checkouts_out"
    )
    reserved_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    # End of the shift the device was taken in; the due time follows it (DESIGN §4.1).
    shift_end_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    slot_back = models.ForeignKey(
        "devices.Slot",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="checkouts_back",
    )
    returned_at = models.DateTimeField(null=True, blank=True)
    condition = models.CharField(max_length=8, choices=Condition.choices, blank=True)
    condition_note = models.CharField(max_length=500, blank=True)

    objects = CheckoutQuerySet.as_manager()

    class Meta:
        ordering = ["-reserved_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset"],
                condition=Q(status__in=["reserved", "active"]),
                name="checkout_one_open_per_asset",
            ),
        ]
        indexes = [
            # The overdue sweep: open checkouts by due time.
            models.Index(
                fields=["due_at"], condition=Q(status="active"), name="checkout_active_due_idx"
            ),
            models.Index(fields=["employee", "status"]),
            models.Index(fields=["reserved_at"]),
            # The report rollups find the checkouts that changed since their last run.
            models.Index(fields=["returned_at"], name="checkout_returned_at_idx"),
            models.Index(fields=["slot_out", "taken_at"], name="checkout_slot_taken_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.asset} → {self.employee}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    def is_overdue(self, now: datetime) -> bool:
        return self.status == self.Status.ACTIVE and self.due_at is not None and self.due_at < now


class ReservationQuerySet(models.QuerySet):
    def active(self) -> ReservationQuerySet:
        return self.filter(status__in=Reservation.ACTIVE_STATUSES)

    def expired(self, now: datetime) -> ReservationQuerySet:
        """Server-issued unlocks whose door never opened in time. A hold the bank decided is
        the bank's to end (it sends ``hold_ended``): it may be offline with the door events
        still in its journal."""
        return self.filter(
            status=Reservation.Status.PENDING, expires_at__lte=now, decided_at_bank=False
        )


class Reservation(models.Model):
    """A slot held for one door opening: to take an asset out or to put one back.

    The unlock command sent to the bank carries ``command_id``; the bank executes an id at
    most once. At most one active reservation per slot, enforced by the database.
    """

    class Purpose(models.TextChoices):
        TAKE = "take", "Take"
        RETURN = "return", "Return"
        REMOTE = "remote", "Remote open"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the door to open"
        OPENED = "opened", "Door open"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        LAPSED = "lapsed", "Lapsed"

    ACTIVE_STATUSES = (Status.PENDING, Status.OPENED)

    slot = models.ForeignKey("devices.Slot", on_delete=models.PROTECT, related_name="reservations")
    checkout = models.ForeignKey(
        Checkout, null=True, blank=True, on_delete=models.CASCADE, related_name="reservations"
    )
    # A remote open is asked for by a person, with a reason; it has no checkout.
    requested_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who asked, as the audit log names them: also an API key, which is no database user.
    requested_by_actor = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    command_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Granted by the bank itself from its access snapshot: the bank holds the door and reports
    # how the hold ended, so the server's own lapse sweep leaves it alone.
    decided_at_bank = models.BooleanField(default=False)
    # A return may come with a damage report made at the kiosk.
    damaged = models.BooleanField(default=False)
    damage_note = models.CharField(max_length=500, blank=True)

    objects = ReservationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["slot"],
                condition=Q(status__in=["pending", "opened"]),
                name="reservation_one_active_per_slot",
            ),
            models.CheckConstraint(
                condition=Q(purpose="remote") | Q(checkout__isnull=False),
                name="reservation_checkout_unless_remote",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.purpose} {self.slot} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


# --- Report rollups ---------------------------------------------------------------------------
# Derived from checkouts and access events by ``assets.rollups`` and kept current by the
# ``assets.tasks.refresh_report_rollups`` beat task. ``day`` and ``hour`` are local to the bank's
# site, so a site's day is its own whatever the server's time zone. Nothing else writes them;
# ``rebuild_report_rollups`` recomputes any range from the source rows.


class TakesByHour(models.Model):
    """Devices taken per bank, asset type and local hour: takes per day and the hour-of-week map."""

    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    hour = models.PositiveSmallIntegerField()
    takes = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bank", "asset_type", "day", "hour"], name="takesbyhour_unique"
            )
        ]
        indexes = [models.Index(fields=["day"], name="takesbyhour_day_idx")]

    def __str__(self) -> str:
        return f"{self.bank_id}/{self.asset_type_id} {self.day} {self.hour:02d}h: {self.takes}"


class UsageByDay(models.Model):
    """One bank's use of one asset type on one local day.

    Takes, returns, loan length and overdue count belong to the day a device was taken;
    ``peak`` is the most devices of this type out at once during the day and ``bank_peak`` the
    most of any type (repeated on each type's row of the same bank and day).
    """

    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    takes = models.PositiveIntegerField(default=0)
    returned = models.PositiveIntegerField(default=0)
    loan_seconds = models.PositiveBigIntegerField(default=0)
    overdue = models.PositiveIntegerField(default=0)
    peak = models.PositiveIntegerField(default=0)
    bank_peak = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bank", "asset_type", "day"], name="usagebyday_unique")
        ]
        indexes = [models.Index(fields=["day"], name="usagebyday_day_idx")]

    def __str__(self) -> str:
        return f"{self.bank_id}/{self.asset_type_id} {self.day}: {self.takes} takes"


class LoanLengthByDay(models.Model):
    """How many loans taken on a local day lasted ``minutes`` whole minutes: the median's histogram."""

    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    minutes = models.PositiveIntegerField()
    loans = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bank", "asset_type", "day", "minutes"], name="loanlengthbyday_unique"
            )
        ]
        indexes = [models.Index(fields=["day", "minutes", "loans"], name="loanlengthbyday_day_idx")]

    def __str__(self) -> str:
        return f"{self.bank_id}/{self.asset_type_id} {self.day}: {self.loans}×{self.minutes} min"


class SlotUsageByDay(models.Model):
    """Takes from one slot on a local day, and the seconds of that day its device was out."""

    slot = models.ForeignKey("devices.Slot", on_delete=models.CASCADE, related_name="+")
    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    takes = models.PositiveIntegerField(default=0)
    busy_seconds = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["slot", "asset_type", "day"], name="slotusagebyday_unique"
            )
        ]
        indexes = [models.Index(fields=["bank", "day"], name="slotusagebyday_bank_day_idx")]

    def __str__(self) -> str:
        return f"slot {self.slot_id} {self.day}: {self.takes} takes"


class AssetUsageByDay(models.Model):
    """Takes of one asset from one bank on a local day, and the seconds of that day it was out."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="+")
    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    takes = models.PositiveIntegerField(default=0)
    busy_seconds = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "bank", "day"], name="assetusagebyday_unique")
        ]
        indexes = [
            models.Index(fields=["bank", "day"], name="assetusagebyday_bank_day_idx"),
            # Idle assets: when was each asset last taken, one backward index step per asset.
            models.Index(
                fields=["asset", "-day"], condition=Q(takes__gt=0), name="assetusagebyday_last_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"asset {self.asset_id} {self.day}: {self.takes} takes"


class EmployeeUsageByDay(models.Model):
    """One employee's takes of one asset type at one bank on a local day."""

    employee = models.ForeignKey("access.Employee", on_delete=models.CASCADE, related_name="+")
    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    takes = models.PositiveIntegerField(default=0)
    loan_seconds = models.PositiveBigIntegerField(default=0)
    overdue = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["employee", "bank", "asset_type", "day"],
                name="employeeusagebyday_unique",
            )
        ]
        indexes = [models.Index(fields=["bank", "day"], name="employeeusagebyday_bd_idx")]

    def __str__(self) -> str:
        return f"employee {self.employee_id} {self.day}: {self.takes} takes"


class AccessByDay(models.Model):
    """Badge presentations per bank, local day, outcome and reason code."""

    bank = models.ForeignKey("devices.LockerBank", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    granted = models.BooleanField()
    reason = models.CharField(max_length=32)
    taps = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bank", "day", "granted", "reason"], name="accessbyday_unique"
            )
        ]
        indexes = [models.Index(fields=["day"], name="accessbyday_day_idx")]

    def __str__(self) -> str:
        return f"{self.bank_id} {self.day} {self.reason}: {self.taps}"


class RollupWatermark(models.Model):
    """The single row saying up to when the report rollups have taken changes into account.

    Locking it serialises refreshes, so a second beat or a slow run never double-counts.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    refreshed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="rollupwatermark_singleton")]

    def __str__(self) -> str:
        return f"report rollups until {self.refreshed_until}"
