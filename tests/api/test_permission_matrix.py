"""Every endpoint enforces the caller's role, by session and by API key alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from access.models import AccessRule, Shift
from assets.models import Asset, Reservation
from lockerhub.actions import raise_alert
from lockerhub.models import Alert, AuditEvent
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


def _fill(value: object, world: World, **more: int) -> object:
    ids = {
        "{ana}": str(world.ana.pk),
        "{badge}": str(world.ana_badge.pk),
        "{night}": str(world.night_shift.pk),
        "{slot}": str(world.slot(5).pk),
        "{site}": str(world.site.pk),
        "{rule}": str(world.rule.pk),
        "{asset}": str(world.slot(1).asset_id),
        **{f"{{{name}}}": str(pk) for name, pk in more.items()},
    }
    if isinstance(value, dict):
        return {k: _fill(v, world, **more) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, world, **more) for v in value]
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


# Writes that change shifts, access rules, assets, alerts and doors. "{...}" are filled in per
# test.
RULE_BODY = {
    "name": "Warehouse tablets",
    "asset_types": ["tablet"],
    "departments": ["Warehouse"],
    "banks": ["BANK-B"],
}
MORE_WRITES = [
    (
        "post",
        "/api/shifts/",
        {"site": "{site}", "name": "Late", "days": ["Mon"], "start": "14:00", "end": "22:00"},
        {HR},
        201,
    ),
    (
        "put",
        "/api/shifts/{night}/",
        {"site": "{site}", "name": "Night", "days": ["Fri"], "start": "22:00", "end": "06:00"},
        {HR},
        200,
    ),
    ("patch", "/api/shifts/{night}/", {"end": "05:30"}, {HR}, 200),
    ("delete", "/api/shifts/{night}/", None, {HR}, 204),
    ("post", "/api/access-rules/", RULE_BODY, {HR}, 201),
    ("put", "/api/access-rules/{rule}/", RULE_BODY, {HR}, 200),
    ("patch", "/api/access-rules/{rule}/", {"max_concurrent": 2}, {HR}, 200),
    ("delete", "/api/access-rules/{rule}/", None, {HR}, 204),
    (
        "post",
        "/api/assets/",
        {"asset_tag": "SC-9001", "asset_type": "scanner", "serial_number": "SN-9001"},
        {FM},
        201,
    ),
    ("patch", "/api/assets/{asset}/", {"serial_number": "SN-NEW"}, {SUP, FM}, 200),
    ("post", "/api/assets/{asset}/retire/", {"reason": "Cracked housing"}, {FM}, 200),
    (
        "post",
        "/api/assets/{asset}/maintenance/",
        {"in_maintenance": True, "reason": "Battery swells"},
        {SUP, FM},
        200,
    ),
    ("post", "/api/alerts/{alert}/acknowledge/", None, {SUP}, 200),
    ("post", "/api/alerts/{alert}/snooze/", {"until": "2026-03-11T12:00:00+01:00"}, {SUP}, 200),
    ("post", "/api/alerts/{alert}/resolve/", None, {SUP}, 200),
    ("post", "/api/slots/{slot}/remote-open/", {"reason": "Stuck strap"}, {SUP}, 202),
]
MORE_WRITE_IDS = [f"{method} {path}" for method, path, *_ in MORE_WRITES]


@pytest.fixture
def open_alert(world: World, at_wednesday_10am) -> Alert:
    alert, _ = raise_alert(
        Alert.Kind.BANK_OFFLINE, "bank-offline:BANK-A", "Bank BANK-A is offline", bank=world.bank
    )
    return alert


def _state() -> tuple[Any, ...]:
    """Everything the writes above may touch, to show that a refused one touched nothing."""
    rules = AccessRule.objects.order_by("pk")
    links = ("departments", "groups", "employees", "asset_types", "sites", "banks")
    return (
        list(Shift.objects.order_by("pk").values_list("site", "name", "days", "start", "end")),
        list(
            rules.values_list(
                "name",
                "is_active",
                "require_shift",
                "grace_before_minutes",
                "grace_after_minutes",
                "max_concurrent",
            )
        ),
        [
            sorted(getattr(rule, link).values_list("pk", flat=True))
            for rule in rules
            for link in links
        ],
        list(
            Asset.objects.order_by("pk").values_list(
                "asset_tag", "serial_number", "asset_type", "status", "notes"
            )
        ),
        list(Alert.objects.values_list("acknowledged_at", "snoozed_until", "resolved_at")),
        Reservation.objects.count(),
        AuditEvent.objects.count(),
    )


def _write(client: APIClient, world: World, alert: Alert, method: str, path: str, body: Any) -> Any:
    return getattr(client, method)(
        _fill(path, world, alert=alert.pk), _fill(body, world, alert=alert.pk), format="json"
    )


def _expect(response: Any, allowed: bool, ok: int, before: tuple[Any, ...]) -> None:
    if allowed:
        assert response.status_code == ok, response.content
        assert AuditEvent.objects.count() > before[-1]  # every write is audited
    else:
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "permission_denied"
        assert _state() == before


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "ok"), MORE_WRITES, ids=MORE_WRITE_IDS
)
def test_a_session_user_writes_only_what_their_role_owns(
    world: World,
    open_alert: Alert,
    request: pytest.FixtureRequest,
    persona,
    method,
    path,
    body,
    allowed,
    ok,
) -> None:
    # CSRF is on for sessions and has its own tests below; here it would only hide the role check.
    client = session_client(request.getfixturevalue(FIXTURES[persona]), csrf=False)
    before = _state()
    response = _write(client, world, open_alert, method, path, body)
    _expect(response, persona in allowed, ok, before)


@pytest.mark.parametrize("role", KEY_ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "ok"), MORE_WRITES, ids=MORE_WRITE_IDS
)
def test_an_api_key_writes_only_what_its_role_owns(
    world: World, open_alert: Alert, make_key, role, method, path, body, allowed, ok
) -> None:
    client = key_client(make_key(role))
    before = _state()
    response = _write(client, world, open_alert, method, path, body)
    _expect(response, role in allowed, ok, before)


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "ok"), MORE_WRITES, ids=MORE_WRITE_IDS
)
def test_a_superuser_makes_every_write(
    world: World, open_alert: Alert, method, path, body, allowed, ok
) -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "correct horse battery")
    before = _state()
    response = _write(session_client(admin, csrf=False), world, open_alert, method, path, body)
    _expect(response, True, ok, before)


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "ok"), MORE_WRITES, ids=MORE_WRITE_IDS
)
def test_a_write_without_credentials_answers_401_and_changes_nothing(
    world: World, open_alert: Alert, method, path, body, allowed, ok
) -> None:
    before = _state()
    response = _write(APIClient(), world, open_alert, method, path, body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert _state() == before


def test_a_session_remote_open_needs_the_csrf_token(world: World, supervisor: User) -> None:
    response = session_client(supervisor).post(
        f"/api/slots/{world.slot(5).pk}/remote-open/", {"reason": "Stuck strap"}, format="json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not Reservation.objects.exists()


def test_a_session_shift_change_needs_the_csrf_token(world: World, hr_officer: User) -> None:
    response = session_client(hr_officer).patch(
        f"/api/shifts/{world.night_shift.pk}/", {"end": "05:30"}, format="json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert Shift.objects.get(pk=world.night_shift.pk).end.hour == 6
