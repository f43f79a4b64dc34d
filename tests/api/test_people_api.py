"""HR runs people and badges through the API; every write goes through the actions layer."""

from __future__ import annotations

from datetime import timedelta

from access.actions import present_badge
from access.models import ApiKey, Badge, Employee, Reason, ShiftAssignment
from lockerhub.models import AuditEvent
from tests.api.conftest import key_client
from tests.conftest import WEDNESDAY_10AM, World


def test_hr_creates_and_updates_an_employee_and_the_audit_names_the_key(
    world: World, make_key
) -> None:
    client = key_client(make_key("hr", name="HRIS"))
    created = client.post(
        "/api/employees/",
        {"employee_number": "E2001", "first_name": "Bo", "department": "Warehouse"},
        format="json",
    )
    assert created.status_code == 201, created.content
    employee = Employee.objects.get(employee_number="E2001")
    assert employee.department == world.department
    changed = client.patch(f"/api/employees/{employee.pk}/", {"last_name": "Lind"}, format="json")
    assert changed.json()["last_name"] == "Lind"
    key = ApiKey.objects.get(name="HRIS")
    assert list(
        AuditEvent.objects.filter(
            subject_type="access.employee", subject_id=str(employee.pk)
        ).values_list("action", "actor")
    ) == [("employee.created", f"api-key:{key.pk}"), ("employee.updated", f"api-key:{key.pk}")]


def test_offboarding_through_the_api_revokes_badges_and_lists_devices(
    world: World, make_key
) -> None:
    response = key_client(make_key("hr")).post(f"/api/employees/{world.ana.pk}/offboard/")
    assert response.status_code == 200
    body = response.json()
    assert body["employee"]["status"] == "offboarded"
    assert body["revoked_badges"] == [world.ana_badge.uid]
    assert not ShiftAssignment.objects.filter(employee=world.ana, valid_until=None).exists()


def test_a_lost_badge_is_replaced_and_only_the_new_one_opens(
    world: World, make_key, at_wednesday_10am
) -> None:
    response = key_client(make_key("hr")).post(
        f"/api/badges/{world.ana_badge.pk}/replace/",
        {"uid": "04:aa:bb:cc", "status": "lost"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["uid"] == "04AABBCC"
    assert Badge.objects.get(pk=world.ana_badge.pk).status == Badge.Status.LOST
    now = WEDNESDAY_10AM + timedelta(minutes=1)
    assert present_badge(world.bank, world.ana_badge.uid, now=now).reason == Reason.BADGE_LOST
    assert present_badge(world.bank, "04AABBCC", now=now).granted


def test_the_pin_is_set_but_never_shown(world: World, make_key) -> None:
    response = key_client(make_key("hr")).post(
        f"/api/badges/{world.ana_badge.pk}/pin/", {"pin": "4711"}, format="json"
    )
    assert response.json()["has_pin"] is True
    assert "4711" not in response.content.decode()
    assert Badge.objects.get(pk=world.ana_badge.pk).check_pin("4711")
    bad = key_client(make_key("hr")).post(
        f"/api/badges/{world.ana_badge.pk}/pin/", {"pin": "12"}, format="json"
    )
    assert bad.status_code == 400
    assert "pin" in bad.json()["error"]["fields"]


def test_lists_are_paginated_and_filtered(world: World, make_key) -> None:
    for n in range(5):
        Employee.objects.create(employee_number=f"P{n}", first_name=f"P{n}", last_name="Zed")
    client = key_client(make_key("hr"))
    page = client.get("/api/employees/?page_size=2").json()
    assert page["count"] == 6
    assert len(page["results"]) == 2
    assert page["next"]
    only = client.get("/api/employees/?employee_number=P3").json()["results"]
    assert [e["employee_number"] for e in only] == ["P3"]
    searched = client.get("/api/employees/?search=Ana").json()["results"]
    assert [e["employee_number"] for e in searched] == ["E1001"]
