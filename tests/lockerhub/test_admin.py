"""The Django admin: every model reachable, no N+1 changelists, history read-only, and the
state-changing admin actions going through the write layer with their permissions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.db import transaction
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.models import (
    AccessEvent,
    AccessRule,
    Badge,
    Department,
    Employee,
    EmployeeGroup,
    Reason,
    Shift,
    ShiftAssignment,
)
from assets.models import Asset, AssetType, Checkout, Reservation
from devices.models import LockerBank, Site, Slot
from lockerhub import audit
from lockerhub.models import Alert, AlertDelivery, AuditEvent, AuditHead, WebhookEndpoint
from lockerhub.roles import Role
from tests.conftest import give_totp

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic

N = 20  # rows per model for the N+1 guard

REGISTERED: list[type[Model]] = [
    Site,
    LockerBank,
    Slot,
    AssetType,
    Asset,
    Checkout,
    Reservation,
    Department,
    EmployeeGroup,
    Employee,
    Badge,
    Shift,
    ShiftAssignment,
    AccessRule,
    AccessEvent,
    AuditEvent,
    Alert,
    WebhookEndpoint,
    AlertDelivery,
]
HISTORY: list[type[Model]] = [AuditEvent, AccessEvent, Checkout, Reservation]
# A changelist page: session, user, counts, the page, date hierarchy and filter choices. An
# N+1 over 20 rows would add at least 20.
CHANGELIST_MAX_QUERIES = 14


def _id(model: type[Model]) -> str:
    return model._meta.label_lower


def url(model: type[Model] | Model, view: str, *args: object) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


@dataclass
class AdminWorld:
    site: Site
    bank: LockerBank
    slots: list[Slot]
    assets: list[Asset]
    employees: list[Employee]
    badges: list[Badge]
    shift: Shift


@pytest.fixture
def admin_world(db: None) -> AdminWorld:
    """``N`` rows of every model, related the way the take/return flow relates them."""
    now = timezone.now()
    sites = [Site.objects.create(name=f"Site {i:02d}", time_zone="Europe/Berlin") for i in range(N)]
    banks = [
        LockerBank.objects.create(
            site=sites[i], code=f"BANK-{i:02d}", name=f"Bank {i}", location=f"Gate {i}"
        )
        for i in range(N)
    ]
    site, bank = sites[0], banks[0]
    types = [
        AssetType.objects.create(code=f"type-{i}", name=f"Type {i}", requires_pin=i == 1)
        for i in range(N)
    ]
    departments = [Department.objects.create(name=f"Department {i}") for i in range(N)]
    shifts = [
        Shift.objects.create(
            site=sites[i], name=f"Shift {i}", start=time(i % 24), end=time((i + 8) % 24)
        )
        for i in range(N)
    ]
    boss = Employee.objects.create(
        employee_number="E-BOSS", first_name="Berta", last_name="Boss", department=departments[0]
    )

    employees, badges, assets, slots = [], [], [], []
    for i in range(N):
        employee = Employee.objects.create(
            employee_number=f"E-{i:04d}",
            first_name=f"First{i}",
            last_name=f"Last{i}",
            department=departments[i],
            home_site=sites[i],
            supervisor=boss,
        )
        employees.append(employee)
        badges.append(
            Badge.objects.create(
                employee=employee, uid=f"04A1B2{i:02X}", issued_at=now - timedelta(days=i)
            )
        )
        ShiftAssignment.objects.create(
            employee=employee, shift=shifts[i], valid_from=now.date() - timedelta(days=30)
        )
        asset = Asset.objects.create(
            asset_tag=f"SC-{i:04d}", serial_number=f"SN{i}", asset_type=types[i]
        )
        assets.append(asset)
        slots.append(
            Slot.objects.create(
                bank=bank, number=i + 1, board=i // 16, lock_index=i % 16, asset=asset
            )
        )

    for i in range(N):
        group = EmployeeGroup.objects.create(name=f"Group {i}")
        group.members.add(employees[i], employees[(i + 1) % N])
        rule = AccessRule.objects.create(name=f"Rule {i}", require_shift=bool(i % 2))
        rule.asset_types.add(types[i], types[(i + 1) % N])
        rule.departments.add(departments[i])
        rule.groups.add(group)
        rule.employees.add(employees[i])
        rule.sites.add(sites[i])
        rule.banks.add(banks[i])
        taken = now - timedelta(hours=i + 2)
        checkout = Checkout.objects.create(
            asset=assets[i],
            employee=employees[i],
            badge=badges[i],
            status=Checkout.Status.RETURNED,
            slot_out=slots[i],
            slot_back=slots[(i + 1) % N],
            reserved_at=taken,
            opened_at=taken,
            taken_at=taken,
            due_at=taken + timedelta(hours=8),
            returned_at=taken + timedelta(hours=1),
            condition=Checkout.Condition.OK,
        )
        Reservation.objects.create(
            slot=slots[i],
            checkout=checkout,
            purpose=Reservation.Purpose.TAKE,
            status=Reservation.Status.DONE,
            created_at=taken,
            expires_at=taken + timedelta(seconds=30),
            opened_at=taken,
            ended_at=taken,
        )
        AccessEvent.objects.create(
            bank=bank,
            at=taken,
            uid=badges[i].uid,
            badge=badges[i],
            employee=employees[i],
            granted=True,
            reason=Reason.GRANTED_TAKE,
            slot=slots[i],
            checkout=checkout,
        )
        alert = Alert.objects.create(
            kind=Alert.Kind.DOOR_HELD_OPEN,
            dedup_key=f"held:{i}",
            title=f"Door {i + 1} held open",
            site=sites[i],
            bank=banks[i],
            employee=employees[i],
            opened_at=taken,
        )
        endpoint = WebhookEndpoint.objects.create(
            name=f"Hook {i}", url=f"https://hooks.example.com/{i}"
        )
        AlertDelivery.objects.create(
            key=f"{alert.pk}:alert.raised:0:webhook:{endpoint.pk}",
            alert=alert,
            event="alert.raised",
            channel=AlertDelivery.Channel.WEBHOOK,
            endpoint=endpoint,
            recipient=endpoint.url,
        )
        with transaction.atomic():
            audit.record(
                "test.event", actor=audit.SYSTEM, subject=checkout, data={"i": i}, at=taken
            )
    return AdminWorld(site, bank, slots, assets, employees, badges, shifts[0])


def staff_client(*perms: str) -> tuple[Client, User]:
    """A logged-in staff user holding exactly ``perms`` ("app_label.codename")."""
    user = User.objects.create_user(
        "staff", "staff@example.com", "a-long-password-123", is_staff=True
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    give_totp(user)  # staff pages need a second factor
    client = Client()
    client.force_login(user)
    return client, user


def role_client(role: Role) -> Client:
    """A logged-in staff user in ``role``'s group (permissions as the role migration sets them)."""
    user = User.objects.create_user(
        f"{role}-user", f"{role}@example.com", "a-long-password-123", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role.group_name))
    give_totp(user)  # staff pages need a second factor
    client = Client()
    client.force_login(user)
    return client


