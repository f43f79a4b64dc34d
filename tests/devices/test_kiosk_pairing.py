"""Pairing a kiosk screen with its bank: a one-time link, then a cookie good for that bank only."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from devices.actions import pair_kiosk, revoke_kiosk
from devices.kiosk import COOKIE_NAME
from devices.models import Kiosk
from lockerhub.audit import SYSTEM
from lockerhub.models import AuditEvent
from tests.conftest import WEDNESDAY_10AM, World


def pairing_path(code: str) -> str:
    return reverse("devices:kiosk-pair", args=[code])


def paired_client(world: World, name: str = "Gate 3", bank=None) -> Client:
    client = Client()
    pairing = pair_kiosk(bank or world.bank, name, actor=SYSTEM)
    response = client.post(pairing_path(pairing.code))
    assert response.status_code == 303
    return client


def test_a_pairing_link_asks_first_then_pairs_the_browser(world: World) -> None:
    client = Client()
    pairing = pair_kiosk(world.bank, "Gate 3", actor=SYSTEM)

    confirm = client.get(pairing_path(pairing.code))
    assert confirm.status_code == 200
    assert "Make this screen the kiosk" in confirm.content.decode()
    assert Kiosk.objects.get().paired_at is None  # looking at the link uses nothing up

    response = client.post(pairing_path(pairing.code))

    assert response.status_code == 303
    assert response["Location"] == "/kiosk/BANK-A/"
    cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert int(cookie["max-age"]) > 300 * 24 * 3600
    page = client.get("/kiosk/BANK-A/")
    assert page.status_code == 200
    assert "Tap your badge" in page.content.decode()
    kiosk = Kiosk.objects.get()
    assert kiosk.paired_at is not None
    assert pairing.code not in (kiosk.pairing_code_hash + kiosk.token_hash)  # only hashes kept
    assert AuditEvent.objects.filter(action="kiosk.paired").count() == 1


def test_a_pairing_link_works_once(world: World) -> None:
    pairing = pair_kiosk(world.bank, "Gate 3", actor=SYSTEM)
    assert Client().post(pairing_path(pairing.code)).status_code == 303

    second = Client()
    assert second.post(pairing_path(pairing.code)).status_code == 404
    assert second.get(pairing_path(pairing.code)).status_code == 404
    assert second.get("/kiosk/BANK-A/").status_code == 403


def test_an_expired_pairing_link_does_not_work(world: World, time_machine) -> None:
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    pairing = pair_kiosk(world.bank, "Gate 3", actor=SYSTEM)
    time_machine.shift(timedelta(hours=24, seconds=1))

    response = Client().post(pairing_path(pairing.code))

    assert response.status_code == 404
    assert COOKIE_NAME not in response.cookies


def test_a_browser_that_is_not_paired_is_told_so(world: World) -> None:
    response = Client().get("/kiosk/BANK-A/")

    assert response.status_code == 403
    assert "This screen is not set up as a kiosk" in response.content.decode()


def test_a_kiosk_of_one_bank_cannot_watch_another(world: World) -> None:
    client = paired_client(world)

    assert client.get("/kiosk/BANK-A/").status_code == 200
    assert client.get("/kiosk/BANK-B/").status_code == 403


def test_a_tampered_cookie_is_refused(world: World) -> None:
    client = paired_client(world)
    value = client.cookies[COOKIE_NAME].value
    kiosk_id, rest = value.split(":", 1)
    client.cookies[COOKIE_NAME] = f"{int(kiosk_id) + 1}:{rest}"

    assert client.get("/kiosk/BANK-A/").status_code == 403


def test_a_revoked_kiosk_is_refused(world: World) -> None:
    client = paired_client(world)
    revoke_kiosk(Kiosk.objects.get(), actor=SYSTEM)

    assert client.get("/kiosk/BANK-A/").status_code == 403
    assert AuditEvent.objects.filter(action="kiosk.revoked").count() == 1


def test_pairing_again_retires_the_old_browser_once_the_new_link_is_used(world: World) -> None:
    old = paired_client(world)
    pairing = pair_kiosk(world.bank, "Gate 3", actor=SYSTEM)
    assert old.get("/kiosk/BANK-A/").status_code == 200  # still works until redeemed

    new = Client()
    new.post(pairing_path(pairing.code))

    assert Kiosk.objects.count() == 1
    assert new.get("/kiosk/BANK-A/").status_code == 200
    assert old.get("/kiosk/BANK-A/").status_code == 403


def test_pair_kiosk_command_prints_a_link_that_pairs(world: World) -> None:
    out = StringIO()
    call_command(
        "pair_kiosk", "BANK-A", "--name", "Gate 3", "--base-url", "http://x.test", stdout=out
    )
    url = out.getvalue().strip().splitlines()[-1]
    assert url.startswith("http://x.test/kiosk/pair/")

    client = Client()
    client.post(url.removeprefix("http://x.test"))

    assert client.get("/kiosk/BANK-A/").status_code == 200
    assert Kiosk.objects.get().name == "Gate 3"


def test_a_supervisor_makes_a_pairing_link_on_the_kiosks_page(world: World, supervisor) -> None:
    client = Client()
    client.force_login(supervisor)

    response = client.post("/dashboard/kiosks/", {"bank": "BANK-B", "name": "Dock door"})

    assert response.status_code == 200
    url = response.context["pairing_url"]
    assert "/kiosk/pair/" in url
    kiosk = Kiosk.objects.get()
    assert (kiosk.bank, kiosk.name) == (world.other_bank, "Dock door")
    assert AuditEvent.objects.get(action="kiosk.pairing_issued").actor == f"user:{supervisor.pk}"


def test_bad_input_on_the_kiosks_page_pairs_nothing(world: World, supervisor) -> None:
    client = Client()
    client.force_login(supervisor)

    response = client.post("/dashboard/kiosks/", {"bank": "BANK-Z", "name": ""})

    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"bank", "name"}
    assert not Kiosk.objects.exists()


@pytest.mark.parametrize("persona", ["employee_user", "hr_officer", "facility_manager", "outsider"])
def test_only_supervisors_pair_kiosks(world: World, persona: str, request) -> None:
    client = Client()
    client.force_login(request.getfixturevalue(persona))

    assert client.get("/dashboard/kiosks/").status_code == 403
    assert client.post("/dashboard/kiosks/", {"bank": "BANK-A", "name": "x"}).status_code == 403
    assert not Kiosk.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in_for_the_kiosks_page(world: World) -> None:
    response = Client().get("/dashboard/kiosks/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_supervisor_revokes_a_kiosk(world: World, supervisor) -> None:
    kiosk_client = paired_client(world)
    client = Client()
    client.force_login(supervisor)

    response = client.post(f"/dashboard/kiosks/{Kiosk.objects.get().pk}/revoke/")

    assert response.status_code == 302
    assert kiosk_client.get("/kiosk/BANK-A/").status_code == 403


def test_an_administrator_may_pair_kiosks(world: World, admin_user: User) -> None:
    client = Client()
    client.force_login(admin_user)
    assert client.get("/dashboard/kiosks/").status_code == 200
