"""List endpoints run a fixed number of queries, however many rows they return."""

from __future__ import annotations

import pytest

from access.actions import issue_badge
from lockerhub.audit import SYSTEM
from tests.api.conftest import key_client
from tests.conftest import World, make_employee


@pytest.fixture
def crowd(world: World) -> None:
    for n in range(20):
        employee = make_employee(f"C{n:03d}", f"C{n}", world.department, site=world.site)
        issue_badge(employee, f"0E0E{n:04X}", actor=SYSTEM)


@pytest.mark.parametrize(
    ("collection", "role"),
    [
        ("employees", "hr"),
        ("badges", "hr"),
        ("access-rules", "hr"),
        ("slots", "supervisor"),
        ("checkouts", "supervisor"),
        ("alerts", "supervisor"),
        ("access-events", "supervisor"),
    ],
)
def test_a_list_page_is_a_few_queries(
    crowd, make_key, django_assert_max_num_queries, collection: str, role: str
) -> None:
    client = key_client(make_key(role))
    client.get(f"/api/{collection}/")  # the first call also notes the key's last use
    # key lookup, role group (for has_role), count, page, and the prefetches of rules.
    with django_assert_max_num_queries(9):
        response = client.get(f"/api/{collection}/")
    assert response.status_code == 200
