"""SCIM discovery endpoints and bearer-token authentication."""

from __future__ import annotations

from django.test import Client

from access.actions import create_api_key, revoke_api_key
from access.models import ApiKey, Employee
from lockerhub.audit import SYSTEM
from tests.scim.conftest import ENTERPRISE, Scim, okta_user

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_service_provider_config_says_what_is_supported(db, scim: Scim) -> None:
    config = scim.get("ServiceProviderConfig").json()
    assert config["patch"]["supported"] is True
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["bulk"]["supported"] is False
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"


def test_schemas_and_resource_types_describe_users(db, scim: Scim) -> None:
    schemas = scim.get("Schemas").json()
    assert {s["id"] for s in schemas["Resources"]} == {USER, ENTERPRISE}
    user = scim.get(f"Schemas/{USER}").json()
    assert "userName" in {a["name"] for a in user["attributes"]}
    types = scim.get("ResourceTypes").json()
    assert types["Resources"][0]["endpoint"] == "/Users"
    assert scim.get("ResourceTypes/User").json()["schema"] == USER


def test_without_a_valid_scim_token_nothing_is_provisioned(db) -> None:
    anonymous = Client().post(
        "/scim/v2/Users", data=okta_user(), content_type="application/scim+json"
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    api_scope = create_api_key("HRIS", "hr", actor=SYSTEM)[1]
    assert Scim(api_scope).post("Users", okta_user()).status_code == 401
    wrong_role = create_api_key("Ops", "supervisor", scope=ApiKey.Scope.SCIM, actor=SYSTEM)[1]
    assert Scim(wrong_role).post("Users", okta_user()).status_code == 403
    key, secret = create_api_key("Old", "hr", scope=ApiKey.Scope.SCIM, actor=SYSTEM)
    revoke_api_key(key, actor=SYSTEM)
    assert Scim(secret).get("Users").status_code == 401
    assert not Employee.objects.exists()


def test_an_unsupported_method_is_a_scim_405(db, scim: Scim) -> None:
    response = scim.delete("Users")
    assert response.status_code == 405
    assert response.json()["status"] == "405"
