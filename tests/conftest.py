"""Shared fixtures: the embedded Redis, a small world (site, bank, assets, shifts) and personas."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client

from access.actions import issue_badge
from access.models import AccessRule, Badge, Department, Employee, Shift, ShiftAssignment
from assets.models import Asset, AssetType
from devices.models import LockerBank, Site, Slot
from lockerhub.audit import SYSTEM
from lockerhub.roles import ROLE_PERMISSIONS, STAFF_ROLES, Role

BERLIN = ZoneInfo("Europe/Berlin")
# A Wednesday, mid-morning in Berlin: inside the day shift.
WEDNESDAY_10AM = datetime(2026, 3, 11, 10, 0, tzinfo=BERLIN)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel layer per test: channels_redis binds its connections and locks to the
    event loop that first used them, and each async test runs on a loop of its own."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session", autouse=True)
def bank_listener_released(django_db_setup):
    """Device connections wake through a PostgreSQL LISTEN connection; it lets go of the test
    database before the run drops it."""
    yield
    from devices import bankbus

    bankbus.stop_listening()


def pytest_configure(config: pytest.Config) -> None:
    # The controller starts the embedded Redis once; xdist workers and later runs reuse it.
    if hasattr(config, "workerinput") or os.environ.get("REDIS_URL"):
        return
    from pathlib import Path

    from lockerhub.embedded import start_redis

    process = start_redis(settings.EMBEDDED_REDIS_PORT, Path(settings.DATA_DIR) / "test-redis")
    if process is not None:
        config._lockerhub_redis = process  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    process = getattr(config, "_lockerhub_redis", None)
    if process is not None:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class World:
    site: Site
    bank: LockerBank
    other_bank: LockerBank
    scanner: AssetType
    tablet: AssetType
    department: Department
    day_shift: Shift
    night_shift: Shift
    rule: AccessRule
    ana: Employee
    ana_badge: Badge

    def slot(self, number: int, bank: LockerBank | None = None) -> Slot:
        return Slot.objects.get(bank=bank or self.bank, number=number)


def make_bank(site: Site, code: str, slots: int) -> LockerBank:
    bank = LockerBank.objects.create(site=site, code=code, name=f"Bank {code}", is_online=True)
    Slot.objects.bulk_create(
        Slot(
            bank=bank,
            number=n,
            board=(n - 1) // 16,
            lock_index=(n - 1) % 16,
            charge_state=Slot.ChargeState.EMPTY,
            present=False,
        )
        for n in range(1, slots + 1)
    )
    return bank


def stock(
    slot: Slot,
    asset: Asset,
    *,
    charge: str = Slot.ChargeState.CHARGED,
    since: datetime | None = None,
) -> Slot:
    slot.asset = asset
    slot.present = True
    slot.charge_state = charge
    slot.charge_state_since = since or datetime(2026, 3, 11, 6, 0, tzinfo=BERLIN)
    slot.save()
    return slot


def make_employee(
    number: str, first: str, department: Department | None, *, site: Site | None = None
) -> Employee:
    return Employee.objects.create(
        employee_number=number,
        first_name=first,
        last_name="Test",
        department=department,
        home_site=site,
    )


@pytest.fixture
def world(db) -> World:
    site = Site.objects.create(name="Test DC", time_zone="Europe/Berlin")
    bank = make_bank(site, "BANK-A", 6)
    other_bank = make_bank(site, "BANK-B", 4)
    scanner = AssetType.objects.create(code="scanner", name="Scanner", max_loan_minutes=12 * 60)
    tablet = AssetType.objects.create(
        code="tablet", name="Tablet", max_loan_minutes=10 * 60, requires_pin=True
    )
    for n in (1, 2, 3):
        stock(
            bank.slots.get(number=n),
            Asset.objects.create(asset_tag=f"SC-10{n:02d}", asset_type=scanner),
        )
    stock(bank.slots.get(number=4), Asset.objects.create(asset_tag="TB-2001", asset_type=tablet))
    for n in (1, 2):
        stock(
            other_bank.slots.get(number=n),
            Asset.objects.create(asset_tag=f"SC-20{n:02d}", asset_type=scanner),
        )
    department = Department.objects.create(name="Warehouse")
    day_shift = Shift.objects.create(
        site=site, name="Day", days=0b0011111, start=time(6), end=time(14)
    )
    night_shift = Shift.objects.create(
        site=site, name="Night", days=0b0011111, start=time(22), end=time(6)
    )
    rule = AccessRule.objects.create(
        name="Warehouse scanners", grace_before_minutes=15, grace_after_minutes=15, max_concurrent=1
    )
    rule.departments.add(department)
    rule.asset_types.add(scanner)
    ana = make_employee("E1001", "Ana", department, site=site)
    ShiftAssignment.objects.create(employee=ana, shift=day_shift, valid_from=date(2026, 1, 1))
    ana_badge = issue_badge(
        ana, "04A1B2C3D4E5F6", actor=SYSTEM, valid_from=datetime(2026, 1, 1, tzinfo=BERLIN)
    )
    return World(
        site,
        bank,
        other_bank,
        scanner,
        tablet,
        department,
        day_shift,
        night_shift,
        rule,
        ana,
        ana_badge,
    )


@pytest.fixture
def audit_triggers_restored(django_db_blocker):
    """Put the append-only triggers back after a transactional test's flush (see audit_purgeable)."""
    yield
    from django.db import connection

    from lockerhub.dbtriggers import create_audit_triggers

    with django_db_blocker.unblock():
        create_audit_triggers(connection)


