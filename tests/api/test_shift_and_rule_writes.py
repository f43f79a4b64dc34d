"""HR keeps shift patterns and access rules through the API: every write goes through
``access.actions``, is audited, and bad input changes nothing."""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from access.actions import present_badge
from access.models import AccessRule, ApiKey, EmployeeGroup, Reason, Shift, ShiftAssignment
from devices.models import Site
from lockerhub.models import AuditEvent
from tests.api.conftest import key_client, session_client
from tests.conftest import WEDNESDAY_10AM, World


def _audit(subject_type: str, pk: int) -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(subject_type=subject_type, subject_id=str(pk))
        .order_by("seq")
        .values_list("action", "actor")
    )


def _invalid(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"]
    return error["fields"]


@pytest.fixture
def hr_key(make_key) -> tuple[APIClient, str]:
    client = key_client(make_key("hr", name="HRIS"))
    return client, f"api-key:{ApiKey.objects.get(name='HRIS').pk}"


@pytest.fixture
def admin(db) -> APIClient:
    user = User.objects.create_superuser("root", "root@example.com", "correct horse battery")
    return session_client(user, csrf=False)


# --- Shifts ---


def test_hr_creates_a_shift_by_day_names_and_the_audit_names_the_key(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    client, actor = hr_key
    response = client.post(
        "/api/shifts/",
        {
            "site": world.site.pk,
            "name": "Weekend",
            "days": ["Sat", "Sun"],
            "start": "08:00",
            "end": "16:00",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["days"], body["days_display"], body["crosses_midnight"]) == (
        ["Sat", "Sun"],
        "Sat,Sun",
        False,
    )
    shift = Shift.objects.get(site=world.site, name="Weekend")
    assert (shift.days, shift.start, shift.end) == (0b1100000, time(8), time(16))
    event = AuditEvent.objects.get(action="shift.created")
    assert (event.actor, event.subject_id) == (actor, str(shift.pk))
    assert event.data["days"] == "Sat,Sun"


def test_hr_changes_a_shift_and_the_audit_keeps_old_and_new(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    client, actor = hr_key
    response = client.patch(
        f"/api/shifts/{world.night_shift.pk}/", {"end": "05:30", "days": ["Fri"]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["end"], response.json()["days"]) == ("05:30:00", ["Fri"])
    shift = Shift.objects.get(pk=world.night_shift.pk)
    assert (shift.end, shift.days, shift.name) == (time(5, 30), 0b0010000, "Night")
    event = AuditEvent.objects.get(action="shift.updated")
    assert event.actor == actor
    assert event.data == {"days": ["Mon,Tue,Wed,Thu,Fri", "Fri"], "end": ["06:00", "05:30"]}


def test_a_put_that_changes_nothing_writes_no_audit(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    client, _ = hr_key
    response = client.put(
        f"/api/shifts/{world.day_shift.pk}/",
        {
            "site": world.site.pk,
            "name": "Day",
            "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
            "start": "06:00",
            "end": "14:00",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert not AuditEvent.objects.filter(action="shift.updated").exists()


def test_the_same_name_is_free_at_another_site(world: World, hr_key: tuple[APIClient, str]) -> None:
    other = Site.objects.create(name="Other DC", time_zone="Europe/Lisbon")
    response = hr_key[0].post(
        "/api/shifts/",
        {"site": other.pk, "name": "Day", "days": ["Mon"], "start": "07:00", "end": "15:00"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Shift.objects.filter(name="Day").count() == 2


GOOD_SHIFT = {"name": "Late", "days": ["Mon"], "start": "14:00", "end": "22:00"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": "Day"}, "name", "already"),
        ({"name": " Day "}, "name", "already"),
        ({"name": ""}, "name", "blank"),
        ({"days": []}, "days", "empty"),
        ({"days": ["Mon", "Funday"]}, "days", "not a valid choice"),
        ({"days": "Mon"}, "days", "list"),
        ({"days": 31}, "days", "list"),
        ({"start": "14:00", "end": "14:00"}, "end", "different time"),
        ({"start": "25:00"}, "start", "format"),
        ({"start": None}, "start", "null"),
        ({"site": 999999}, "site", "does not exist"),
        ({"site": "Test DC"}, "site", "Incorrect type"),
    ],
)
def test_a_bad_new_shift_is_a_field_error_and_changes_nothing(
    world: World, hr_key: tuple[APIClient, str], change: dict, field: str, message: str
) -> None:
    before = (Shift.objects.count(), AuditEvent.objects.count())
    body = {"site": world.site.pk, **GOOD_SHIFT, **change}
    fields = _invalid(hr_key[0].post("/api/shifts/", body, format="json"))
    assert list(fields) == [field]
    assert message in str(fields[field])
    assert (Shift.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.parametrize("missing", ["site", "name", "days", "start", "end"])
def test_every_shift_field_is_required(
    world: World, hr_key: tuple[APIClient, str], missing: str
) -> None:
    body = {"site": world.site.pk, **GOOD_SHIFT}
    del body[missing]
    fields = _invalid(hr_key[0].post("/api/shifts/", body, format="json"))
    assert fields == {missing: ["This field is required."]}
    assert not Shift.objects.filter(name="Late").exists()


def test_renaming_a_shift_to_a_taken_name_is_refused(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    before = AuditEvent.objects.count()
    fields = _invalid(
        hr_key[0].patch(f"/api/shifts/{world.night_shift.pk}/", {"name": "Day"}, format="json")
    )
    assert "already" in fields["name"][0]
    assert Shift.objects.get(pk=world.night_shift.pk).name == "Night"
    assert AuditEvent.objects.count() == before


def test_a_shift_someone_still_works_is_not_deleted(
    world: World, admin: APIClient, at_wednesday_10am
) -> None:
    before = AuditEvent.objects.count()
    response = admin.delete(f"/api/shifts/{world.day_shift.pk}/")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "end them before deleting" in error["fields"]["non_field_errors"][0]
    assert Shift.objects.filter(pk=world.day_shift.pk).exists()
    assert ShiftAssignment.objects.filter(shift=world.day_shift).count() == 1
    assert AuditEvent.objects.count() == before


def test_a_shift_someone_will_start_on_is_not_deleted(
    world: World, admin: APIClient, at_wednesday_10am
) -> None:
    ShiftAssignment.objects.create(
        employee=world.ana, shift=world.night_shift, valid_from=date(2026, 4, 1)
    )
    response = admin.delete(f"/api/shifts/{world.night_shift.pk}/")
    assert response.status_code == 400
    assert Shift.objects.filter(pk=world.night_shift.pk).exists()


def test_once_every_assignment_has_ended_the_shift_goes_with_its_history(
    world: World, admin: APIClient, at_wednesday_10am
) -> None:
    assignment = ShiftAssignment.objects.get(shift=world.day_shift)
    assert admin.delete(f"/api/shift-assignments/{assignment.pk}/").status_code == 204
    assignment.refresh_from_db()
    assert assignment.valid_until == WEDNESDAY_10AM.date() - timedelta(days=1)

    response = admin.delete(f"/api/shifts/{world.day_shift.pk}/")

    assert response.status_code == 204, response.content
    assert not Shift.objects.filter(pk=world.day_shift.pk).exists()
    assert not ShiftAssignment.objects.filter(pk=assignment.pk).exists()
    event = AuditEvent.objects.get(action="shift.deleted")
    assert event.data["name"] == "Day"
    assert event.data["past_assignments"] == 1


def test_hr_deletes_a_shift_nobody_works_and_the_audit_names_the_key(
    world: World, hr_key: tuple[APIClient, str], at_wednesday_10am
) -> None:
    client, actor = hr_key
    response = client.delete(f"/api/shifts/{world.night_shift.pk}/")
    assert response.status_code == 204, response.content
    assert not Shift.objects.filter(pk=world.night_shift.pk).exists()
    event = AuditEvent.objects.get(action="shift.deleted")
    assert (event.actor, event.subject_id) == (actor, str(world.night_shift.pk))


def test_hr_is_refused_a_shift_someone_still_works_like_anyone(
    world: World, hr_key: tuple[APIClient, str], at_wednesday_10am
) -> None:
    response = hr_key[0].delete(f"/api/shifts/{world.day_shift.pk}/")
    assert response.status_code == 400, response.content
    assert Shift.objects.filter(pk=world.day_shift.pk).exists()


# --- Access rules ---


def test_a_rule_is_made_from_names_codes_and_ids_and_the_audit_names_the_key(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    client, actor = hr_key
    EmployeeGroup.objects.create(name="Forklift certified")
    response = client.post(
        "/api/access-rules/",
        {
            "name": "Tablets for forklift drivers",
            "departments": ["Warehouse"],
            "groups": ["Forklift certified"],
            "employees": [world.ana.pk],
            "asset_types": ["tablet", "scanner"],
            "sites": [world.site.pk],
            "banks": ["BANK-B"],
            "require_shift": False,
            "max_concurrent": 2,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["departments"], body["groups"], body["employees"], body["banks"]) == (
        ["Warehouse"],
        ["Forklift certified"],
        [world.ana.pk],
        ["BANK-B"],
    )
    assert sorted(body["asset_types"]) == ["scanner", "tablet"]
    assert (body["is_active"], body["grace_before_minutes"], body["max_concurrent"]) == (
        True,
        15,
        2,
    )
    rule = AccessRule.objects.get(name="Tablets for forklift drivers")
    assert _audit("access.accessrule", rule.pk) == [("access_rule.created", actor)]
    data = AuditEvent.objects.get(action="access_rule.created").data
    assert (data["asset_types"], data["employees"], data["sites"]) == (
        ["scanner", "tablet"],
        ["E1001"],
        ["Test DC"],
    )


def test_a_patch_replaces_only_the_links_it_names(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    client, actor = hr_key
    response = client.patch(
        f"/api/access-rules/{world.rule.pk}/",
        {"banks": ["BANK-B"], "grace_after_minutes": 30},
        format="json",
    )
    assert response.status_code == 200, response.content
    rule = AccessRule.objects.get(pk=world.rule.pk)
    assert [b.code for b in rule.banks.all()] == ["BANK-B"]
    assert [d.name for d in rule.departments.all()] == ["Warehouse"]
    assert [t.code for t in rule.asset_types.all()] == ["scanner"]
    event = AuditEvent.objects.get(action="access_rule.updated")
    assert event.actor == actor
    assert event.data == {"banks": [[], ["BANK-B"]], "grace_after_minutes": [15, 30]}


def test_a_paused_rule_grants_nothing_at_the_next_tap(
    world: World, hr_key: tuple[APIClient, str], at_wednesday_10am
) -> None:
    response = hr_key[0].patch(
        f"/api/access-rules/{world.rule.pk}/", {"is_active": False}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["is_active"] is False
    # Inside Ana's shift, with scanners in the bank: only the paused rule stands in the way.
    assert present_badge(world.bank, world.ana_badge.uid).reason == Reason.NOT_PERMITTED


def test_deleting_a_rule_keeps_what_it_said_in_the_audit_log(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    client, actor = hr_key
    response = client.delete(f"/api/access-rules/{world.rule.pk}/")
    assert response.status_code == 204, response.content
    assert not AccessRule.objects.exists()
    event = AuditEvent.objects.get(action="access_rule.deleted")
    assert (event.actor, event.subject_id) == (actor, str(world.rule.pk))
    assert (event.data["name"], event.data["departments"], event.data["asset_types"]) == (
        "Warehouse scanners",
        ["Warehouse"],
        ["scanner"],
    )


GOOD_RULE = {"name": "Tablets", "asset_types": ["tablet"], "departments": ["Warehouse"]}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"departments": ["Warehouse", "Nowhere"]}, "departments", "name=Nowhere does not exist"),
        ({"groups": ["Ghosts"]}, "groups", "does not exist"),
        ({"employees": [999999]}, "employees", "does not exist"),
        ({"employees": ["E1001"]}, "employees", "Incorrect type"),
        ({"asset_types": ["drone"]}, "asset_types", "does not exist"),
        ({"asset_types": []}, "asset_types", "empty"),
        ({"sites": [999999]}, "sites", "does not exist"),
        ({"banks": ["BANK-Z"]}, "banks", "does not exist"),
        ({"departments": "Warehouse"}, "departments", "list"),
        ({"name": "Warehouse scanners"}, "name", "exists already"),
        ({"name": ""}, "name", "blank"),
        ({"max_concurrent": 0}, "max_concurrent", "greater than or equal to 1"),
        ({"max_concurrent": "two"}, "max_concurrent", "valid integer"),
        ({"grace_before_minutes": 5000}, "grace_before_minutes", "less than or equal to 1440"),
        ({"grace_after_minutes": -1}, "grace_after_minutes", "greater than or equal to 0"),
        ({"require_shift": "sometimes"}, "require_shift", "valid boolean"),
    ],
)
def test_a_bad_rule_is_a_field_error_and_changes_nothing(
    world: World, hr_key: tuple[APIClient, str], change: dict, field: str, message: str
) -> None:
    before = (AccessRule.objects.count(), AuditEvent.objects.count())
    fields = _invalid(hr_key[0].post("/api/access-rules/", {**GOOD_RULE, **change}, format="json"))
    assert list(fields) == [field]
    assert message in str(fields[field])
    assert (AccessRule.objects.count(), AuditEvent.objects.count()) == before


def test_a_rule_needs_a_name_and_asset_types(world: World, hr_key: tuple[APIClient, str]) -> None:
    fields = _invalid(hr_key[0].post("/api/access-rules/", {}, format="json"))
    assert set(fields) == {"name", "asset_types"}


def test_emptying_a_rules_asset_types_is_refused(
    world: World, hr_key: tuple[APIClient, str]
) -> None:
    before = AuditEvent.objects.count()
    fields = _invalid(
        hr_key[0].patch(f"/api/access-rules/{world.rule.pk}/", {"asset_types": []}, format="json")
    )
    assert "asset_types" in fields
    assert [t.code for t in AccessRule.objects.get().asset_types.all()] == ["scanner"]
    assert AuditEvent.objects.count() == before


def test_a_signed_in_hr_officer_changes_a_rule_like_an_hr_key(
    world: World, hr_officer: User
) -> None:
    client = session_client(hr_officer, csrf=False)
    assert client.get("/api/access-rules/").status_code == 200
    response = client.patch(
        f"/api/access-rules/{world.rule.pk}/", {"max_concurrent": 3}, format="json"
    )
    assert response.status_code == 200, response.content
    assert AccessRule.objects.get().max_concurrent == 3
    event = AuditEvent.objects.get(action="access_rule.updated")
    assert event.actor == f"user:{hr_officer.pk}"
