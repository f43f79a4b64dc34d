"""The kiosk's WebSocket: only a paired screen of this bank; taps and completions; damage reports."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.http import HttpResponse

from access.actions import Intent, offboard_employee, present_badge
from assets.models import Reservation
from devices.actions import pair_kiosk, redeem_kiosk_pairing, revoke_kiosk
from devices.consumers import CLOSE_FORBIDDEN
from devices.kiosk import COOKIE_NAME, set_kiosk_cookie
from devices.models import Kiosk
from lockerhub.asgi import application
from lockerhub.audit import SYSTEM
from lockerhub.models import AuditEvent
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import take

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def now(time_machine):
    time_machine.move_to(WEDNESDAY_10AM, tick=True)
    return WEDNESDAY_10AM


def kiosk_cookie(bank) -> str:
    kiosk, token = redeem_kiosk_pairing(pair_kiosk(bank, "Gate 3", actor=SYSTEM).code)
    response = HttpResponse()
    set_kiosk_cookie(response, kiosk, token)
    return response.cookies[COOKIE_NAME].value


@pytest.fixture
def cookie(world: World) -> str:
    return kiosk_cookie(world.bank)


def screen(
    code: str, cookie: str | None, origin: str = "http://localhost"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", f"{COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, f"/ws/kiosk/{code}/", headers=headers)


async def receive(comm: WebsocketCommunicator) -> dict:
    return json.loads(await comm.receive_from(timeout=5))


async def opened(code: str, cookie: str) -> WebsocketCommunicator:
    comm = screen(code, cookie)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    hello = await receive(comm)
    assert hello == {"type": "hello", "bank": code, "online": True}
    return comm


async def assert_refused(comm: WebsocketCommunicator) -> None:
    await comm.connect(timeout=5)
    output = await comm.receive_output(timeout=5)
    await comm.disconnect()
    assert output == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


async def test_a_browser_without_a_kiosk_cookie_gets_no_feed(world) -> None:
    await assert_refused(screen("BANK-A", None))


async def test_a_kiosk_of_one_bank_cannot_watch_another(world, cookie) -> None:
    await assert_refused(screen("BANK-B", cookie))


async def test_a_forged_cookie_gets_no_feed(world, cookie) -> None:
    await assert_refused(screen("BANK-A", cookie[:-2] + "xx"))


async def test_another_site_cannot_open_the_feed(world, cookie) -> None:
    comm = screen("BANK-A", cookie, origin="https://evil.example")
    connected, _ = await comm.connect(timeout=5)
    assert not connected


async def test_a_granted_tap_shows_the_door_and_the_device(world, cookie, now) -> None:
    comm = await opened("BANK-A", cookie)

    await database_sync_to_async(present_badge)(world.bank, world.ana_badge.uid)

    tap = await receive(comm)
    assert tap["type"] == "tap"
    assert tap["granted"] is True
    assert tap["first_name"] == "Ana"
    assert tap["purpose"] == "take"
    assert tap["message"] == f"Hi Ana — door {tap['slot']} is open, take scanner {tap['asset']}"
    await comm.disconnect()


async def test_after_offboarding_a_tap_shows_the_denial_in_plain_words(world, cookie, now) -> None:
    await database_sync_to_async(offboard_employee)(world.ana, actor=SYSTEM)
    comm = await opened("BANK-A", cookie)

    await database_sync_to_async(present_badge)(world.bank, world.ana_badge.uid)

    tap = await receive(comm)
    assert (tap["granted"], tap["reason"]) == (False, "employee_offboarded")
    assert tap["message"] == "Access has ended for this badge."
    await comm.disconnect()


async def test_taps_at_another_bank_are_not_shown(world, cookie, now) -> None:
    comm = await opened("BANK-A", cookie)
    await database_sync_to_async(present_badge)(world.other_bank, world.ana_badge.uid)
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


def start_return(world: World) -> Reservation:
    take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    result = present_badge(
        world.bank, world.ana_badge.uid, intent=Intent.RETURN, now=WEDNESDAY_10AM
    )
    assert result.granted
    return result.reservation


async def test_a_damage_report_marks_the_return_in_progress(world, cookie, now) -> None:
    reservation = await database_sync_to_async(start_return)(world)
    comm = await opened("BANK-A", cookie)

    await comm.send_to(
        text_data=json.dumps(
            {"type": "report_damage", "slot": reservation.slot.number, "problem": "screen"}
        )
    )

    assert await receive(comm) == {
        "type": "damage_reported",
        "slot": reservation.slot.number,
        "problem": "screen",
    }
    await comm.disconnect()
    marked = await Reservation.objects.aget(pk=reservation.pk)
    assert marked.damaged is True
    assert marked.damage_note == "Reported at the kiosk: Cracked or broken screen"
    kiosk = await Kiosk.objects.aget()
    event = await AuditEvent.objects.aget(action="return.damage_reported")
    assert event.actor == f"kiosk:{kiosk.pk}"


def bad_messages(slot: int) -> list[tuple[str, str]]:
    return [
        ("{not json", "bad_message"),
        ("[1]", "bad_message"),
        (json.dumps({"type": "open_all_doors"}), "unknown_type"),
        (json.dumps({"type": "report_damage", "problem": "screen"}), "bad_field"),
        (json.dumps({"type": "report_damage", "slot": "1", "problem": "screen"}), "bad_field"),
        (json.dumps({"type": "report_damage", "slot": True, "problem": "screen"}), "bad_field"),
        (json.dumps({"type": "report_damage", "slot": slot, "problem": "ugly"}), "bad_field"),
        (json.dumps({"type": "report_damage", "slot": slot, "problem": ["screen"]}), "bad_field"),
        (json.dumps({"type": "report_damage", "slot": slot, "problem": "x" * 3000}), "bad_message"),
        # Well formed, but no return is in progress behind that door.
        (json.dumps({"type": "report_damage", "slot": 6, "problem": "screen"}), "not_allowed"),
    ]


async def test_malformed_messages_get_an_error_and_change_nothing(world, cookie, now) -> None:
    reservation = await database_sync_to_async(start_return)(world)
    comm = await opened("BANK-A", cookie)
    audit_before = await AuditEvent.objects.acount()

    for raw, code in bad_messages(reservation.slot.number):
        await comm.send_to(text_data=raw)
        reply = await receive(comm)
        assert (reply["type"], reply["code"]) == ("error", code), raw
        assert reply["detail"]

    await comm.disconnect()
    assert await AuditEvent.objects.acount() == audit_before
    assert (await Reservation.objects.aget(pk=reservation.pk)).damaged is False


async def test_a_kiosk_cannot_mark_a_return_at_another_bank(world, now) -> None:
    reservation = await database_sync_to_async(start_return)(world)
    other_cookie = await database_sync_to_async(kiosk_cookie)(world.other_bank)
    comm = await opened("BANK-B", other_cookie)

    await comm.send_to(
        text_data=json.dumps(
            {"type": "report_damage", "slot": reservation.slot.number, "problem": "power"}
        )
    )

    assert (await receive(comm))["code"] == "not_allowed"
    await comm.disconnect()
    assert (await Reservation.objects.aget(pk=reservation.pk)).damaged is False


async def test_an_old_return_cannot_be_marked(world, cookie, time_machine) -> None:
    time_machine.move_to(WEDNESDAY_10AM, tick=True)
    reservation = await database_sync_to_async(start_return)(world)
    time_machine.move_to(WEDNESDAY_10AM + timedelta(minutes=6), tick=True)
    comm = await opened("BANK-A", cookie)

    await comm.send_to(
        text_data=json.dumps(
            {"type": "report_damage", "slot": reservation.slot.number, "problem": "power"}
        )
    )

    assert (await receive(comm))["code"] == "not_allowed"
    await comm.disconnect()


async def test_a_revoked_kiosk_is_cut_off_at_once(world, cookie, now) -> None:
    comm = await opened("BANK-A", cookie)
    kiosk = await Kiosk.objects.aget()

    await database_sync_to_async(revoke_kiosk)(kiosk, actor=SYSTEM)

    output = await comm.receive_output(timeout=5)
    await comm.disconnect()
    assert output == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}
