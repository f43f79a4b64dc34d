"""Demo data: one site, two banks of 12 slots, 16 scanners, 6 tablets, 12 people on three shifts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from access.actions import issue_badge
from access.models import AccessRule, Department, Employee, EmployeeGroup, Shift, ShiftAssignment
from assets.models import Asset, AssetType
from devices.actions import create_bank
from devices.models import Site, Slot
from lockerhub.audit import SYSTEM
from lockerhub.roles import Role

SITE_NAME = "Northgate Distribution Centre"
BANK_CODES = ("BANK-A", "BANK-B")
DEMO_PASSWORD = "lockerhub-demo"  # noqa: S105 - demo accounts only, printed by `make run`

PEOPLE = [
    # number, first, last, department, shift
    ("E1001", "Ana", "Silva", "Picking", "Day"),
    ("E1002", "Ben", "Okafor", "Picking", "Day"),
    ("E1003", "Chloe", "Martin", "Shipping", "Day"),
    ("E1004", "Dev", "Patel", "Shipping", "Day"),
    ("E1005", "Elena", "Rossi", "Picking", "Late"),
    ("E1006", "Farid", "Haddad", "Picking", "Late"),
    ("E1007", "Grace", "Kim", "Shipping", "Late"),
    ("E1008", "Hugo", "Weber", "Shipping", "Late"),
    ("E1009", "Ines", "Costa", "Picking", "Night"),
    ("E1010", "Jonas", "Berg", "Picking", "Night"),
    ("E1011", "Kofi", "Mensah", "Shipping", "Night"),
    ("E1012", "Lena", "Novak", "Shipping", "Night"),
]
TEAM_LEADS = {"E1003", "E1007", "E1011"}
STAFF = [
    ("supervisor", Role.SUPERVISOR, "Sam", "Supervisor"),
    ("hr", Role.HR, "Hana", "HR"),
    ("facilities", Role.FACILITY_MANAGER, "Fred", "Facilities"),
]


def badge_uid(number: str) -> str:
    return f"04D3E0{int(number[1:]):08X}"


@dataclass
class DemoResult:
    created: bool
    tokens: dict[str, str]


@transaction.atomic
def load_demo() -> DemoResult:
    """Create the demo world unless it exists. Returns the bank tokens made (empty if nothing was created)."""
    if Site.objects.filter(name=SITE_NAME).exists():
        return DemoResult(created=False, tokens={})
    now = timezone.now()
    site = Site.objects.create(name=SITE_NAME, time_zone="UTC")
    scanner = AssetType.objects.create(code="scanner", name="Scanner", max_loan_minutes=12 * 60)
    tablet = AssetType.objects.create(code="tablet", name="Tablet", max_loan_minutes=10 * 60)

    tokens = {}
    scanners = iter(range(1, 17))
    tablets = iter(range(1, 7))
    for code in BANK_CODES:
        bank, tokens[code] = create_bank(
            site, code, slots=12, actor=SYSTEM, name=f"Locker bank {code[-1]}", now=now
        )
        for slot in bank.slots.order_by("number"):
            if slot.number <= 8:
                asset = Asset.objects.create(
                    asset_tag=f"SC-{1040 + next(scanners)}",
                    serial_number=f"SN{slot.pk:06d}",
                    asset_type=scanner,
                )
            elif slot.number <= 11:
                asset = Asset.objects.create(
                    asset_tag=f"TB-{2000 + next(tablets)}",
                    serial_number=f"TN{slot.pk:06d}",
                    asset_type=tablet,
                )
            else:
                asset = None
            slot.asset = asset
            slot.present = asset is not None
            slot.charge_state = Slot.ChargeState.CHARGED if asset else Slot.ChargeState.EMPTY
            slot.charge_state_since = now - timedelta(minutes=5 * slot.number)
            slot.save()

    every_day = 0b1111111
    shifts = {
        "Day": Shift.objects.create(
            site=site, name="Day", days=every_day, start=time(6), end=time(14)
        ),
        "Late": Shift.objects.create(
            site=site, name="Late", days=every_day, start=time(14), end=time(22)
        ),
        "Night": Shift.objects.create(
            site=site, name="Night", days=every_day, start=time(22), end=time(6)
        ),
    }
    departments = {name: Department.objects.create(name=name) for name in ("Picking", "Shipping")}
    leads = EmployeeGroup.objects.create(name="Team leads")
    scanners_rule = AccessRule.objects.create(name="Scanners for the floor", max_concurrent=1)
    scanners_rule.departments.set(departments.values())
    scanners_rule.asset_types.set([scanner])
    tablets_rule = AccessRule.objects.create(name="Tablets for team leads", max_concurrent=1)
    tablets_rule.groups.set([leads])
    tablets_rule.asset_types.set([tablet])

    for number, first, last, department, shift in PEOPLE:
        employee = Employee.objects.create(
            employee_number=number,
            first_name=first,
            last_name=last,
            email=f"{first.lower()}@example.com",
            department=departments[department],
            home_site=site,
        )
        ShiftAssignment.objects.create(
            employee=employee, shift=shifts[shift], valid_from=now.date() - timedelta(days=30)
        )
        issue_badge(employee, badge_uid(number), actor=SYSTEM, valid_from=now - timedelta(days=30))
        if number in TEAM_LEADS:
            leads.members.add(employee)

    for username, role, first, last in STAFF:
        user = User.objects.create_user(
            username,
            f"{username}@example.com",
            DEMO_PASSWORD,
            first_name=first,
            last_name=last,
            is_staff=True,
        )
        user.groups.add(Group.objects.get(name=role.group_name))
    User.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORD)
    return DemoResult(created=True, tokens=tokens)
