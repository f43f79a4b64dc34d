"""API keys: hashed at rest, shown once, scoped to a role and to the API or SCIM."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from access.actions import revoke_api_key
from access.models import ApiKey
from lockerhub.audit import SYSTEM
from tests.api.conftest import key_client, session_client


def test_create_api_key_prints_the_secret_once_and_stores_only_its_hash(db) -> None:
    out = StringIO()
    call_command("create_api_key", "--role", "hr", "--name", "Okta", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(name="Okta")
    assert secret.startswith(f"lhk_{key.prefix}_")
    assert key.role == "hr"
    assert secret not in key.secret_hash
    assert key.secret_hash == ApiKey.hash_secret(secret)
    assert key_client(secret).get("/api/employees/").status_code == 200


def test_a_wrong_or_revoked_key_is_refused(world, make_key) -> None:
    secret = make_key("hr")
    forged = secret[:-4] + "AAAA"
    assert key_client(forged).get("/api/employees/").status_code == 401
    revoke_api_key(ApiKey.objects.get(), actor=SYSTEM)
    response = key_client(secret).get("/api/employees/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_scim_key_does_not_open_the_rest_api(world, make_key) -> None:
    assert key_client(make_key("hr", scope="scim")).get("/api/employees/").status_code == 401


def test_using_a_key_notes_when(world, make_key, time_machine) -> None:
    secret = make_key("hr")
    key_client(secret).get("/api/employees/")
    assert ApiKey.objects.get().last_used_at is not None


def test_a_superuser_makes_a_key_through_the_api_and_sees_the_secret_once(db) -> None:
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", "root@example.com", "correct horse battery")
    client = session_client(admin, csrf=False)
    created = client.post("/api/api-keys/", {"name": "HRIS", "role": "hr"}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert key_client(secret).get("/api/employees/").status_code == 200
    listed = client.get("/api/api-keys/").json()["results"]
    assert "secret" not in listed[0]
    assert ApiKey.objects.get().created_by == admin
