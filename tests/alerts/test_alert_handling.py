"""People act on alerts: acknowledge, snooze, resolve, with role checks and clear refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from lockerhub import actions
from lockerhub.models import Alert, AuditEvent
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


@pytest.fixture
def alert(world: World, time_machine) -> Alert:
    time_machine.move_to(NOW, tick=False)
    alert, _ = actions.raise_alert(
        Alert.Kind.BANK_OFFLINE,
        "bank-offline:BANK-A",
        "Bank BANK-A is offline",
        bank=world.bank,
        site_id=world.site.pk,
    )
    return alert


def test_a_supervisor_acknowledges_once(alert: Alert, supervisor) -> None:
    actions.acknowledge_alert(alert, user=supervisor, now=NOW)
    actions.acknowledge_alert(alert, user=supervisor, now=NOW + timedelta(minutes=1))
    alert.refresh_from_db()
    assert (alert.acknowledged_at, alert.acknowledged_by, alert.state) == (
        NOW,
        supervisor,
        "acknowledged",
    )
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 1


def test_a_supervisor_resolves_and_the_audit_names_them(alert: Alert, supervisor) -> None:
    actions.resolve_alert(alert, user=supervisor, now=NOW)
    alert.refresh_from_db()
    assert (alert.resolved_at, alert.resolved_by) == (NOW, supervisor)
    assert AuditEvent.objects.get(action="alert.resolved").actor == f"user:{supervisor.pk}"
    with pytest.raises(ValidationError, match="resolved already"):
        actions.resolve_alert(alert, user=supervisor)


@pytest.mark.parametrize("persona", ["employee_user", "hr_officer", "facility_manager", "outsider"])
def test_people_without_the_permission_change_nothing(
    alert: Alert, persona: str, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(persona)
    for act in (actions.acknowledge_alert, actions.resolve_alert):
        with pytest.raises(PermissionDenied):
            act(alert, user=user)
    with pytest.raises(PermissionDenied):
        actions.snooze_alert(alert, user=user, until=NOW + timedelta(hours=1))
    alert.refresh_from_db()
    assert alert.state == "open"
    assert alert.snoozed_until is None


def test_snooze_until_a_time_in_the_next_week(alert: Alert, supervisor) -> None:
    actions.snooze_alert(alert, user=supervisor, until=NOW + timedelta(hours=2), now=NOW)
    alert.refresh_from_db()
    assert alert.snoozed_until == NOW + timedelta(hours=2)
    assert alert.is_snoozed(NOW + timedelta(hours=1))
    assert not alert.is_snoozed(NOW + timedelta(hours=2))


@pytest.mark.parametrize(
    ("until", "message"),
    [
        (NOW - timedelta(minutes=1), "next 7 days"),
        (NOW, "next 7 days"),
        (NOW + timedelta(days=8), "next 7 days"),
        (NOW.replace(tzinfo=None) + timedelta(hours=1), "time zone"),
    ],
)
def test_a_bad_snooze_is_refused_and_changes_nothing(
    alert: Alert, supervisor, until, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        actions.snooze_alert(alert, user=supervisor, until=until, now=NOW)
    alert.refresh_from_db()
    assert alert.snoozed_until is None
    assert not AuditEvent.objects.filter(action="alert.snoozed").exists()


def test_lists_show_alerts_only_to_those_who_may_see_them(
    alert: Alert, supervisor, facility_manager, hr_officer, outsider
) -> None:
    assert list(Alert.objects.visible_to(supervisor)) == [alert]
    assert list(Alert.objects.visible_to(facility_manager)) == [alert]
    assert list(Alert.objects.visible_to(hr_officer)) == []
    assert list(Alert.objects.visible_to(outsider)) == []
