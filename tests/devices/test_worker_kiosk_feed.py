"""The worker's local kiosk feed: a WebSocket on 127.0.0.1 that tells the kiosk page what
happens at the bank, with the same messages as the server's kiosk feed, server or no server.
"""

from __future__ import annotations

import socket

from tests.devices import test_worker_support as support
from tests.devices.test_worker_support import ANA, BANK, UNKNOWN, KioskPage, world

emulator = support.emulator
bus = support.bus
server = support.server
journal_path = support.journal_path
start_worker = support.start_worker

TAP_KEYS = {"type", "granted", "reason", "message", "first_name", "purpose", "slot", "asset"}


def test_the_feed_tells_the_page_of_taps_and_completed_takes(emulator, server, start_worker):
    port = support.free_tcp_port()
    runner = start_worker(server, kiosk_port=port)
    support.ready(server, runner.worker)
    page = KioskPage(port)
    assert page.wait_for("hello") == {"type": "hello", "bank": BANK, "online": True, "local": True}
    runner.worker.submit_badge(ANA)
    granted = page.wait_for("tap", granted=True)
    assert granted == {
        "type": "tap",
        "granted": True,
        "reason": "granted_take",
        "message": "Hi Ana — door 1 is open, take scanner SC-1",
        "first_name": "Ana",
        "purpose": "take",
        "slot": 1,
        "asset": "SC-1",
    }
    server.wait_for("door", slot=1, open=True)
    emulator.set_present(0, 0, False)
    emulator.close_door(0, 0)
    assert page.wait_for("take_completed") == {"type": "take_completed", "slot": 1, "asset": "SC-1"}
    runner.worker.submit_badge(UNKNOWN)
    denied = page.wait_for("tap", granted=False)
    assert set(denied) == TAP_KEYS
    assert (denied["reason"], denied["first_name"], denied["slot"]) == ("badge_unknown", None, None)
    assert "not registered" in denied["message"]
    page.close()
    runner.stop()


def test_the_feed_says_when_the_server_goes_and_comes_back(server, start_worker):
    port = support.free_tcp_port()
    runner = start_worker(server, kiosk_port=port)
    support.ready(server, runner.worker)
    page = KioskPage(port)
    page.wait_for("hello", online=True)
    server.shutdown()
    page.wait_for("bank.status", online=False)
    server.start()
    page.wait_for("bank.status", online=True)
    statuses = [m["online"] for m in page.messages if m["type"] == "bank.status"]
    assert statuses == [False, True]
    page.close()
    runner.stop()


def test_the_feed_works_with_no_server_and_ignores_what_pages_send(
    emulator, start_worker, journal_path
):
    support.journal_world(journal_path, world(), timeout=0.3)
    emulator.on_unlock = emulator.close_door  # nobody opens the door: the hold lapses
    port = support.free_tcp_port()
    runner = start_worker(kiosk_port=port)
    support.wait_configured(runner.worker)
    assert runner.worker.kiosk is not None
    assert runner.worker.kiosk.address == ("127.0.0.1", port)  # loopback only
    page = KioskPage(port)
    assert page.wait_for("hello")["online"] is False
    page.say('{"type": "damage", "slot": 1}')
    page.say("not even JSON")
    runner.worker.submit_badge(ANA)
    page.wait_for("tap", granted=True, slot=1)
    cancelled = page.wait_for("take_cancelled")
    assert cancelled == {"type": "take_cancelled", "slot": 1, "asset": "SC-1"}
    page.close()
    runner.stop()


def test_a_busy_kiosk_port_costs_the_feed_not_the_bank(
    emulator, start_worker, journal_path, caplog
):
    support.journal_world(journal_path, world())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = start_worker(kiosk_port=port)
        support.wait_configured(runner.worker)
        assert runner.worker.submit_badge(ANA).granted
        assert [(b, i) for _, b, i in emulator.unlock_log] == [(0, 0)]
        assert "local kiosk feed cannot listen" in caplog.text
        runner.stop()
