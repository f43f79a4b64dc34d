"""Every 4xx has one shape, and bad input changes nothing."""

from __future__ import annotations

from access.models import Badge, Employee
from lockerhub.models import AuditEvent
from tests.api.conftest import key_client
from tests.conftest import World


def test_invalid_fields_are_named_and_nothing_is_saved(world: World, make_key) -> None:
    client = key_client(make_key("hr"))
    before = (Employee.objects.count(), AuditEvent.objects.count())
    response = client.post(
        "/api/employees/", {"employee_number": "", "email": "not-an-email"}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"employee_number", "first_name", "email"}
    assert (Employee.objects.count(), AuditEvent.objects.count()) == before


def test_a_taken_employee_number_is_a_field_error(world: World, make_key) -> None:
    response = key_client(make_key("hr")).post(
        "/api/employees/", {"employee_number": "E1001", "first_name": "Ana"}, format="json"
    )
    assert response.status_code == 400
    assert "taken" in response.json()["error"]["fields"]["employee_number"][0]
    assert Employee.objects.filter(employee_number="E1001").count() == 1


def test_a_bad_uid_is_refused_by_the_action_in_the_same_shape(world: World, make_key) -> None:
    response = key_client(make_key("hr")).post(
        "/api/badges/", {"employee": world.ana.pk, "uid": "XYZ"}, format="json"
    )
    assert response.status_code == 400
    assert "uid" in response.json()["error"]["fields"]
    assert Badge.objects.count() == 1


def test_malformed_json_is_a_parse_error(world: World, make_key) -> None:
    response = key_client(make_key("hr")).post(
        "/api/employees/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_not_found_and_forbidden_have_the_same_shape(world: World, make_key) -> None:
    hr = key_client(make_key("hr"))
    missing = hr.get("/api/employees/999999/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    forbidden = hr.get("/api/slots/")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"


def test_a_method_not_allowed_has_the_same_shape(world: World, make_key) -> None:
    response = key_client(make_key("hr")).delete(f"/api/employees/{world.ana.pk}/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert Employee.objects.filter(pk=world.ana.pk).exists()
