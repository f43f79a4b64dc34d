"""People and the rules that decide what they may take, when and where."""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from access import core
from devices.wire import normalize_uid  # the one UID spelling, shared with the bank worker
from lockerhub.roles import ROLE_GROUPS, STAFF_ROLES

uid_validator = RegexValidator(
    r"^(?:[0-9A-F]{2}){4,10}$", "A badge UID is 4 to 10 bytes of upper-case hex."
)


class Department(models.Model):
    """An organisational unit; access rules can name it."""

    name = models.CharField(max_length=120, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EmployeeGroup(models.Model):
    """A hand-made group of employees (e.g. 'Forklift certified'); access rules can name it."""

    name = models.CharField(max_length=120, unique=True)
    members = models.ManyToManyField("Employee", blank=True, related_name="groups")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Employee(models.Model):
    """Someone who may take devices. Offboarding is final; suspension is not."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        OFFBOARDED = "offboarded", "Offboarded"

    employee_number = models.CharField(max_length=40, unique=True)
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80, blank=True)
    email = models.EmailField(blank=True)
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.SET_NULL, related_name="employees"
    )
    home_site = models.ForeignKey(
        "devices.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="employees"
    )
    supervisor = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True
    )
    offboarded_at = models.DateTimeField(null=True, blank=True)
    user = models.OneToOneField(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="employee"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The identity provider's own id for this person (SCIM externalId).
    external_id = models.CharField(max_length=200, blank=True, db_index=True)
    # Deleted through SCIM: offboarded, and gone from the SCIM view (RFC 7644 §3.6 wants a 404).
    scim_deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["last_name", "first_name"]
        permissions = [("offboard_employee", "Can offboard an employee")]

    def __str__(self) -> str:
        return f"{self.full_name} ({self.employee_number})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class BadgeQuerySet(models.QuerySet):
    def active_at(self, now: datetime) -> BadgeQuerySet:
        return self.filter(status=Badge.Status.ACTIVE, valid_from__lte=now).filter(
            Q(valid_until__isnull=True) | Q(valid_until__gt=now)
        )


class Badge(models.Model):
    """An RFID/NFC credential. Its UID identifies the holder; it does not authenticate them."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        LOST = "lost", "Lost"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    class Technology(models.TextChoices):
        ISO14443A = "iso14443a", "ISO 14443-A (MIFARE, NTAG)"
        DESFIRE = "desfire", "MIFARE DESFire"
        FELICA = "felica", "FeliCa"
        ICLASS = "iclass", "HID iCLASS"
        EM4100 = "em4100", "EM4100 (125 kHz)"
        OTHER = "other", "Other"

    employee = models.ForeignKey(Employee, on_delete=models.CASCADE, related_name="badges")
    uid = models.CharField(max_length=20, validators=[uid_validator], db_index=True)
    technology = models.CharField(
        max_length=16, choices=Technology.choices, default=Technology.ISO14443A
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    is_temporary = models.BooleanField(default=False)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    pin_hash = models.CharField(max_length=200, blank=True, editable=False)
    issued_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    objects = BadgeQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at"]
        permissions = [("revoke_badge", "Can revoke a badge or mark it lost")]
        constraints = [
            models.UniqueConstraint(
                fields=["uid"], condition=Q(status="active"), name="badge_uid_unique_among_active"
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
                name="badge_validity_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.uid} ({self.get_status_display()})"

    def clean_fields(self, exclude: set[str] | None = None) -> None:
        # Readers and people write UIDs as 04:a1:b2…; store one spelling before validating it.
        self.uid = normalize_uid(self.uid or "")
        super().clean_fields(exclude=exclude)

    def clean(self) -> None:
        if self.is_temporary and self.valid_until is None:
            raise ValidationError({"valid_until": "A temporary badge needs an expiry."})

    def set_pin(self, pin: str) -> None:
        if not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValidationError("A PIN is 4 to 8 digits.")
        self.pin_hash = make_password(pin)

    def check_pin(self, pin: str) -> bool:
        return bool(self.pin_hash) and check_password(pin, self.pin_hash)


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class Shift(models.Model):
    """A recurring working window at a site, in the site's time zone.

    ``days`` is a bit mask of the days a shift *starts* on (bit 0 = Monday). When ``end`` is not
    after ``start`` the shift crosses midnight and ends the next day.
    """

    site = models.ForeignKey("devices.Site", on_delete=models.PROTECT, related_name="shifts")
    name = models.CharField(max_length=80)
    days = models.PositiveSmallIntegerField(
        default=0b0011111,
        validators=[MinValueValidator(1), MaxValueValidator(127)],
        help_text="Bit 0 = Monday … bit 6 = Sunday",
    )
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        ordering = ["site", "start"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="shift_name_unique_per_site"),
            models.CheckConstraint(condition=Q(days__gte=1, days__lte=127), name="shift_days_mask"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.start:%H:%M}–{self.end:%H:%M} {self.days_display})"

    def clean(self) -> None:
        # Equal times would read as a 24-hour shift, which is almost always a typing slip.
        if self.start is not None and self.start == self.end:
            raise ValidationError({"end": "A shift ends at a different time than it starts."})

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    @property
    def days_display(self) -> str:
        return ",".join(day for i, day in enumerate(WEEKDAYS) if self.days & (1 << i))

    def runs_on(self, day: date) -> bool:
        return bool(self.days & (1 << day.weekday()))

    def occurrence(self, day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The aware start and end of the occurrence that starts on ``day``."""
        start = datetime.combine(day, self.start, tzinfo=tz)
        end_day = day + timedelta(days=1) if self.crosses_midnight else day
        end = datetime.combine(end_day, self.end, tzinfo=tz)
        return start, end

    def window_at(
        self,
        now: datetime,
        tz: ZoneInfo,
        before: timedelta = timedelta(0),
        after: timedelta = timedelta(0),
    ) -> tuple[datetime, datetime] | None:
        """The occurrence whose window [start - before, end + after) holds ``now``, if any."""
        local_day = now.astimezone(tz).date()
        # Yesterday's occurrence may still run (midnight, grace after); tomorrow's may
        # already be open (grace before a shift that starts just after midnight).
        for offset in (-1, 0, 1):
            day = local_day + timedelta(days=offset)
            if not self.runs_on(day):
                continue
            start, end = self.occurrence(day, tz)
            if start - before <= now < end + after:
                return start, end
        return None


class ShiftAssignmentQuerySet(models.QuerySet):
    def valid_on(self, day: date) -> ShiftAssignmentQuerySet:
        return self.filter(valid_from__lte=day).filter(
            Q(valid_until__isnull=True) | Q(valid_until__gte=day)
        )


class ShiftAssignment(models.Model):
    """An employee works a shift pattern between two dates (inclusive; open-ended without an end)."""

    employee = models.ForeignKey(
        Employee, on_delete=models.CASCADE, related_name="shift_assignments"
    )
    shift = models.ForeignKey(Shift, on_delete=models.CASCADE, related_name="assignments")
    valid_from = models.DateField()
    valid_until = models.DateField(null=True, blank=True)

    objects = ShiftAssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["employee", "valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=models.F("valid_from")),
                name="shiftassignment_dates_ordered",
            )
        ]
        indexes = [models.Index(fields=["employee", "valid_from", "valid_until"])]

    def __str__(self) -> str:
        return f"{self.employee} on {self.shift}"


class AccessRuleQuerySet(models.QuerySet):
    def for_employee(self, employee: Employee) -> AccessRuleQuerySet:
        who = Q(employees=employee) | Q(groups__members=employee)
        if employee.department_id:
            who |= Q(departments=employee.department_id)
        return self.filter(is_active=True).filter(who).distinct()

    def at_bank(self, bank) -> AccessRuleQuerySet:
        # A rule naming neither sites nor banks holds everywhere.
        return self.filter(
            Q(banks=bank) | Q(sites=bank.site_id) | (Q(banks__isnull=True) & Q(sites__isnull=True))
        ).distinct()


class AccessRule(models.Model):
    """Who may take which asset types, where, when and how many at once."""

    name = models.CharField(max_length=120, unique=True)
    is_active = models.BooleanField(default=True)
    departments = models.ManyToManyField(Department, blank=True, related_name="access_rules")
    groups = models.ManyToManyField(EmployeeGroup, blank=True, related_name="access_rules")
    employees = models.ManyToManyField(Employee, blank=True, related_name="access_rules")
    asset_types = models.ManyToManyField("assets.AssetType", related_name="access_rules")
    sites = models.ManyToManyField("devices.Site", blank=True, related_name="access_rules")
    banks = models.ManyToManyField("devices.LockerBank", blank=True, related_name="access_rules")
    require_shift = models.BooleanField(
        default=True, help_text="Only during an assigned shift (with grace)."
    )
    grace_before_minutes = models.PositiveSmallIntegerField(default=15)
    grace_after_minutes = models.PositiveSmallIntegerField(default=15)
    max_concurrent = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])

    objects = AccessRuleQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def grace_before(self) -> timedelta:
        return timedelta(minutes=self.grace_before_minutes)

    @property
    def grace_after(self) -> timedelta:
        return timedelta(minutes=self.grace_after_minutes)


# Why a badge presentation was granted or denied: the decision core's codes (stable: kiosks,
# reports and bank workers use them), with its labels, as model choices.
Reason = models.TextChoices(
    "Reason", [(reason.name, (reason.value, core.REASON_LABELS[reason])) for reason in core.Reason]
)

# What the kiosk says, in plain words. {name} is the holder's first name where known.
REASON_MESSAGES: dict[str, str] = core.REASON_MESSAGES


class AccessEvent(models.Model):
    """Every badge presentation at a bank, granted or denied, with its reason."""

    bank = models.ForeignKey(
        "devices.LockerBank", on_delete=models.PROTECT, related_name="access_events"
    )
    at = models.DateTimeField(default=timezone.now)
    uid = models.CharField(max_length=20)
    badge = models.ForeignKey(
        Badge, null=True, blank=True, on_delete=models.SET_NULL, related_name="access_events"
    )
    employee = models.ForeignKey(
        Employee, null=True, blank=True, on_delete=models.SET_NULL, related_name="access_events"
    )
    granted = models.BooleanField()
    reason = models.CharField(max_length=32, choices=Reason.choices)
    slot = models.ForeignKey(
        "devices.Slot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checkout = models.ForeignKey(
        "assets.Checkout", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["at"]),
            models.Index(fields=["bank", "at"]),
            models.Index(fields=["uid", "at"]),
            models.Index(fields=["employee", "at"]),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.bank} {self.uid} {self.reason}"


class ApiKeyQuerySet(models.QuerySet):
    def usable(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A credential for another system (HR system, identity provider), acting in one role.

    The secret is ``lhk_<prefix>_<random>``: the prefix finds the row, and only the sha256 of
    the whole secret is kept. The secret is 256 random bits, so a fast hash is enough.
    A ``scim`` key opens only /scim/v2/; an ``api`` key only /api/.
    """

    # Staff roles only: an employee's own view makes no sense for another system.
    ROLE_CHOICES = [(role.value, ROLE_GROUPS[role]) for role in sorted(STAFF_ROLES)]

    class Scope(models.TextChoices):
        API = "api", "REST API"
        SCIM = "scim", "SCIM provisioning"

    name = models.CharField(max_length=120)
    role = models.CharField(max_length=32, choices=ROLE_CHOICES)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.API)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()}, {self.scope})"

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @staticmethod
    def prefix_of(secret: str) -> str | None:
        """The lookup prefix of a presented secret, or None when it is not shaped like a key."""
        # The random part is url-safe base64, which may itself hold "_".
        parts = secret.split("_", 2)
        if len(parts) != 3 or parts[0] != "lhk" or not parts[1] or not parts[2]:
            return None
        return parts[1]

    def new_secret(self) -> str:
        """Set a fresh prefix and secret and return the secret; only its hash is kept. The caller saves."""
        self.prefix = secrets.token_hex(6)
        secret = f"lhk_{self.prefix}_{secrets.token_urlsafe(32)}"
        self.secret_hash = self.hash_secret(secret)
        return secret

    def check_secret(self, secret: str) -> bool:
        return secrets.compare_digest(self.secret_hash, self.hash_secret(secret))

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
