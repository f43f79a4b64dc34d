"""Staff roles. Each role is a Django group whose permissions a migration keeps in step.

Code asks ``has_role(user, Role.HR)`` or checks a permission; it never compares group names
by hand. Superusers hold every role.
"""

from __future__ import annotations

import enum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(enum.StrEnum):
    EMPLOYEE = "employee"
    SUPERVISOR = "supervisor"
    HR = "hr"
    FACILITY_MANAGER = "facility_manager"

    @property
    def group_name(self) -> str:
        return ROLE_GROUPS[self]


ROLE_GROUPS: dict[Role, str] = {
    Role.EMPLOYEE: "Employees",
    Role.SUPERVISOR: "Supervisors",
    Role.HR: "HR",
    Role.FACILITY_MANAGER: "Facility managers",
}

# Roles whose accounts must use multi-factor authentication.
STAFF_ROLES = frozenset({Role.SUPERVISOR, Role.HR, Role.FACILITY_MANAGER})

# (app_label, codename) per role. "view_*" and friends are Django's model permissions; the rest
# are declared in the models' Meta.permissions.
ROLE_PERMISSIONS: dict[Role, list[tuple[str, str]]] = {
    Role.EMPLOYEE: [],
    Role.SUPERVISOR: [
        ("devices", "view_site"),
        ("devices", "view_lockerbank"),
        ("devices", "view_slot"),
        ("devices", "change_slot"),
        ("devices", "remote_open_slot"),
        ("devices", "set_slot_out_of_service"),
        ("devices", "pair_kiosk"),
        ("assets", "view_assettype"),
        ("assets", "view_asset"),
        ("assets", "change_asset"),
        ("assets", "view_checkout"),
        ("assets", "view_reservation"),
        ("access", "view_employee"),
        ("access", "view_badge"),
        ("access", "view_accessevent"),
        ("access", "view_shift"),
        ("access", "view_shiftassignment"),
        ("lockerhub", "view_alert"),
        ("lockerhub", "acknowledge_alert"),
    ],
    Role.HR: [
        ("access", "view_department"),
        ("access", "add_department"),
        ("access", "change_department"),
        ("access", "view_employee"),
        ("access", "add_employee"),
        ("access", "change_employee"),
        ("access", "offboard_employee"),
        ("access", "view_employeegroup"),
        ("access", "add_employeegroup"),
        ("access", "change_employeegroup"),
        ("access", "view_badge"),
        ("access", "add_badge"),
        ("access", "change_badge"),
        ("access", "revoke_badge"),
        ("access", "view_shift"),
        ("access", "add_shift"),
        ("access", "change_shift"),
        ("access", "delete_shift"),
        ("access", "view_shiftassignment"),
        ("access", "add_shiftassignment"),
        ("access", "change_shiftassignment"),
        ("access", "delete_shiftassignment"),
        ("access", "view_accessrule"),
        ("access", "add_accessrule"),
        ("access", "change_accessrule"),
        ("access", "delete_accessrule"),
        ("assets", "view_checkout"),
        ("assets", "view_asset"),
    ],
    Role.FACILITY_MANAGER: [
        ("devices", "view_site"),
        ("devices", "view_lockerbank"),
        ("devices", "view_slot"),
        ("assets", "view_assettype"),
        ("assets", "view_asset"),
        ("assets", "add_asset"),
        ("assets", "change_asset"),
        ("assets", "retire_asset"),
        ("assets", "view_checkout"),
        ("access", "view_accessevent"),
        ("lockerhub", "view_alert"),
        ("lockerhub", "view_reports"),
    ],
}


def has_role(user: AbstractBaseUser | AnonymousUser, role: Role) -> bool:
    """Whether ``user`` holds ``role`` (superusers hold them all)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name=role.group_name).exists()
