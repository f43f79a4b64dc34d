"""SCIM /Users as RFC 7644 has it, with payloads shaped like Okta's and Entra ID's."""

from __future__ import annotations

from urllib.parse import quote

from access.models import Department, Employee
from lockerhub.models import AuditEvent
from tests.scim.conftest import ENTERPRISE, PATCH, Scim, okta_user


def test_create_then_get_round_trips_the_mapped_attributes(db, scim: Scim) -> None:
    created = scim.post("Users", okta_user())
    assert created.status_code == 201, created.content
    assert created["Content-Type"] == "application/scim+json"
    user = created.json()
    employee = Employee.objects.get(employee_number="E3001")
    assert user["id"] == str(employee.pk)
    assert (employee.first_name, employee.last_name, employee.email) == (
        "Chris",
        "Doe",
        "chris.doe@example.com",
    )
    assert employee.external_id == "00u1abcd"
    assert employee.department == Department.objects.get(name="Warehouse")
    fetched = scim.get(f"Users/{employee.pk}").json()
    assert fetched["userName"] == "E3001"
    assert fetched["active"] is True
    assert fetched[ENTERPRISE] == {"employeeNumber": "E3001", "department": "Warehouse"}
    assert fetched["meta"]["location"].endswith(f"/scim/v2/Users/{employee.pk}")


def test_a_taken_user_name_is_a_409_uniqueness_error(db, scim: Scim) -> None:
    scim.post("Users", okta_user())
    again = scim.post("Users", okta_user())
    assert again.status_code == 409
    assert again.json()["scimType"] == "uniqueness"
    assert again.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_list_filters_by_user_name_case_insensitively(db, scim: Scim) -> None:
    scim.post("Users", okta_user("E3001"))
    scim.post("Users", okta_user("E3002", externalId="00u2"))
    found = scim.get("Users?filter=" + quote('userName eq "e3002"')).json()
    assert found["totalResults"] == 1
    assert found["Resources"][0]["userName"] == "E3002"
    assert found["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    none = scim.get("Users?filter=" + quote('userName eq "nobody"')).json()
    assert (none["totalResults"], none["Resources"]) == (0, [])
    by_external = scim.get("Users?filter=" + quote('externalId eq "00u2"')).json()
    assert by_external["Resources"][0]["userName"] == "E3002"


def test_list_pages_with_start_index_and_count(db, scim: Scim) -> None:
    for n in range(3):
        scim.post("Users", okta_user(f"E30{n}"))
    page = scim.get("Users?startIndex=2&count=1").json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (3, 2, 1)
    assert page["Resources"][0]["userName"] == "E301"


def test_an_unsupported_filter_is_an_invalid_filter_error(db, scim: Scim) -> None:
    response = scim.get("Users?filter=" + quote('title co "x"'))
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidFilter"


def test_put_replaces_the_user(db, scim: Scim) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    body = okta_user(name={"givenName": "Christa", "familyName": "Roe"}, emails=[])
    body[ENTERPRISE] = {"department": "Returns"}
    replaced = scim.put(f"Users/{pk}", body)
    assert replaced.status_code == 200, replaced.content
    employee = Employee.objects.get(pk=pk)
    assert (employee.first_name, employee.last_name, employee.email) == ("Christa", "Roe", "")
    assert employee.department.name == "Returns"


def test_entra_style_patch_with_paths_updates_fields(db, scim: Scim) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    response = scim.patch(
        f"Users/{pk}",
        {
            "schemas": [PATCH],
            "Operations": [
                {"op": "Replace", "path": "name.familyName", "value": "Smith"},
                {
                    "op": "Add",
                    "path": 'emails[type eq "work"].value',
                    "value": "c.smith@example.com",
                },
                {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Dispatch"},
                {"op": "Replace", "path": "displayName", "value": "Chris Smith"},
            ],
        },
    )
    assert response.status_code == 200, response.content
    employee = Employee.objects.get(pk=pk)
    assert (employee.last_name, employee.email, employee.department.name) == (
        "Smith",
        "c.smith@example.com",
        "Dispatch",
    )


def test_a_patch_with_one_bad_operation_changes_nothing(db, scim: Scim) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    response = scim.patch(
        f"Users/{pk}",
        {
            "schemas": [PATCH],
            "Operations": [
                {"op": "replace", "path": "name.familyName", "value": "Smith"},
                {"op": "replace", "path": "shoeSize", "value": 44},
            ],
        },
    )
    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidPath"
    assert Employee.objects.get(pk=pk).last_name == "Doe"


def test_bad_bodies_get_scim_errors(db, scim: Scim) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    not_json = scim.client.post("/scim/v2/Users", data="{", content_type="application/scim+json")
    assert not_json.json()["scimType"] == "invalidSyntax"
    no_user_name = scim.post("Users", {"name": {"givenName": "X"}})
    assert no_user_name.json()["scimType"] == "invalidValue"
    no_schema = scim.patch(f"Users/{pk}", {"Operations": [{"op": "replace", "path": "active"}]})
    assert no_schema.json()["scimType"] == "invalidSyntax"
    bad_active = scim.patch(
        f"Users/{pk}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": "maybe"}]},
    )
    assert (bad_active.status_code, bad_active.json()["scimType"]) == (400, "invalidValue")
    assert Employee.objects.get(pk=pk).status == Employee.Status.ACTIVE


def test_an_unknown_user_is_404(db, scim: Scim) -> None:
    response = scim.get("Users/424242")
    assert response.status_code == 404
    assert response.json()["status"] == "404"


def test_a_department_named_for_the_first_time_is_made_and_audited_once(db, scim: Scim) -> None:
    made = AuditEvent.objects.filter(action="access.department.created")
    pk = scim.post("Users", okta_user()).json()["id"]
    assert list(made.values_list("data", flat=True)) == [{"name": "Warehouse"}]
    assert made.get().actor.startswith("api-key:")

    body = okta_user(name={"givenName": "Christa", "familyName": "Roe"}, emails=[])
    body[ENTERPRISE] = {"department": "Returns"}
    assert scim.put(f"Users/{pk}", body).status_code == 200
    body[ENTERPRISE] = {"department": "Warehouse"}  # known by now: nothing new to record
    assert scim.put(f"Users/{pk}", body).status_code == 200

    assert sorted(made.values_list("data__name", flat=True)) == ["Returns", "Warehouse"]
    assert Department.objects.count() == 2