@pytest.fixture
def audit_purgeable(transactional_db):
    """A transactional test commits audit rows; its teardown flush must be allowed to remove them.

    Request it after ``audit_triggers_restored`` so the triggers come back after the flush.
    """
    yield
    from django.db import connection

    from lockerhub.dbtriggers import drop_audit_triggers

    drop_audit_triggers(connection)


@pytest.fixture
def live_db(audit_triggers_restored, audit_purgeable):
    """Committed transactions, visible to other threads and processes (consumers, servers, races)."""


@pytest.fixture
def at_wednesday_10am(time_machine):
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    return WEDNESDAY_10AM


def _user_with_role(username: str, role: Role | None) -> User:
    user = User.objects.create_user(
        username, f"{username}@example.com", "correct horse battery staple"
    )
    if role is not None:
        user.groups.add(role_group(role))
    if role in STAFF_ROLES:
        give_totp(user)  # staff reach their pages only with a second factor
    return user


def at_admin(user: User) -> Client:
    """``user`` at the Django admin: staff, with the second factor the persona already has."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


def role_group(role: Role) -> Group:
    """The role's group, made again as its migration makes it if a transactional test's flush
    removed it (live_db tests run after the others and empty every table)."""
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    group, created = Group.objects.get_or_create(name=role.group_name)
    if created:
        wanted = Q(pk__in=[])
        for app_label, codename in ROLE_PERMISSIONS[role]:
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        group.permissions.set(Permission.objects.filter(wanted))
    return group


def give_totp(user: User) -> str:
    """Set up an authenticator app (and recovery codes) for ``user``; returns the TOTP secret.

    Staff roles and administrators must have one before any staff page (lockerhub.middleware).
    """
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    RecoveryCodes.activate(user)
    return secret


@pytest.fixture
def admin_user(db, django_user_model, django_username_field) -> User:
    """pytest-django's superuser (behind ``admin_client``), with the second factor admins need."""
    user = django_user_model._default_manager.create_superuser(
        **{django_username_field: "admin"}, email="admin@example.com", password="password"
    )
    give_totp(user)
    return user


@pytest.fixture
def supervisor(db) -> User:
    return _user_with_role("sam.supervisor", Role.SUPERVISOR)


@pytest.fixture
def hr_officer(db) -> User:
    return _user_with_role("hana.hr", Role.HR)


@pytest.fixture
def facility_manager(db) -> User:
    return _user_with_role("fred.facilities", Role.FACILITY_MANAGER)


@pytest.fixture
def employee_user(db) -> User:
    return _user_with_role("eve.employee", Role.EMPLOYEE)


@pytest.fixture
def outsider(db) -> User:
    return _user_with_role("oscar.outsider", None)
