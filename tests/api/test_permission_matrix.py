"""Every endpoint enforces the caller's role, by session and by API key alike."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.api.conftest import key_client, session_client
from tests.conftest import World

SUP, HR, FM, EMP = "supervisor", "hr", "facility_manager", "employee"

# Who may list each collection. Superusers may list everything; nobody else is let in.
READERS: dict[str, set[str]] = {
    "employees": {SUP, HR},
    "badges": {SUP, HR},
    "shifts": {SUP, HR},
    "shift-assignments": {SUP, HR},
    "access-rules": {HR},
    "access-events": {SUP, FM},
    "sites": {SUP, FM},
    "banks": {SUP, FM},
    "slots": {SUP, FM},
    "asset-types": {SUP, FM},
    "assets": {SUP, HR, FM},
    "checkouts": {SUP, HR, FM, EMP},  # an employee sees only their own
    "alerts": {SUP, FM},
    "audit-events": set(),
    "api-keys": set(),
}
PERSONAS = [SUP, HR, FM, EMP, "outsider"]
KEY_ROLES = [SUP, HR, FM]


FIXTURES = {
    SUP: "supervisor",
    HR: "hr_officer",
    FM: "facility_manager",
    EMP: "employee_user",
    "outsider": "outsider",
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("collection", sorted(READERS))
def test_a_session_user_lists_only_what_their_role_may_see(
    world: World, request: pytest.FixtureRequest, persona: str, collection: str
) -> None:
    user = request.getfixturevalue(FIXTURES[persona])
    if persona == EMP:
        world.ana.user = user
        world.ana.save()
    response = session_client(user).get(f"/api/{collection}/")
    expected = 200 if persona in READERS[collection] else 403
    assert response.status_code == expected, response.content


@pytest.mark.parametrize("role", KEY_ROLES)
@pytest.mark.parametrize("collection", sorted(READERS))
def test_an_api_key_lists_only_what_its_role_may_see(
    world: World, make_key, role: str, collection: str
) -> None:
    response = key_client(make_key(role)).get(f"/api/{collection}/")
    assert response.status_code == (200 if role in READERS[collection] else 403)


@pytest.mark.parametrize("collection", sorted(READERS))
def test_a_superuser_lists_everything(world: World, collection: str) -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "correct horse battery")
    assert session_client(admin).get(f"/api/{collection}/").status_code == 200


@pytest.mark.parametrize("collection", sorted(READERS))
def test_without_credentials_every_endpoint_answers_401(world: World, collection: str) -> None:
    response = APIClient().get(f"/api/{collection}/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


# (method, path, body, the roles allowed, status when allowed)
WRITES = [
    ("post", "/api/employees/", {"employee_number": "E9", "first_name": "Zoe"}, {HR}, 201),
    ("patch", "/api/employees/{ana}/", {"last_name": "Jones"}, {HR}, 200),
    ("post", "/api/employees/{ana}/offboard/", {}, {HR}, 200),
    ("post", "/api/badges/", {"employee": "{ana}", "uid": "0B0B0B0B"}, {HR}, 201),
    ("post", "/api/badges/{badge}/revoke/", {"status": "lost"}, {HR}, 200),
    ("post", "/api/badges/{badge}/replace/", {"uid": "0C0C0C0C"}, {HR}, 201),
    ("post", "/api/badges/{badge}/pin/", {"pin": "4711"}, {HR}, 200),
    (
        "post",
        "/api/shift-assignments/",
        {"employee": "{ana}", "shift": "{night}", "valid_from": "2026-04-01"},
        {HR},
        201,
    ),
    ("post", "/api/slots/{slot}/out-of-service/", {"out_of_service": False}, {SUP}, 200),
    ("post", "/api/api-keys/", {"name": "X", "role": "hr"}, set(), 201),
]


def _fill(value: object, world: World) -> object:
    ids = {
        "{ana}": str(world.ana.pk),
        "{badge}": str(world.ana_badge.pk),
        "{night}": str(world.night_shift.pk),
        "{slot}": str(world.slot(5).pk),
    }
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    if isinstance(value, str):
        for placeholder, pk in ids.items():
            value = value.replace(placeholder, pk)
    return value


@pytest.mark.parametrize("role", KEY_ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok"), WRITES)
def test_writes_are_open_only_to_the_role_that_owns_them(
    world: World, make_key, role, method, path, body, allowed, ok
) -> None:
    client = key_client(make_key(role))
    response = getattr(client, method)(_fill(path, world), _fill(body, world), format="json")
    assert response.status_code == (ok if role in allowed else 403), response.content


def test_a_session_write_needs_the_csrf_token(world: World, hr_officer: User) -> None:
    client = session_client(hr_officer)
    response = client.post("/api/employees/", {"employee_number": "E9", "first_name": "Zoe"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
