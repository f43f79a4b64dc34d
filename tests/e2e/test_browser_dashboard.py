"""The supervisors' dashboard in Chromium against an emulated bank: live within a second."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from access.models import AccessRule
from assets.models import Reservation
from devices.models import LockerBank
from lockerhub.models import AuditEvent
from tests.conftest import World
from tests.e2e.accessibility import accessibility_violations
from tests.e2e.conftest import save_screenshot, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_db")]


@pytest.fixture(autouse=True)
def any_time(live_db, world: World) -> None:
    AccessRule.objects.filter(pk=world.rule.pk).update(require_shift=False)


def signed_in(page, user, server: str) -> None:
    """Give the browser the session a finished sign-in (password and second factor) would."""
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server}]
    )


@pytest.fixture
def dashboard(page, supervisor, asgi_server: str):
    signed_in(page, supervisor, asgi_server)
    response = page.goto("/dashboard/")
    assert response.status == 200, page.content()[:2000]
    page.locator("#live-status", has_text="Live").wait_for()
    return page


def tile(page, number: int):
    return page.locator(f'.bank[data-bank="BANK-A"] .slot[data-slot="{number}"]')


def connected(world: World) -> None:
    wait_for(
        lambda: LockerBank.objects.get(pk=world.bank.pk).last_event_seq > 0,
        20,
        what="the worker's snapshot",
    )


def test_a_door_opening_shows_within_a_second(dashboard, world: World, emulated_bank) -> None:
    page = dashboard
    bank = emulated_bank()
    connected(world)
    page.locator(".bank[data-bank='BANK-A'] [data-field=online]", has_text="Online").wait_for()
    assert "door-closed" in tile(page, 5).get_attribute("class")

    started = time.monotonic()
    bank.open_door(5)
    page.wait_for_function(
        """() => document.querySelector('.bank[data-bank="BANK-A"] .slot[data-slot="5"]')
                   .classList.contains('door-open')""",
        polling="raf",
        timeout=5_000,
    )
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"the door showed open after {elapsed:.2f} s"
    assert tile(page, 5).locator("[data-field=door]").inner_text() == "Open"
    # The forced door raised an alert; it appears live too.
    page.locator("#alerts tbody tr", has_text="opened without an unlock").wait_for()
    save_screenshot(page, "dashboard")
    assert accessibility_violations(page) == []


def test_a_remote_open_with_a_reason_opens_the_door(
    dashboard, world: World, supervisor, emulated_bank
) -> None:
    page = dashboard
    emulated_bank()
    connected(world)
    slot = tile(page, 6)
    slot.locator("summary", has_text="Open remotely").click()
    slot.get_by_label("Why open it? (required)").fill("Cleaning the slot")
    slot.get_by_role("button", name="Open door 6").click()

    page.locator("#dash-message", has_text="Door 6 at BANK-A is being opened.").wait_for()
    slot.locator("[data-field=door]", has_text="Open").wait_for(timeout=10_000)
    reservation = Reservation.objects.get()
    assert (reservation.purpose, reservation.reason) == ("remote", "Cleaning the slot")
    assert AuditEvent.objects.get(action="slot.remote_open").actor == f"user:{supervisor.pk}"
