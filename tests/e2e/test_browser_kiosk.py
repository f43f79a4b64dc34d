"""The kiosk screen in Chromium: paired once, then live taps from an emulated bank."""

from __future__ import annotations

import pytest

from access.actions import offboard_employee
from access.models import AccessRule
from devices.actions import pair_kiosk
from devices.models import LockerBank
from lockerhub.audit import SYSTEM
from tests.conftest import World
from tests.e2e.accessibility import accessibility_violations
from tests.e2e.conftest import free_port, save_screenshot, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_db")]


@pytest.fixture(autouse=True)
def any_time(live_db, world: World) -> None:
    # The server process runs on the wall clock; the decision must not depend on the hour.
    AccessRule.objects.filter(pk=world.rule.pk).update(require_shift=False)


def pair_this_browser(page, world: World) -> None:
    pairing = pair_kiosk(world.bank, "Gate 3", actor=SYSTEM)
    page.goto(f"/kiosk/pair/{pairing.code}/")
    page.get_by_role("button", name="Yes, use this screen as the kiosk").click()
    page.wait_for_url("**/kiosk/BANK-A/")
    page.locator("#kiosk-connection", has_text="Live").wait_for()


def connected(world: World) -> None:
    wait_for(
        lambda: LockerBank.objects.get(pk=world.bank.pk).last_event_seq > 0,
        20,
        what="the worker's snapshot",
    )


def test_an_unpaired_browser_is_told_the_screen_is_not_a_kiosk(page, world: World) -> None:
    response = page.goto("/kiosk/BANK-A/")
    assert response.status == 403
    assert page.get_by_role("heading", name="This screen is not set up as a kiosk").is_visible()
    assert accessibility_violations(page) == []


def test_a_tap_greets_then_offboarding_turns_the_next_tap_into_a_denial(
    page, world: World, emulated_bank
) -> None:
    pair_this_browser(page, world)
    assert page.get_by_role("heading", name="Tap your badge").is_visible()
    assert accessibility_violations(page) == []
    bank = emulated_bank()
    connected(world)

    bank.tap(world.ana_badge.uid)

    greeting = page.locator("#screen-take h1")
    greeting.wait_for(state="visible", timeout=20_000)
    text = greeting.inner_text()
    assert text.startswith("Hi Ana — door ")
    assert ", take scanner SC-10" in text
    door = page.locator("#screen-take [data-field=slot]").inner_text()
    assert f"door {door} is open" in text
    save_screenshot(page, "kiosk-greeting")
    assert accessibility_violations(page) == []

    offboard_employee(world.ana, actor=SYSTEM)
    page.locator("#screen-idle").wait_for(state="visible", timeout=15_000)  # back to idle by itself
    bank.tap(world.ana_badge.uid)

    denial = page.locator("#screen-denied h1")
    denial.wait_for(state="visible", timeout=20_000)
    assert denial.inner_text() == "Access has ended for this badge."
    save_screenshot(page, "kiosk-denied")
    assert accessibility_violations(page) == []
    # Nothing was opened for the denied tap: only the first tap's unlock reached the board.
    assert len(bank.board.unlock_log) == 1


def test_with_the_server_gone_the_kiosk_shows_the_banks_own_feed(
    browser, world: World, emulated_bank, start_daphne
) -> None:
    feed_port = free_port()
    server = start_daphne(LOCKERHUB_KIOSK_LOCAL_FEED=f"ws://127.0.0.1:{feed_port}/")
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        pair_this_browser(page, world)
        bank = emulated_bank(server=server.url, kiosk_port=feed_port)
        connected(world)

        server.stop()  # the network, or the server, is gone: the bank is on its own
        page.locator("#kiosk-connection", has_text="Offline mode").wait_for(timeout=20_000)
        banner = page.locator("#kiosk-offline")
        assert banner.is_visible()
        assert "still open doors" in banner.inner_text()

        bank.tap(world.ana_badge.uid)
        greeting = page.locator("#screen-take h1")
        greeting.wait_for(state="visible", timeout=20_000)
        assert greeting.inner_text().startswith("Hi Ana — door ")
        assert len(bank.board.unlock_log) == 1
        save_screenshot(page, "kiosk-offline-take")
        assert accessibility_violations(page) == []
    finally:
        context.close()
