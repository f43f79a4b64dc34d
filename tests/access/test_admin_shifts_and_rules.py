"""Shift patterns and access rules written in the Django admin go through ``access.actions``:
audited under the administrator's name, and a refused delete is an error message that leaves
everything as it was."""

from __future__ import annotations

from datetime import time

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client

from access.models import AccessRule, Shift
from lockerhub.models import AuditEvent
from tests.admin_pages import messages_of, url
from tests.conftest import World

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic


def audit_of(action: str) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action=action).values_list("actor", "subject_id"))


def shift_form(shift: Shift, **change: object) -> dict[str, object]:
    days = [str(1 << i) for i in range(7) if shift.days & (1 << i)]
    return {
        "site": str(shift.site_id),
        "name": shift.name,
        "days": days,
        "start": f"{shift.start:%H:%M}",
        "end": f"{shift.end:%H:%M}",
        **change,
    }


def rule_form(rule: AccessRule, **change: object) -> dict[str, object]:
    form: dict[str, object] = {
        "name": rule.name,
        "max_concurrent": str(rule.max_concurrent),
        "grace_before_minutes": str(rule.grace_before_minutes),
        "grace_after_minutes": str(rule.grace_after_minutes),
    }
    for flag in ("is_active", "require_shift"):
        if getattr(rule, flag):
            form[flag] = "on"
    for link in ("departments", "groups", "employees", "asset_types", "sites", "banks"):
        form[link] = [str(pk) for pk in getattr(rule, link).values_list("pk", flat=True)]
    form.update(change)
    return form


# --- Shifts ---