def run_action(client: Client, model: type[Model], action: str, objects: list[Model], **extra: str):
    data = {
        "action": action,
        ACTION_CHECKBOX_NAME: [str(o.pk) for o in objects],
        "index": "0",
        **extra,
    }
    return client.post(url(model, "changelist"), data)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Registration, pages, query counts ---


def test_every_model_is_registered_except_the_audit_head() -> None:
    ours = {
        m
        for m in admin.site._registry
        if m._meta.app_label in {"lockerhub", "access", "assets", "devices"}
    }
    assert ours == set(REGISTERED)
    assert AuditHead not in admin.site._registry


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=_id)
def test_changelist_add_and_change_pages_render(
    admin_client: Client, admin_world: AdminWorld, model: type[Model]
) -> None:
    response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count > 0

    model_admin = admin.site._registry[model]
    request = response.wsgi_request
    response = admin_client.get(url(model, "add"))
    assert response.status_code == (200 if model_admin.has_add_permission(request) else 403)

    obj = model._default_manager.first()
    response = admin_client.get(url(model, "change", obj.pk))
    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=_id)
def test_changelist_query_count_does_not_grow_with_rows(
    admin_client: Client, admin_world: AdminWorld, model: type[Model], django_assert_max_num_queries
) -> None:
    assert model._default_manager.count() >= N
    with django_assert_max_num_queries(CHANGELIST_MAX_QUERIES):
        response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= N


