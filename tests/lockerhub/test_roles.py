"""ROLE_PERMISSIONS is the source of truth: the migrated role groups hold exactly it, so a
signed-in supervisor and a supervisor's API key may do the same things."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from lockerhub.roles import ROLE_PERMISSIONS, Role


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(Role))
def test_each_migrated_role_group_holds_exactly_its_role_permissions(role: Role) -> None:
    group = Group.objects.get(name=role.group_name)

    held = set(group.permissions.values_list("content_type__app_label", "codename"))

    assert held == set(ROLE_PERMISSIONS[role])


@pytest.mark.django_db
def test_every_role_permission_exists() -> None:
    for role, permissions in ROLE_PERMISSIONS.items():
        assert len(set(permissions)) == len(permissions), f"{role} lists a permission twice"
        for app_label, codename in permissions:
            assert Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).exists(), f"{role}: {app_label}.{codename} does not exist"


def test_supervisors_pair_kiosks() -> None:
    assert ("devices", "pair_kiosk") in ROLE_PERMISSIONS[Role.SUPERVISOR]
    others = set(Role) - {Role.SUPERVISOR}
    assert not any(("devices", "pair_kiosk") in ROLE_PERMISSIONS[role] for role in others)
