"""The OpenAPI schema validates with no warnings, and is served to signed-in callers."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management import call_command

from tests.api.conftest import key_client, session_client


def test_the_schema_validates_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    # --fail-on-warn turns any warning (an unresolvable field, a clashing name) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    for path in ("/api/employees/", "/api/badges/{id}/replace/", "/api/checkouts/"):
        assert path in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_schema_and_docs_are_served_to_a_signed_in_user(db, supervisor) -> None:
    client = session_client(supervisor)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_schema_needs_credentials(db, api, make_key) -> None:
    assert api.get("/api/schema/").status_code == 401
    assert key_client(make_key("hr")).get("/api/schema/").status_code == 200