@pytest.mark.django_db
def test_search_slot_changelist_filter_query_count(
    admin_client: Client, admin_world: AdminWorld, django_assert_max_num_queries
) -> None:
    # Searching across a multi-valued relation (badge UIDs) must not bring the N+1 back either.
    with django_assert_max_num_queries(CHANGELIST_MAX_QUERIES):
        response = admin_client.get(url(Employee, "changelist"), {"q": "Last1", "status": "active"})
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 11  # Last1, Last10 … Last19


# --- History is read-only ---


@pytest.mark.django_db
@pytest.mark.parametrize("model", HISTORY, ids=_id)
def test_history_refuses_add_change_and_delete(
    admin_client: Client, admin_world: AdminWorld, model: type[Model]
) -> None:
    obj = model._default_manager.first()
    before = model._default_manager.count()

    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.get(url(model, "delete", obj.pk)).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403

    page = admin_client.get(url(model, "change", obj.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()

    changelist = admin_client.get(url(model, "changelist"))
    assert "delete_selected" not in changelist.content.decode()
    response = run_action(admin_client, model, "delete_selected", [obj], post="yes")
    assert response.status_code == 200  # no actions at all: the POST is ignored
    assert model._default_manager.count() == before


@pytest.mark.django_db
def test_history_viewable_with_view_permission_only(admin_world: AdminWorld) -> None:
    client, _ = staff_client("assets.view_checkout")
    assert client.get(url(Checkout, "changelist")).status_code == 200
    checkout = Checkout.objects.first()
    page = client.get(url(Checkout, "change", checkout.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert client.get(url(AccessEvent, "changelist")).status_code == 403


@pytest.mark.django_db
def test_audit_event_admin_never_edits_or_deletes(
    admin_client: Client, admin_world: AdminWorld
) -> None:
    event = AuditEvent.objects.order_by("seq").first()
    model_admin = admin.site._registry[AuditEvent]
    request = admin_client.get(url(AuditEvent, "changelist")).wsgi_request
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert not model_admin.has_add_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    event.refresh_from_db()
    assert event.compute_hash() == event.hash
    assert list(audit.verify_chain()) == []


# --- Offboarding ---


@pytest.mark.django_db
def test_offboard_action_offboards_revokes_and_reports_devices_out(
    admin_client: Client, admin_user: User, admin_world: AdminWorld
) -> None:
    leaver, other = admin_world.employees[0], admin_world.employees[1]
    extra_badge = Badge.objects.create(employee=leaver, uid="0A0B0C0D")
    out = admin_world.assets[5]
    Asset.objects.filter(pk=out.pk).update(status=Asset.Status.CHECKED_OUT)
    Slot.objects.filter(pk=admin_world.slots[5].pk).update(asset=None)
    now = timezone.now()
    Checkout.objects.create(
        asset=out,
        employee=leaver,
        status=Checkout.Status.ACTIVE,
        slot_out=admin_world.slots[5],
        reserved_at=now,
        taken_at=now,
        due_at=now + timedelta(hours=8),
    )

    response = run_action(admin_client, Employee, "offboard", [leaver])
    assert response.status_code == 302

    leaver.refresh_from_db()
    assert leaver.status == Employee.Status.OFFBOARDED
    assert leaver.offboarded_at is not None
    assert set(Badge.objects.filter(employee=leaver).values_list("status", flat=True)) == {
        Badge.Status.REVOKED
    }
    assert Badge.objects.get(pk=extra_badge.pk).revoked_reason == "offboarded"
    assert not ShiftAssignment.objects.filter(employee=leaver, valid_until__isnull=True).exists()
    assert Alert.objects.open().filter(kind=Alert.Kind.RECOVERY, employee=leaver).exists()
    event = AuditEvent.objects.get(action="employee.offboarded", subject_id=str(leaver.pk))
    assert event.actor == audit.actor_for_user(admin_user)
    assert (
        AuditEvent.objects.filter(
            action="badge.revoked", actor=audit.actor_for_user(admin_user)
        ).count()
        == 2
    )

    texts = messages_of(response)
    assert any(out.asset_tag in t and "still has 1 device" in t for t in texts)
    assert any("1 employee(s) offboarded, 2 badge(s) revoked" in t for t in texts)

    other.refresh_from_db()
    assert other.status == Employee.Status.ACTIVE

    # Running it again changes nothing.
    response = run_action(admin_client, Employee, "offboard", [leaver])
    assert any("0 employee(s) offboarded, 0 badge(s) revoked" in t for t in messages_of(response))
    assert AuditEvent.objects.filter(action="employee.offboarded").count() == 1


@pytest.mark.django_db
def test_offboard_action_needs_the_offboard_permission(admin_world: AdminWorld) -> None:
    client, _ = staff_client("access.view_employee", "access.change_employee")
    employee = admin_world.employees[0]

    page = client.get(url(Employee, "changelist"))
    assert page.status_code == 200
    assert 'value="offboard"' not in page.content.decode()

    response = run_action(client, Employee, "offboard", [employee])
    assert response.status_code == 200  # this user has no admin actions here: the POST is ignored
    employee.refresh_from_db()
    assert employee.status == Employee.Status.ACTIVE
    assert Badge.objects.get(pk=admin_world.badges[0].pk).status == Badge.Status.ACTIVE
    assert not AuditEvent.objects.filter(action="employee.offboarded").exists()


@pytest.mark.django_db
def test_offboard_action_offered_with_the_permission(admin_world: AdminWorld) -> None:
    client, user = staff_client("access.view_employee", "access.offboard_employee")
    assert 'value="offboard"' in client.get(url(Employee, "changelist")).content.decode()
    run_action(client, Employee, "offboard", [admin_world.employees[3]])
    assert Employee.objects.get(pk=admin_world.employees[3].pk).status == Employee.Status.OFFBOARDED
    assert AuditEvent.objects.get(action="employee.offboarded").actor == audit.actor_for_user(user)


@pytest.mark.django_db
def test_employee_status_is_read_only_in_the_form(
    admin_client: Client, admin_world: AdminWorld
) -> None:
    page = admin_client.get(url(Employee, "change", admin_world.employees[0].pk)).content.decode()
    assert 'name="status"' not in page
    assert 'name="offboarded_at"' not in page
    assert (
        "Offboard selected employees"
        in admin_client.get(url(Employee, "changelist")).content.decode()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "model", "action", "offered"),
    [
        (Role.SUPERVISOR, Slot, "take_out_of_service", True),
        (Role.SUPERVISOR, Alert, "resolve", True),
        (Role.SUPERVISOR, Employee, "offboard", False),
        (Role.SUPERVISOR, Badge, "revoke", False),
        (Role.HR, Employee, "offboard", True),
        (Role.HR, Badge, "revoke", True),
        (Role.HR, Badge, "mark_lost", True),
        (Role.FACILITY_MANAGER, Alert, "resolve", False),
        (Role.FACILITY_MANAGER, Slot, "take_out_of_service", False),
    ],
)
def test_role_groups_get_exactly_their_actions(
    admin_world: AdminWorld, role: Role, model: type[Model], action: str, offered: bool
) -> None:
    page = role_client(role).get(url(model, "changelist"))
    assert page.status_code == 200
    assert (f'value="{action}"' in page.content.decode()) is offered


@pytest.mark.django_db
def test_hr_can_open_the_employee_and_badge_forms(admin_world: AdminWorld) -> None:
    client = role_client(Role.HR)
    assert client.get(url(Employee, "add")).status_code == 200
    assert client.get(url(Badge, "add")).status_code == 200
    assert client.get(url(Employee, "change", admin_world.employees[0].pk)).status_code == 200
    # The employee picker on the badge form is an autocomplete HR may use.
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "access", "model_name": "badge", "field_name": "employee", "term": "E-0001"},
    )
    assert response.status_code == 200
    assert response.json()["results"]


# --- Badges ---


@pytest.mark.django_db
def test_revoke_and_mark_lost_actions(
    admin_client: Client, admin_user: User, admin_world: AdminWorld
) -> None:
    first, second, third = admin_world.badges[:3]
    response = run_action(admin_client, Badge, "revoke", [first, second], reason="Card cloned")
    assert response.status_code == 302
    assert any("2 badge(s) revoked" in t for t in messages_of(response))
    first.refresh_from_db()
    assert first.status == Badge.Status.REVOKED
    assert first.revoked_reason == "Card cloned"
    assert first.revoked_at is not None
    assert AuditEvent.objects.filter(
        action="badge.revoked", subject_id=str(first.pk), actor=audit.actor_for_user(admin_user)
    ).exists()

    response = run_action(admin_client, Badge, "mark_lost", [first, third])
    assert any("1 badge(s) marked lost" in t for t in messages_of(response))
    assert (
        Badge.objects.get(pk=first.pk).status == Badge.Status.REVOKED
    )  # a revoked badge stays revoked
    assert Badge.objects.get(pk=third.pk).status == Badge.Status.LOST
    # The employee keeps their status; only the card is affected.
    assert Employee.objects.get(pk=first.employee_id).status == Employee.Status.ACTIVE


@pytest.mark.django_db
def test_revoke_action_needs_the_revoke_permission(admin_world: AdminWorld) -> None:
    client, _ = staff_client("access.view_badge", "access.change_badge")
    assert 'value="revoke"' not in client.get(url(Badge, "changelist")).content.decode()
    run_action(client, Badge, "revoke", [admin_world.badges[0]])
    assert Badge.objects.get(pk=admin_world.badges[0].pk).status == Badge.Status.ACTIVE


@pytest.mark.django_db
def test_badge_change_form_hides_pin_hash_and_keeps_status(
    admin_client: Client, admin_world: AdminWorld
) -> None:
    badge = admin_world.badges[0]
    badge.set_pin("4321")
    badge.save()
    page = admin_client.get(url(Badge, "change", badge.pk)).content.decode()
    assert "pin_hash" not in page
    assert badge.pin_hash not in page
    assert 'name="status"' not in page
    assert 'name="uid"' not in page

    response = admin_client.post(
        url(Badge, "change", badge.pk),
        {
            "technology": "desfire",
            "valid_from_0": "2024-01-01",
            "valid_from_1": "00:00:00",
            "status": "revoked",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    badge.refresh_from_db()
    assert badge.technology == "desfire"
    assert badge.status == Badge.Status.ACTIVE


@pytest.mark.django_db
def test_badge_added_in_the_admin_is_normalised_and_issued_through_the_write_layer(
    admin_client: Client, admin_user: User, admin_world: AdminWorld
) -> None:
    employee = admin_world.employees[2]
    data = {
        "employee": str(employee.pk),
        "uid": "04:a1:b2:c3:d4",
        "technology": "iso14443a",
        "valid_from_0": "2024-01-01",
        "valid_from_1": "00:00:00",
        "pin": "123456",
    }
    response = admin_client.post(url(Badge, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    badge = Badge.objects.get(uid="04A1B2C3D4")
    assert badge.employee == employee
    assert badge.status == Badge.Status.ACTIVE
    assert badge.check_pin("123456")
    assert AuditEvent.objects.get(
        action="badge.issued", subject_id=str(badge.pk)
    ).actor == audit.actor_for_user(admin_user)

    # The same UID again, written differently, is refused while the first is active.
    response = admin_client.post(url(Badge, "add"), {**data, "uid": "04 A1 B2 C3 D4", "pin": ""})
    assert response.status_code == 200
    assert "uid" in response.context["adminform"].form.errors
    assert Badge.objects.filter(uid="04A1B2C3D4").count() == 1

    # A malformed UID is refused, not normalised into something else.
    response = admin_client.post(url(Badge, "add"), {**data, "uid": "04:a1", "pin": ""})
    assert response.status_code == 200
    assert "uid" in response.context["adminform"].form.errors


@pytest.mark.django_db
def test_no_badge_for_an_offboarded_employee(admin_client: Client, admin_world: AdminWorld) -> None:
    employee = admin_world.employees[4]
    Employee.objects.filter(pk=employee.pk).update(status=Employee.Status.OFFBOARDED)
    response = admin_client.post(
        url(Badge, "add"),
        {
            "employee": str(employee.pk),
            "uid": "DEADBEEF",
            "technology": "iso14443a",
            "valid_from_0": "2024-01-01",
            "valid_from_1": "00:00:00",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()
    assert not Badge.objects.filter(uid="DEADBEEF").exists()


@pytest.mark.django_db
def test_badge_issued_from_the_employee_inline(
    admin_client: Client, admin_user: User, admin_world: AdminWorld
) -> None:
    employee = admin_world.employees[6]
    assignment = ShiftAssignment.objects.get(employee=employee)
    data = {
        "employee_number": employee.employee_number,
        "first_name": employee.first_name,
        "last_name": employee.last_name,
        "email": "",
        "department": str(employee.department_id),
        "home_site": str(employee.home_site_id),
        "supervisor": str(employee.supervisor_id),
        "user": "",
        "badges-TOTAL_FORMS": "1",
        "badges-INITIAL_FORMS": "0",
        "badges-MIN_NUM_FORMS": "0",
        "badges-MAX_NUM_FORMS": "1000",
        "badges-0-uid": "aa:bb:cc:dd:ee",
        "badges-0-technology": "iso14443a",
        "badges-0-valid_from_0": "2024-01-01",
        "badges-0-valid_from_1": "00:00:00",
        "shift_assignments-TOTAL_FORMS": "1",
        "shift_assignments-INITIAL_FORMS": "1",
        "shift_assignments-MIN_NUM_FORMS": "0",
        "shift_assignments-MAX_NUM_FORMS": "1000",
        "shift_assignments-0-id": str(assignment.pk),
        "shift_assignments-0-employee": str(employee.pk),
        "shift_assignments-0-shift": str(assignment.shift_id),
        "shift_assignments-0-valid_from": assignment.valid_from.isoformat(),
        "shift_assignments-0-valid_until": "",
        "status": "offboarded",
    }
    response = admin_client.post(url(Employee, "change", employee.pk), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    badge = Badge.objects.get(uid="AABBCCDDEE")
    assert badge.employee_id == employee.pk
    assert AuditEvent.objects.get(
        action="badge.issued", subject_id=str(badge.pk)
    ).actor == audit.actor_for_user(admin_user)
    employee.refresh_from_db()
    assert employee.status == Employee.Status.ACTIVE  # status is not a form field


# --- Slots ---


@pytest.mark.django_db
def test_out_of_service_actions(
    admin_client: Client, admin_user: User, admin_world: AdminWorld
) -> None:
    slot, other = admin_world.slots[0], admin_world.slots[1]
    response = run_action(admin_client, Slot, "take_out_of_service", [slot], reason="Hinge broken")
    assert response.status_code == 302
    assert any("1 slot(s) taken out of service" in t for t in messages_of(response))
    slot.refresh_from_db()
    assert slot.out_of_service
    assert slot.out_of_service_reason == "Hinge broken"
    assert not Slot.objects.get(pk=other.pk).out_of_service
    assert AuditEvent.objects.get(
        action="slot.out_of_service", subject_id=str(slot.pk)
    ).actor == audit.actor_for_user(admin_user)
    assert (
        not Slot.objects.dispensable(admin_world.bank, {admin_world.assets[0].asset_type_id})
        .filter(pk=slot.pk)
        .exists()
    )

    response = run_action(admin_client, Slot, "put_back_in_service", [slot, other])
    assert any("1 slot(s) put back in service" in t for t in messages_of(response))
    slot.refresh_from_db()
    assert not slot.out_of_service
    assert slot.out_of_service_reason == ""
    assert AuditEvent.objects.filter(action="slot.back_in_service").count() == 1


@pytest.mark.django_db
def test_out_of_service_needs_the_permission_and_is_read_only_in_the_form(
    admin_world: AdminWorld,
) -> None:
    client, _ = staff_client("devices.view_slot", "devices.change_slot")
    slot = admin_world.slots[0]
    assert 'value="take_out_of_service"' not in client.get(url(Slot, "changelist")).content.decode()
    run_action(client, Slot, "take_out_of_service", [slot], reason="x")
    assert not Slot.objects.get(pk=slot.pk).out_of_service
    page = client.get(url(Slot, "change", slot.pk)).content.decode()
    assert 'name="out_of_service"' not in page
    assert 'name="charge_state"' not in page


@pytest.mark.django_db
def test_locker_bank_hides_token_and_shows_state_read_only(
    admin_client: Client, admin_world: AdminWorld
) -> None:
    bank = admin_world.bank
    token = bank.new_token()
    bank.is_online = True
    bank.last_heartbeat_at = timezone.now()
    bank.save()
    page = admin_client.get(url(LockerBank, "change", bank.pk)).content.decode()
    assert bank.token_hash not in page
    assert "token_hash" not in page
    assert token not in page
    assert 'name="is_online"' not in page
    assert 'name="last_heartbeat_at' not in page
    assert "Last heartbeat at" in page
    assert 'name="slots-TOTAL_FORMS"' in page


# --- Assets ---


@pytest.mark.django_db
def test_asset_status_cannot_be_set_to_or_from_checked_out(
    admin_client: Client, admin_world: AdminWorld
) -> None:
    add = admin_client.get(url(Asset, "add"))
    choices = [value for value, _ in add.context["adminform"].form.fields["status"].choices]
    assert Asset.Status.CHECKED_OUT not in choices
    assert Asset.Status.MAINTENANCE in choices

    asset = admin_world.assets[0]
    Asset.objects.filter(pk=asset.pk).update(status=Asset.Status.CHECKED_OUT)
    page = admin_client.get(url(Asset, "change", asset.pk))
    assert "status" not in page.context["adminform"].form.fields


# --- Alerts ---


@pytest.mark.django_db
def test_resolve_alert_action(
    admin_client: Client, admin_user: User, admin_world: AdminWorld
) -> None:
    alert = Alert.objects.get(dedup_key="held:3")
    response = run_action(admin_client, Alert, "resolve", [alert])
    assert any("1 alert(s) resolved" in t for t in messages_of(response))
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert AuditEvent.objects.get(
        action="alert.resolved", subject_id=str(alert.pk)
    ).actor == audit.actor_for_user(admin_user)
    assert Alert.objects.open().count() == N - 1


@pytest.mark.django_db
def test_resolve_alert_needs_the_permission(admin_world: AdminWorld) -> None:
    client, _ = staff_client("lockerhub.view_alert")
    assert 'value="resolve"' not in client.get(url(Alert, "changelist")).content.decode()
    run_action(client, Alert, "resolve", [Alert.objects.first()])
    assert Alert.objects.open().count() == N


# --- Search ---


@pytest.mark.django_db
def test_search_employees_by_number(admin_client: Client, admin_world: AdminWorld) -> None:
    response = admin_client.get(url(Employee, "changelist"), {"q": "E-0007"})
    assert [e.pk for e in response.context["cl"].result_list] == [admin_world.employees[7].pk]


@pytest.mark.django_db
def test_search_employees_by_badge_uid(admin_client: Client, admin_world: AdminWorld) -> None:
    response = admin_client.get(
        url(Employee, "changelist"), {"q": admin_world.badges[9].uid.lower()}
    )
    assert [e.pk for e in response.context["cl"].result_list] == [admin_world.employees[9].pk]


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["04A1B20C", "04a1b20c", "04:A1:B2:0C", "04 a1 b2 0c"])
def test_search_badges_by_uid(admin_client: Client, admin_world: AdminWorld, term: str) -> None:
    response = admin_client.get(url(Badge, "changelist"), {"q": term})
    assert [b.pk for b in response.context["cl"].result_list] == [admin_world.badges[12].pk]


# --- Shifts ---


@pytest.mark.django_db
def test_shift_days_are_checkboxes(admin_client: Client, admin_world: AdminWorld) -> None:
    response = admin_client.post(
        url(Shift, "add"),
        {
            "site": str(admin_world.site.pk),
            "name": "Weekend",
            "days": ["32", "64"],
            "start": "08:00",
            "end": "16:00",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    shift = Shift.objects.get(name="Weekend")
    assert shift.days == 0b1100000
    assert shift.days_display == "Sat,Sun"
    page = admin_client.get(url(Shift, "change", shift.pk))
    assert page.context["adminform"].form.initial["days"] == [32, 64]