def test_a_shift_added_in_the_admin_is_audited_under_the_admins_name(
    world: World, admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        url(Shift, "add"),
        {
            "site": str(world.site.pk),
            "name": " Late ",
            "days": ["1", "2"],
            "start": "14:00",
            "end": "22:00",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    shift = Shift.objects.get(site=world.site, name="Late")
    assert (shift.days, shift.start, shift.end) == (0b11, time(14), time(22))
    assert audit_of("shift.created") == [(f"user:{admin_user.pk}", str(shift.pk))]
    # The admin's own history points at the row the action saved.
    assert LogEntry.objects.get(object_id=str(shift.pk)).is_addition()


def test_a_shift_changed_in_the_admin_audits_old_and_new(
    world: World, admin_client: Client, admin_user: User
) -> None:
    shift = world.night_shift
    response = admin_client.post(url(Shift, "change", shift.pk), shift_form(shift, end="05:30"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Shift.objects.get(pk=shift.pk).end == time(5, 30)
    event = AuditEvent.objects.get(action="shift.updated")
    assert (event.actor, event.data) == (f"user:{admin_user.pk}", {"end": ["06:00", "05:30"]})


def test_a_taken_shift_name_is_a_form_error_and_changes_nothing(
    world: World, admin_client: Client
) -> None:
    before = AuditEvent.objects.count()
    response = admin_client.post(
        url(Shift, "change", world.night_shift.pk), shift_form(world.night_shift, name="Day")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Shift.objects.get(pk=world.night_shift.pk).name == "Night"
    assert AuditEvent.objects.count() == before


def test_a_shift_nobody_works_is_deleted_and_audited(
    world: World, admin_client: Client, admin_user: User, at_wednesday_10am
) -> None:
    shift = world.night_shift
    response = admin_client.post(url(Shift, "delete", shift.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Shift.objects.filter(pk=shift.pk).exists()
    assert audit_of("shift.deleted") == [(f"user:{admin_user.pk}", str(shift.pk))]


def test_deleting_a_shift_someone_still_works_is_refused_with_a_message(
    world: World, admin_client: Client, at_wednesday_10am
) -> None:
    shift = world.day_shift
    before = (AuditEvent.objects.count(), LogEntry.objects.count())

    response = admin_client.post(url(Shift, "delete", shift.pk), {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == url(Shift, "change", shift.pk)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "end them before deleting" in text
    assert Shift.objects.filter(pk=shift.pk).exists()
    assert shift.assignments.count() == 1
    assert (AuditEvent.objects.count(), LogEntry.objects.count()) == before


def test_deleting_selected_shifts_is_all_or_nothing(
    world: World, admin_client: Client, at_wednesday_10am
) -> None:
    before = (AuditEvent.objects.count(), LogEntry.objects.count())
    shifts = [world.night_shift, world.day_shift]  # nobody works nights; Ana works days

    response = admin_client.post(
        url(Shift, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(s.pk) for s in shifts],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "end them before deleting" in text
    assert Shift.objects.filter(pk__in=[s.pk for s in shifts]).count() == 2
    assert (AuditEvent.objects.count(), LogEntry.objects.count()) == before


def test_deleting_selected_shifts_nobody_works_audits_each(
    world: World, admin_client: Client, admin_user: User, at_wednesday_10am
) -> None:
    late = Shift.objects.create(site=world.site, name="Late", start=time(14), end=time(22))
    shifts = [world.night_shift, late]

    response = admin_client.post(
        url(Shift, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(s.pk) for s in shifts],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert [level for level, _ in messages_of(response)] == ["success"]
    assert not Shift.objects.filter(pk__in=[s.pk for s in shifts]).exists()
    assert sorted(audit_of("shift.deleted")) == sorted(
        (f"user:{admin_user.pk}", str(s.pk)) for s in shifts
    )


# --- Access rules ---


def test_a_rule_added_in_the_admin_is_audited_with_its_links(
    world: World, admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        url(AccessRule, "add"),
        {
            "name": "Tablets for the warehouse",
            "is_active": "on",
            "departments": [str(world.department.pk)],
            "asset_types": [str(world.tablet.pk), str(world.scanner.pk)],
            "banks": [str(world.other_bank.pk)],
            "max_concurrent": "2",
            "grace_before_minutes": "15",
            "grace_after_minutes": "30",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = AccessRule.objects.get(name="Tablets for the warehouse")
    assert sorted(t.code for t in rule.asset_types.all()) == ["scanner", "tablet"]
    assert [b.code for b in rule.banks.all()] == ["BANK-B"]
    assert (rule.require_shift, rule.max_concurrent, rule.grace_after_minutes) == (False, 2, 30)
    event = AuditEvent.objects.get(action="access_rule.created")
    assert (event.actor, event.subject_id) == (f"user:{admin_user.pk}", str(rule.pk))
    assert (event.data["departments"], event.data["asset_types"], event.data["banks"]) == (
        ["Warehouse"],
        ["scanner", "tablet"],
        ["BANK-B"],
    )


def test_a_rule_changed_in_the_admin_audits_only_what_changed(
    world: World, admin_client: Client, admin_user: User
) -> None:
    rule = world.rule
    response = admin_client.post(
        url(AccessRule, "change", rule.pk),
        rule_form(rule, banks=[str(world.other_bank.pk)], max_concurrent="3"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert ([b.code for b in rule.banks.all()], rule.max_concurrent) == (["BANK-B"], 3)
    assert [d.name for d in rule.departments.all()] == ["Warehouse"]
    event = AuditEvent.objects.get(action="access_rule.updated")
    assert (event.actor, event.data) == (
        f"user:{admin_user.pk}",
        {"banks": [[], ["BANK-B"]], "max_concurrent": [1, 3]},
    )


def test_a_rule_without_asset_types_is_a_form_error_and_changes_nothing(
    world: World, admin_client: Client
) -> None:
    before = AuditEvent.objects.count()
    response = admin_client.post(
        url(AccessRule, "change", world.rule.pk), rule_form(world.rule, asset_types=[])
    )

    assert response.status_code == 200
    assert "asset_types" in response.context["adminform"].form.errors
    assert [t.code for t in world.rule.asset_types.all()] == ["scanner"]
    assert AuditEvent.objects.count() == before


def test_a_rule_deleted_in_the_admin_keeps_what_it_said_in_the_audit_log(
    world: World, admin_client: Client, admin_user: User
) -> None:
    rule = world.rule
    response = admin_client.post(url(AccessRule, "delete", rule.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not AccessRule.objects.exists()
    event = AuditEvent.objects.get(action="access_rule.deleted")
    assert (event.actor, event.subject_id) == (f"user:{admin_user.pk}", str(rule.pk))
    assert (event.data["name"], event.data["asset_types"]) == ("Warehouse scanners", ["scanner"])


def test_deleting_selected_rules_audits_each(
    world: World, admin_client: Client, admin_user: User
) -> None:
    second = AccessRule.objects.create(name="Second")
    second.asset_types.add(world.tablet)

    response = admin_client.post(
        url(AccessRule, "changelist"),
        {
            "action": "delete_selected",
            ACTION_CHECKBOX_NAME: [str(world.rule.pk), str(second.pk)],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not AccessRule.objects.exists()
    assert sorted(audit_of("access_rule.deleted")) == sorted(
        (f"user:{admin_user.pk}", str(pk)) for pk in (world.rule.pk, second.pk)
    )
