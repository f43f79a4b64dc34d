"""Deprovisioning through SCIM runs the offboarding flow: badges die at every bank."""

from __future__ import annotations

from datetime import timedelta

import pytest

from access.actions import issue_badge, present_badge
from access.models import Badge, Employee, Reason
from lockerhub.audit import SYSTEM
from tests.conftest import WEDNESDAY_10AM, World
from tests.scim.conftest import PATCH, Scim, okta_user


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "value": {"active": False}},  # Okta
        {"op": "Replace", "path": "active", "value": "False"},  # Entra ID
        {"op": "replace", "path": "active", "value": False},
    ],
    ids=["okta-value-only", "entra-string-boolean", "path-active"],
)
def test_create_then_patch_inactive_offboards_and_revokes_badges(
    world: World, scim: Scim, operation: dict, at_wednesday_10am
) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    employee = Employee.objects.get(pk=pk)
    badge = issue_badge(employee, "0F0F0F0F", actor=SYSTEM)

    response = scim.patch(f"Users/{pk}", {"schemas": [PATCH], "Operations": [operation]})

    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    employee.refresh_from_db()
    assert employee.status == Employee.Status.OFFBOARDED
    assert Badge.objects.get(pk=badge.pk).status == Badge.Status.REVOKED
    for bank in (world.bank, world.other_bank):
        tap = present_badge(bank, "0F0F0F0F", now=WEDNESDAY_10AM + timedelta(minutes=1))
        assert (tap.granted, tap.reason) == (False, Reason.EMPLOYEE_OFFBOARDED)


def test_an_offboarded_user_is_not_reactivated(world: World, scim: Scim) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    scim.patch(
        f"Users/{pk}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    again = scim.patch(
        f"Users/{pk}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": True}]},
    )
    assert again.status_code == 400
    assert again.json()["scimType"] == "mutability"
    assert Employee.objects.get(pk=pk).status == Employee.Status.OFFBOARDED


def test_delete_offboards_and_the_user_is_gone_from_scim(world: World, scim: Scim) -> None:
    pk = scim.post("Users", okta_user()).json()["id"]
    issue_badge(Employee.objects.get(pk=pk), "0F0F0F0F", actor=SYSTEM)
    assert scim.delete(f"Users/{pk}").status_code == 204
    employee = Employee.objects.get(pk=pk)  # kept: checkouts and history point at it
    assert employee.status == Employee.Status.OFFBOARDED
    assert not employee.badges.filter(status=Badge.Status.ACTIVE).exists()
    assert scim.get(f"Users/{pk}").status_code == 404
    assert scim.delete(f"Users/{pk}").status_code == 404
