"""An issued badge changed in the Django admin goes through ``update_badge``: audited under the
name of the staff member who saved, with only what changed as old and new values; a PIN never
reaches the audit log; what the action refuses is a form error or an error message that
changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

import access.admin
from access import actions
from access.models import Badge
from lockerhub import audit
from lockerhub.models import AuditEvent
from tests.admin_pages import audited, form_errors, messages_of, rows_and_records
from tests.conftest import World, at_admin

pytestmark = pytest.mark.filterwarnings(
    "ignore:No directory at:UserWarning"
)  # whitenoise, no collectstatic


def change_url(badge: Badge) -> str:
    return reverse("admin:access_badge_change", args=[badge.pk])


@pytest.fixture
def hr(hr_officer: User) -> Client:
    """HR at the admin: staff, with the second factor the persona already has."""
    return at_admin(hr_officer)


def badge_form(badge: Badge, **change: object) -> dict[str, object]:
    """The change page of an issued badge as posted: its values as they are, then ``change``.

    The admin's clock is UTC; the validity fields are posted as such.
    """
    valid_from = badge.valid_from.astimezone(UTC)
    data: dict[str, object] = {
        "technology": badge.technology,
        "valid_from_0": valid_from.strftime("%Y-%m-%d"),
        "valid_from_1": valid_from.strftime("%H:%M:%S"),
        "valid_until_0": "",
        "valid_until_1": "",
    }
    if badge.valid_until is not None:
        until = badge.valid_until.astimezone(UTC)
        data.update(
            valid_until_0=until.strftime("%Y-%m-%d"), valid_until_1=until.strftime("%H:%M:%S")
        )
    if badge.is_temporary:
        data["is_temporary"] = "on"
    data.update(change)
    return data


def snapshot() -> tuple[object, ...]:
    """Everything a refused write must leave as it was."""
    return rows_and_records(Badge)


def test_changing_a_badge_audits_only_what_changed_old_and_new(
    world: World, hr: Client, hr_officer: User
) -> None:
    badge = world.ana_badge

    response = hr.post(
        change_url(badge),
        badge_form(
            badge,
            technology="desfire",
            valid_until_0="2026-12-31",
            valid_until_1="18:00:00",
        ),
    )

    assert response.status_code == 302, form_errors(response)
    badge.refresh_from_db()
    assert badge.technology == Badge.Technology.DESFIRE
    assert badge.valid_until == datetime.fromisoformat("2026-12-31T18:00:00+00:00")
    [(actor, subject, data)] = audited("badge.updated")
    assert (actor, subject) == (audit.actor_for_user(hr_officer), str(badge.pk))
    # valid_from and is_temporary were posted as they were: not written, not recorded.
    assert set(data) == {"uid", "employee", "technology", "valid_until"}
    assert (data["uid"], data["employee"]) == ("04A1B2C3D4E5F6", "E1001")
    assert data["technology"] == ["iso14443a", "desfire"]
    old, new = data["valid_until"]
    assert old is None
    assert datetime.fromisoformat(new) == badge.valid_until
    assert LogEntry.objects.get(object_id=str(badge.pk)).is_change()


def test_saving_an_unchanged_badge_audits_nothing(world: World, hr: Client) -> None:
    before = snapshot()[:2]

    response = hr.post(change_url(world.ana_badge), badge_form(world.ana_badge))

    assert response.status_code == 302, form_errors(response)
    assert snapshot()[:2] == before


@pytest.mark.parametrize(
    "until", [("2025-12-31", "12:00:00"), ("2025-12-31", "23:00:00")], ids=["before", "same-moment"]
)
def test_a_validity_that_does_not_end_after_it_starts_is_a_form_error_and_changes_nothing(
    world: World, hr: Client, until: tuple[str, str]
) -> None:
    badge = world.ana_badge  # valid from 2026-01-01 00:00 Berlin, 2025-12-31 23:00 UTC
    before = snapshot()

    response = hr.post(
        change_url(badge), badge_form(badge, valid_until_0=until[0], valid_until_1=until[1])
    )

    errors = form_errors(response)
    assert "has to end after it starts" in " ".join(errors["valid_until"])
    assert snapshot() == before


def test_a_temporary_badge_without_an_expiry_is_a_form_error_and_changes_nothing(
    world: World, hr: Client
) -> None:
    before = snapshot()

    response = hr.post(change_url(world.ana_badge), badge_form(world.ana_badge, is_temporary="on"))

    assert "needs an expiry" in " ".join(form_errors(response)["valid_until"])
    assert snapshot() == before


def test_a_refusal_only_the_action_sees_is_an_error_message_and_changes_nothing(
    world: World, hr: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone revokes the badge after the form was checked, before the save locks the row.
    def revoked_meanwhile(form: access.admin.BadgeForm) -> dict[str, Any]:
        Badge.objects.filter(pk=form.instance.pk).update(status=Badge.Status.REVOKED)
        return form.cleaned_data

    monkeypatch.setattr(access.admin.BadgeForm, "clean", revoked_meanwhile)
    badge = world.ana_badge
    change = change_url(badge)
    before = snapshot()

    response = hr.post(change, badge_form(badge, technology="desfire"))

    assert (response.status_code, response["Location"]) == (302, change)
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "is revoked" in text
    # The admin's transaction, the revocation made inside it included, was rolled back.
    assert snapshot() == before


def test_a_revoked_badge_is_shown_read_only_and_posting_to_it_changes_nothing(
    world: World, hr: Client
) -> None:
    badge = actions.revoke_badge(world.ana_badge, actor=audit.SYSTEM, reason="lost in the yard")
    page = hr.get(change_url(badge)).content.decode()
    for name in ("technology", "valid_from_0", "valid_until_0", "is_temporary"):
        assert f'name="{name}"' not in page
    before = snapshot()[:2]

    response = hr.post(
        change_url(badge),
        badge_form(badge, technology="desfire", valid_until_0="2027-01-01", valid_until_1="0:00"),
    )

    assert response.status_code == 302
    assert snapshot()[:2] == before


def test_the_action_refuses_a_badge_no_longer_active(world: World) -> None:
    badge = actions.revoke_badge(world.ana_badge, actor=audit.SYSTEM)
    before = snapshot()

    with pytest.raises(ValidationError, match="is revoked"):
        actions.update_badge(badge, actor=audit.SYSTEM, technology="desfire")

    assert snapshot() == before


def test_a_pin_posted_to_the_change_page_is_ignored_and_never_recorded(
    world: World, hr: Client
) -> None:
    badge = actions.set_badge_pin(world.ana_badge, "4321", actor=audit.SYSTEM)
    assert 'name="pin"' not in hr.get(change_url(badge)).content.decode()

    response = hr.post(change_url(badge), badge_form(badge, technology="felica", pin="987654"))

    assert response.status_code == 302, form_errors(response)
    badge.refresh_from_db()
    assert badge.technology == Badge.Technology.FELICA
    assert badge.check_pin("4321")  # the PIN is set by set_badge_pin, not on this page
    [(_, _, data)] = audited("badge.updated")
    assert set(data) == {"uid", "employee", "technology"}
    recorded = " ".join(str(d) for d in AuditEvent.objects.values_list("data", flat=True))
    history = " ".join(LogEntry.objects.values_list("change_message", flat=True))
    for secret in ("987654", "4321", badge.pin_hash):
        assert secret not in recorded
        assert secret not in history


def test_the_action_changes_no_pin_holder_uid_or_status(world: World) -> None:
    for field in ("pin_hash", "uid", "employee", "status"):
        with pytest.raises(ValueError, match="Not a badge field"):
            actions.update_badge(world.ana_badge, actor=audit.SYSTEM, **{field: "x"})
