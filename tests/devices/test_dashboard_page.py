"""The supervisors' dashboard page and its actions: who may see it, what it shows, what it does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from assets.models import Checkout, Reservation
from devices.models import Slot
from lockerhub.actions import raise_alert, resolve_alerts
from lockerhub.models import Alert, AuditEvent
from tests.conftest import WEDNESDAY_10AM, World, make_bank
from tests.flows import take


@pytest.fixture
def now(time_machine):
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    return WEDNESDAY_10AM


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        (None, 302),
        ("outsider", 403),
        ("employee_user", 403),
        ("hr_officer", 403),
        ("facility_manager", 403),
        ("supervisor", 200),
        ("admin_user", 200),
    ],
)
def test_only_supervisors_and_administrators_see_the_dashboard(
    world: World, persona: str | None, status: int, request
) -> None:
    client = logged_in(request.getfixturevalue(persona)) if persona else Client()

    response = client.get("/dashboard/")

    assert response.status_code == status
    if status == 302:
        assert response["Location"].startswith("/accounts/login/")


def test_the_dashboard_shows_every_bank_slot_checkout_and_alert(
    world: World, supervisor, now
) -> None:
    Slot.objects.filter(pk=world.slot(5).pk).update(door_state="open", lock_state="unlocked")
    _, checkout = take(world.bank, world.ana_badge.uid, now)
    raise_alert(Alert.Kind.DOOR_FORCED, "door-forced:x", "Door 5 forced", bank=world.bank, now=now)

    html = logged_in(supervisor).get("/dashboard/").content.decode()

    assert 'data-bank="BANK-A"' in html
    assert 'data-bank="BANK-B"' in html
    assert html.count('class="slot ') == 10
    assert "door-open" in html  # door 5
    assert checkout.asset.asset_tag in html
    assert "Ana Test" in html
    assert "Door 5 forced" in html
    assert "Acknowledge" in html


def test_an_overdue_checkout_is_highlighted(world: World, supervisor, time_machine) -> None:
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    client = logged_in(supervisor)
    assert "is-overdue" not in client.get("/dashboard/").content.decode()

    time_machine.move_to(checkout.due_at + timedelta(minutes=1), tick=False)
    html = client.get("/dashboard/").content.decode()

    assert 'class="is-overdue"' in html
    assert ">Overdue<" in html


def test_the_dashboard_takes_a_fixed_number_of_queries(
    world: World, supervisor, now, django_assert_max_num_queries
) -> None:
    client = logged_in(supervisor)
    take(world.bank, world.ana_badge.uid, now)
    client.get("/dashboard/")  # session, permissions and MFA flag warmed up as in real use
    with django_assert_max_num_queries(12) as few:
        client.get("/dashboard/")

    for n in range(4):
        make_bank(world.site, f"BANK-X{n}", 16)
    for n in range(5):
        raise_alert(Alert.Kind.CHARGE_FAULT, f"charge-fault:{n}", f"Fault {n}", bank=world.bank)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get("/dashboard/")
    assert response.content.decode().count('class="slot ') == 10 + 4 * 16


# --- Remote open ---


def test_a_remote_open_needs_a_reason_and_is_audited(world: World, supervisor, now) -> None:
    client = logged_in(supervisor)
    slot = world.slot(2)

    refused = client.post(
        f"/dashboard/slots/{slot.pk}/open/", {"reason": " "}, HTTP_ACCEPT="application/json"
    )
    assert refused.status_code == 400
    assert "reason" in refused.json()["error"]["fields"]
    assert not Reservation.objects.exists()

    done = client.post(
        f"/dashboard/slots/{slot.pk}/open/",
        {"reason": "Stuck scanner strap"},
        HTTP_ACCEPT="application/json",
    )

    assert done.status_code == 200
    reservation = Reservation.objects.get()
    assert (reservation.purpose, reservation.slot_id, reservation.requested_by_id) == (
        Reservation.Purpose.REMOTE,
        slot.pk,
        supervisor.pk,
    )
    event = AuditEvent.objects.get(action="slot.remote_open")
    assert event.data["reason"] == "Stuck scanner strap"
    assert event.actor == f"user:{supervisor.pk}"


def test_a_remote_open_on_a_door_already_waiting_is_refused(world: World, supervisor) -> None:
    client = logged_in(supervisor)
    url = f"/dashboard/slots/{world.slot(2).pk}/open/"
    client.post(url, {"reason": "first"}, HTTP_ACCEPT="application/json")

    second = client.post(url, {"reason": "second"}, HTTP_ACCEPT="application/json")

    assert second.status_code == 400
    assert "already waiting" in second.json()["error"]["message"]
    assert Reservation.objects.count() == 1


def test_a_plain_form_post_comes_back_to_the_dashboard_with_a_message(
    world: World, supervisor
) -> None:
    response = logged_in(supervisor).post(
        f"/dashboard/slots/{world.slot(2).pk}/open/", {"reason": "Jammed"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert "Door 2 at BANK-A is being opened." in response.content.decode()


@pytest.mark.parametrize("persona", ["facility_manager", "hr_officer", "employee_user"])
def test_only_supervisors_open_doors_remotely(world: World, persona: str, request) -> None:
    client = logged_in(request.getfixturevalue(persona))
    response = client.post(f"/dashboard/slots/{world.slot(2).pk}/open/", {"reason": "Let me in"})
    assert response.status_code == 403
    assert not Reservation.objects.exists()


def test_dashboard_actions_need_the_csrf_token(world: World, supervisor) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(supervisor)
    response = client.post(f"/dashboard/slots/{world.slot(2).pk}/open/", {"reason": "Jammed"})
    assert response.status_code == 403
    assert not Reservation.objects.exists()


def test_dashboard_actions_refuse_get(world: World, supervisor) -> None:
    assert (
        logged_in(supervisor).get(f"/dashboard/slots/{world.slot(2).pk}/open/").status_code == 405
    )


def test_an_unknown_slot_is_not_found(world: World, supervisor) -> None:
    response = logged_in(supervisor).post("/dashboard/slots/999999/open/", {"reason": "Jammed"})
    assert response.status_code == 404


# --- Out of service ---


def test_a_slot_goes_out_of_service_with_a_reason_and_comes_back(world: World, supervisor) -> None:
    client = logged_in(supervisor)
    url = f"/dashboard/slots/{world.slot(3).pk}/service/"

    refused = client.post(url, {"out_of_service": "on"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 400
    assert world.slot(3).out_of_service is False

    assert client.post(url, {"out_of_service": "on", "reason": "Hinge broken"}).status_code == 302
    slot = world.slot(3)
    assert (slot.out_of_service, slot.out_of_service_reason) == (True, "Hinge broken")
    assert AuditEvent.objects.filter(action="slot.out_of_service").count() == 1

    assert client.post(url, {}).status_code == 302
    assert world.slot(3).out_of_service is False
    assert AuditEvent.objects.filter(action="slot.back_in_service").count() == 1


def test_facility_managers_do_not_change_service_state(world: World, facility_manager) -> None:
    response = logged_in(facility_manager).post(
        f"/dashboard/slots/{world.slot(3).pk}/service/", {"out_of_service": "on", "reason": "x"}
    )
    assert response.status_code == 403
    assert world.slot(3).out_of_service is False


# --- Alerts ---


def test_a_supervisor_acknowledges_an_alert(world: World, supervisor, now) -> None:
    alert, _ = raise_alert(Alert.Kind.DOOR_FORCED, "door-forced:y", "Forced", bank=world.bank)

    response = logged_in(supervisor).post(
        f"/dashboard/alerts/{alert.pk}/acknowledge/", HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 200
    alert.refresh_from_db()
    assert (alert.acknowledged_by_id, alert.state) == (supervisor.pk, "acknowledged")
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 1


def test_acknowledging_a_resolved_alert_says_so_and_changes_nothing(
    world: World, supervisor
) -> None:
    alert, _ = raise_alert(Alert.Kind.DOOR_FORCED, "door-forced:z", "Forced", bank=world.bank)
    resolve_alerts("door-forced:z")

    response = logged_in(supervisor).post(
        f"/dashboard/alerts/{alert.pk}/acknowledge/", HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 400
    assert "resolved" in response.json()["error"]["message"]
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_a_checkout_count_matches_what_is_out(world: World, supervisor, now) -> None:
    take(world.bank, world.ana_badge.uid, now)
    response = logged_in(supervisor).get("/dashboard/")
    assert len(response.context["state"]["checkouts"]) == Checkout.objects.active().count() == 1
