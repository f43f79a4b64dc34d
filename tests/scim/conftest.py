"""A SCIM client as an identity provider uses it: a bearer key of the scim scope."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from access.actions import create_api_key
from access.models import ApiKey
from lockerhub.audit import SYSTEM

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Scim:
    def __init__(self, secret: str) -> None:
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body) if body is not None else ""
        return getattr(self.client, method)(
            f"/scim/v2/{path}", data=data, content_type="application/scim+json"
        )

    def get(self, path: str) -> Any:
        return self.client.get(f"/scim/v2/{path}")

    def post(self, path: str, body: Any) -> Any:
        return self._send("post", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self._send("put", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("patch", path, body)

    def delete(self, path: str) -> Any:
        return self.client.delete(f"/scim/v2/{path}")


@pytest.fixture
def scim(db) -> Scim:
    return Scim(create_api_key("Okta", "hr", scope=ApiKey.Scope.SCIM, actor=SYSTEM)[1])


def okta_user(user_name: str = "E3001", **extra: Any) -> dict[str, Any]:
    """What Okta sends to create a user."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": user_name,
        "name": {"givenName": "Chris", "familyName": "Doe"},
        "emails": [{"primary": True, "value": "chris.doe@example.com", "type": "work"}],
        "displayName": "Chris Doe",
        "locale": "en-US",
        "externalId": "00u1abcd",
        "groups": [],
        "password": "ignored-1234",
        "active": True,
        ENTERPRISE: {"department": "Warehouse", "employeeNumber": user_name},
        **extra,
    }
