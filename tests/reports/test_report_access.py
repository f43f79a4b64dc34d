"""Only facility managers and administrators read reports, on the pages and through the API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from assets.reports import REPORTS
from tests.reports.conftest import sign_in

PAGES = [
    "/reports/",
    "/reports/peaks/",
    "/reports/top-users.csv",
    "/reports/idle-assets/?format=csv",
]
ENDPOINTS = ["/api/reports/", "/api/reports/peaks/", "/api/reports/top-users/"]
DENIED = ["outsider", "employee_user", "supervisor", "hr_officer"]


@pytest.fixture
def admin(db) -> User:
    return User.objects.create_superuser(
        "ada.admin", "ada@example.com", "correct horse battery staple"
    )


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_login(client: Client, db, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_api_calls_are_refused(client: Client, db, url: str) -> None:
    assert client.get(url).status_code in (401, 403)


@pytest.mark.parametrize("persona", DENIED)
def test_other_roles_get_403_on_every_page_and_endpoint(
    client: Client, world, persona: str, request: pytest.FixtureRequest
) -> None:
    sign_in(client, request.getfixturevalue(persona))
    for url in PAGES + ENDPOINTS:
        assert client.get(url).status_code == 403, url


@pytest.mark.parametrize("persona", ["facility_manager", "admin"])
def test_facility_managers_and_admins_read_every_report(
    client: Client, world, persona: str, request: pytest.FixtureRequest
) -> None:
    sign_in(client, request.getfixturevalue(persona))
    for url in PAGES + ENDPOINTS:
        assert client.get(url).status_code == 200, url
    for slug in REPORTS:
        assert client.get(f"/reports/{slug}/").status_code == 200, slug
        assert client.get(f"/reports/{slug}.csv").status_code == 200, slug
        assert client.get(f"/api/reports/{slug}/").status_code == 200, slug


def test_csv_export_is_refused_without_the_permission_even_by_format_parameter(
    client: Client, world, supervisor: User
) -> None:
    sign_in(client, supervisor)
    response = client.get("/reports/top-users/?format=csv")
    assert response.status_code == 403
    assert b"E1001" not in response.content
