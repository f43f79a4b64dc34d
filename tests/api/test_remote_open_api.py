"""A supervisor's integration opens a door remotely: the unlock command goes to the bank after
commit, and the answer is the door's reservation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiKey
from assets.models import Reservation
from devices import bankbus
from devices.actions import pending_commands
from lockerhub.models import AuditEvent
from tests.api.conftest import key_client, session_client
from tests.conftest import World


@pytest.fixture(autouse=True)
def _forget_waiters() -> Iterator[None]:
    yield
    bankbus._waiters.clear()


@pytest.fixture
def sup_key(make_key) -> tuple[APIClient, str]:
    client = key_client(make_key("supervisor", name="Facility desk"))
    return client, f"api-key:{ApiKey.objects.get(name='Facility desk').pk}"


def test_the_unlock_command_reaches_the_bank_after_commit_and_answers_202(
    world: World, sup_key: tuple[APIClient, str], django_capture_on_commit_callbacks
) -> None:
    client, actor = sup_key
    slot = world.slot(2)
    woken: list[str] = []
    bankbus.register("BANK-A", lambda: woken.append("BANK-A"))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            f"/api/slots/{slot.pk}/remote-open/", {"reason": "Stuck scanner strap"}, format="json"
        )
    assert response.status_code == 202, response.content
    assert woken == []  # nothing leaves before the transaction commits

    for callback in callbacks:
        callback()
    assert woken
    assert set(woken) == {"BANK-A"}
    # Woken, the bank's connection reads the command from the database and sends it.
    (command,) = pending_commands(world.bank, timezone.now())
    reservation = Reservation.objects.get()
    body = response.json()
    assert body == {
        "id": reservation.pk,
        "slot": slot.pk,
        "command_id": str(reservation.command_id),
        "status": "pending",
        "reason": "Stuck scanner strap",
        "created_at": body["created_at"],
        "expires_at": reservation.expires_at.isoformat().replace("+00:00", "Z"),
    }
    assert command["id"] == str(reservation.command_id)
    assert (command["action"], command["slot"]) == ("unlock", 2)
    assert (reservation.purpose, reservation.requested_by) == (Reservation.Purpose.REMOTE, None)
    event = AuditEvent.objects.get(action="slot.remote_open")
    assert (event.actor, event.data["reason"], event.data["bank"]) == (
        actor,
        "Stuck scanner strap",
        "BANK-A",
    )


def test_a_signed_in_supervisor_is_named_on_the_reservation(world: World, supervisor) -> None:
    response = session_client(supervisor, csrf=False).post(
        f"/api/slots/{world.slot(2).pk}/remote-open/", {"reason": "Jammed"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert Reservation.objects.get().requested_by == supervisor
    assert AuditEvent.objects.get(action="slot.remote_open").actor == f"user:{supervisor.pk}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "required"),
        ({"reason": ""}, "blank"),
        ({"reason": "  x  "}, "at least 3 characters"),
        ({"reason": "x" * 201}, "no more than 200 characters"),
        ({"reason": ["Jammed"]}, "Not a valid string"),
        ({"reason": None}, "may not be null"),
    ],
)
def test_a_remote_open_without_a_proper_reason_is_refused_and_sends_nothing(
    world: World,
    sup_key: tuple[APIClient, str],
    django_capture_on_commit_callbacks,
    body: dict,
    message: str,
) -> None:
    before = AuditEvent.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        response = sup_key[0].post(
            f"/api/slots/{world.slot(2).pk}/remote-open/", body, format="json"
        )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["reason"]
    assert message in error["fields"]["reason"][0]
    assert callbacks == []
    assert not Reservation.objects.exists()
    assert AuditEvent.objects.count() == before


def test_a_door_already_waiting_is_refused(world: World, sup_key: tuple[APIClient, str]) -> None:
    client, _ = sup_key
    url = f"/api/slots/{world.slot(2).pk}/remote-open/"
    assert client.post(url, {"reason": "first"}, format="json").status_code == 202
    before = AuditEvent.objects.count()

    second: Any = client.post(url, {"reason": "second"}, format="json")

    assert second.status_code == 400
    error = second.json()["error"]
    assert error["code"] == "invalid"
    assert "already waiting" in error["fields"]["non_field_errors"][0]
    assert Reservation.objects.count() == 1
    assert AuditEvent.objects.count() == before


def test_an_unknown_slot_is_not_found(world: World, sup_key: tuple[APIClient, str]) -> None:
    response = sup_key[0].post("/api/slots/999999/remote-open/", {"reason": "x" * 5})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
