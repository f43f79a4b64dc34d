"""Supervisors (and their integrations' keys) acknowledge, snooze and resolve alerts through the
API, with the same rules and refusals as on the dashboard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from access.models import ApiKey
from lockerhub.actions import raise_alert
from lockerhub.models import Alert, AuditEvent
from tests.api.conftest import key_client, session_client
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


@pytest.fixture
def alert(world: World, at_wednesday_10am) -> Alert:
    alert, _ = raise_alert(
        Alert.Kind.BANK_OFFLINE,
        "bank-offline:BANK-A",
        "Bank BANK-A is offline",
        bank=world.bank,
        site_id=world.site.pk,
    )
    return alert


@pytest.fixture
def sup_key(make_key) -> tuple[APIClient, str]:
    client = key_client(make_key("supervisor", name="NOC"))
    return client, f"api-key:{ApiKey.objects.get(name='NOC').pk}"


def _unchanged(alert: Alert) -> tuple[Any, ...]:
    alert.refresh_from_db()
    return (
        alert.acknowledged_at,
        alert.snoozed_until,
        alert.resolved_at,
        AuditEvent.objects.count(),
    )


def test_a_supervisor_key_acknowledges_and_the_audit_names_the_key(
    alert: Alert, sup_key: tuple[APIClient, str]
) -> None:
    client, actor = sup_key
    response = client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["acknowledged_by"]) == ("acknowledged", None)
    assert body["acknowledged_at"] is not None
    alert.refresh_from_db()
    assert (alert.acknowledged_at, alert.acknowledged_by) == (NOW, None)
    assert AuditEvent.objects.get(action="alert.acknowledged").actor == actor


def test_acknowledging_again_changes_nothing(alert: Alert, sup_key: tuple[APIClient, str]) -> None:
    client, _ = sup_key
    client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    again = client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert again.status_code == 200
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 1


def test_a_signed_in_supervisor_acknowledges_as_themselves(alert: Alert, supervisor) -> None:
    response = session_client(supervisor, csrf=False).post(f"/api/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200, response.content
    assert response.json()["acknowledged_by"] == supervisor.pk
    event = AuditEvent.objects.get(action="alert.acknowledged")
    assert event.actor == f"user:{supervisor.pk}"


def test_a_snooze_quiets_the_alert_until_a_time_within_the_week(
    alert: Alert, sup_key: tuple[APIClient, str]
) -> None:
    client, actor = sup_key
    response = client.post(
        f"/api/alerts/{alert.pk}/snooze/", {"until": "2026-03-11T14:30:00+01:00"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["snoozed_until"] == "2026-03-11T13:30:00Z"
    alert.refresh_from_db()
    assert alert.snoozed_until == NOW + timedelta(hours=4, minutes=30)
    assert alert.is_snoozed(NOW + timedelta(hours=1))
    assert AuditEvent.objects.get(action="alert.snoozed").actor == actor


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"until": "2026-03-11T09:59:00+01:00"}, "next 7 days"),  # a minute ago
        ({"until": "2026-03-11T10:00:00+01:00"}, "next 7 days"),  # now
        ({"until": "2026-03-18T10:01:00+01:00"}, "next 7 days"),  # a week and a minute
        ({"until": "2026-03-11T12:00:00"}, "UTC offset"),  # which 12:00?
        ({"until": "tomorrow"}, "Datetime has wrong format"),
        ({"until": 1773230400}, "Datetime has wrong format"),
        ({"until": None}, "may not be null"),
        ({}, "required"),
    ],
)
def test_a_bad_snooze_is_a_field_error_and_changes_nothing(
    alert: Alert, sup_key: tuple[APIClient, str], body: dict, message: str
) -> None:
    before = _unchanged(alert)
    response = sup_key[0].post(f"/api/alerts/{alert.pk}/snooze/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["until"]
    assert message in error["fields"]["until"][0]
    assert _unchanged(alert) == before


def test_resolving_closes_the_alert_and_names_the_key(
    alert: Alert, sup_key: tuple[APIClient, str]
) -> None:
    client, actor = sup_key
    response = client.post(f"/api/alerts/{alert.pk}/resolve/")
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["resolved_by"]) == ("resolved", None)
    alert.refresh_from_db()
    assert (alert.resolved_at, alert.resolved_by) == (NOW, None)
    assert AuditEvent.objects.get(action="alert.resolved").actor == actor
    assert client.get("/api/alerts/?open=true").json()["count"] == 0


@pytest.mark.parametrize(
    ("verb", "body"),
    [
        ("acknowledge", None),
        ("snooze", {"until": "2026-03-11T12:00:00+01:00"}),
        ("resolve", None),
    ],
)
def test_a_resolved_alert_refuses_every_handling(
    alert: Alert, sup_key: tuple[APIClient, str], verb: str, body: dict | None
) -> None:
    client, _ = sup_key
    client.post(f"/api/alerts/{alert.pk}/resolve/")
    before = _unchanged(alert)
    response = client.post(f"/api/alerts/{alert.pk}/{verb}/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {"non_field_errors": ["This alert is resolved already."]}
    assert _unchanged(alert) == before


def test_an_unknown_alert_is_not_found(world: World, sup_key: tuple[APIClient, str]) -> None:
    response = sup_key[0].post("/api/alerts/999999/acknowledge/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_facility_manager_sees_alerts_but_cannot_handle_them(alert: Alert, make_key) -> None:
    client = key_client(make_key("facility_manager"))
    assert client.get(f"/api/alerts/{alert.pk}/").status_code == 200
    before = _unchanged(alert)
    assert client.post(f"/api/alerts/{alert.pk}/acknowledge/").status_code == 403
    assert _unchanged(alert) == before
