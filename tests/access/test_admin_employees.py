"""The employee record saved in the Django admin goes through the same actions as SCIM, the API
and the CSV import: audited under the name of the staff member who saved, with old and new
values; what the actions refuse is a form error or an error message that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from access.actions import update_employee
from access.models import Badge, Employee
from lockerhub import audit
from tests.admin_pages import audited, rows_and_records
from tests.conftest import World, at_admin, make_employee

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic

ADD = reverse("admin:access_employee_add")


def change_url(employee: Employee) -> str:
    return reverse("admin:access_employee_change", args=[employee.pk])


@pytest.fixture
def hr(hr_officer: User) -> Client:
    """HR at the admin: staff, with the second factor the persona already has."""
    return at_admin(hr_officer)


def employee_form(employee: Employee | None = None, **change: object) -> dict[str, object]:
    """The employee page as posted: the record as it is (or empty), no inline rows."""
    data: dict[str, object] = {
        "employee_number": employee.employee_number if employee else "",
        "first_name": employee.first_name if employee else "",
        "last_name": employee.last_name if employee else "",
        "email": employee.email if employee else "",
        "department": str(employee.department_id or "") if employee else "",
        "home_site": str(employee.home_site_id or "") if employee else "",
        "supervisor": str(employee.supervisor_id or "") if employee else "",
        "user": str(employee.user_id or "") if employee else "",
    }
    for prefix in ("badges", "shift_assignments"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    data.update(change)
    return data


def snapshot() -> tuple[object, ...]:
    """Everything a refused write must leave as it was."""
    return rows_and_records(Employee)


def errors_of(response: Any) -> str:
    assert response.status_code == 200
    return str(response.context["errors"])


def test_an_employee_added_in_the_admin_is_created_through_the_action(
    world: World, hr: Client, hr_officer: User
) -> None:
    login = User.objects.create_user("bo.berg")

    response = hr.post(
        ADD,
        employee_form(
            employee_number="E2001",
            first_name="Bo",
            last_name="Berg",
            email="bo@example.com",
            department=str(world.department.pk),
            home_site=str(world.site.pk),
            supervisor=str(world.ana.pk),
            user=str(login.pk),
            **{
                # A badge issued on the same page lands on the new record.
                "badges-TOTAL_FORMS": "1",
                "badges-0-uid": "04:b0:b0:01",
                "badges-0-technology": "iso14443a",
                "badges-0-valid_from_0": "2026-03-01",
                "badges-0-valid_from_1": "00:00:00",
            },
        ),
    )

    assert response.status_code == 302, errors_of(response)
    bo = Employee.objects.get(employee_number="E2001")
    assert (bo.full_name, bo.supervisor, bo.user, bo.status) == (
        "Bo Berg",
        world.ana,
        login,
        Employee.Status.ACTIVE,
    )
    [(actor, subject, data)] = audited("employee.created")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(bo.pk))
    assert data == {"employee_number": "E2001", "name": "Bo Berg"}
    assert Badge.objects.get(uid="04B0B001").employee == bo
    assert LogEntry.objects.get(object_id=str(bo.pk)).is_addition()


def test_changing_an_employee_audits_old_and_new(
    world: World, hr: Client, hr_officer: User
) -> None:
    boss = make_employee("E1002", "Bo", world.department, site=world.site)

    response = hr.post(
        change_url(world.ana),
        employee_form(
            world.ana, last_name="Lund", email="ana@example.com", supervisor=str(boss.pk)
        ),
    )

    assert response.status_code == 302, errors_of(response)
    ana = Employee.objects.get(pk=world.ana.pk)
    assert (ana.last_name, ana.email, ana.supervisor) == ("Lund", "ana@example.com", boss)
    [(actor, subject, data)] = audited("employee.updated")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(ana.pk))
    assert data == {
        "last_name": ["Test", "Lund"],
        "email": ["", "ana@example.com"],
        "supervisor": ["", "Bo Test (E1002)"],
    }


def test_saving_an_unchanged_employee_audits_nothing(world: World, hr: Client) -> None:
    before = snapshot()

    response = hr.post(change_url(world.ana), employee_form(world.ana))

    assert response.status_code == 302, errors_of(response)
    assert snapshot()[:2] == before[:2]  # the admin's own history notes "no fields changed"


def test_an_employee_number_taken_is_a_form_error_and_changes_nothing(
    world: World, hr: Client
) -> None:
    before = snapshot()

    response = hr.post(ADD, employee_form(employee_number="E1001", first_name="Cy"))

    assert "already exists" in errors_of(response)
    assert snapshot() == before


def test_a_refusal_only_the_action_sees_is_an_error_message_and_changes_nothing(
    world: World, hr: Client
) -> None:
    page = change_url(world.ana)
    before = snapshot()

    # The form lets one pick anyone as supervisor; the action refuses the person themself.
    response = hr.post(
        page, employee_form(world.ana, last_name="Lund", supervisor=str(world.ana.pk))
    )

    assert (response.status_code, response["Location"]) == (302, page)
    [(level, text)] = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert (level, text) == ("error", "Nobody is their own supervisor.")
    assert snapshot() == before


def test_a_login_is_linked_to_one_employee_only(world: World) -> None:
    login = User.objects.create_user("ana.test")
    Employee.objects.filter(pk=world.ana.pk).update(user=login)
    bo = make_employee("E1002", "Bo", world.department)
    before = snapshot()

    with pytest.raises(ValidationError, match="belongs to another employee"):
        update_employee(bo, actor=audit.SYSTEM, user=login)

    assert snapshot() == before
