"""The dashboard's WebSocket: session and role checked, a snapshot on every connect, then events."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from access.actions import present_badge
from devices.actions import mark_stale_banks_offline, record_slot_state
from devices.consumers import CLOSE_FORBIDDEN
from lockerhub.actions import acknowledge_alert, raise_alert
from lockerhub.asgi import application
from lockerhub.models import Alert
from tests.conftest import WEDNESDAY_10AM
from tests.flows import take

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def now(time_machine):
    time_machine.move_to(WEDNESDAY_10AM, tick=True)
    return WEDNESDAY_10AM


def session_of(user: User | None) -> str | None:
    if user is None:
        return None
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def dashboard(session: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost")]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


async def receive(comm: WebsocketCommunicator) -> dict:
    return json.loads(await comm.receive_from(timeout=5))


async def opened(user: User) -> tuple[WebsocketCommunicator, dict]:
    comm = dashboard(await database_sync_to_async(session_of)(user))
    connected, _ = await comm.connect(timeout=5)
    assert connected
    snapshot = await receive(comm)
    assert snapshot["type"] == "snapshot"
    return comm, snapshot


@pytest.fixture(params=[None, "outsider", "employee_user", "hr_officer", "facility_manager"])
def not_a_supervisor(request) -> User | None:
    return request.getfixturevalue(request.param) if request.param else None


async def test_only_supervisors_get_the_feed(world, not_a_supervisor) -> None:
    comm = dashboard(await database_sync_to_async(session_of)(not_a_supervisor))
    await comm.connect(timeout=5)
    output = await comm.receive_output(timeout=5)
    await comm.disconnect()
    assert output == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


async def test_a_supervisor_without_a_second_factor_gets_no_feed(world) -> None:
    def make() -> User:
        from lockerhub.roles import Role
        from tests.conftest import role_group

        user = User.objects.create_user("no.mfa", "n@example.com", "correct horse battery")
        user.groups.add(role_group(Role.SUPERVISOR))
        return user

    user = await database_sync_to_async(make)()
    comm = dashboard(await database_sync_to_async(session_of)(user))
    await comm.connect(timeout=5)
    output = await comm.receive_output(timeout=5)
    await comm.disconnect()
    assert output["code"] == CLOSE_FORBIDDEN


async def test_another_site_cannot_open_the_feed(world, supervisor) -> None:
    comm = WebsocketCommunicator(
        application,
        "/ws/dashboard/",
        headers=[
            (b"origin", b"https://evil.example"),
            (
                b"cookie",
                f"sessionid={await database_sync_to_async(session_of)(supervisor)}".encode(),
            ),
        ],
    )
    connected, _ = await comm.connect(timeout=5)
    assert not connected


async def test_connecting_sends_the_whole_current_state(world, supervisor, now) -> None:
    await database_sync_to_async(take)(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    await database_sync_to_async(raise_alert)(
        Alert.Kind.DOOR_FORCED, "door-forced:t", "Door 6 forced", bank=world.bank
    )

    comm, snapshot = await opened(supervisor)

    assert [b["code"] for b in snapshot["banks"]] == ["BANK-A", "BANK-B"]
    assert [s["slot"] for s in snapshot["banks"][0]["slots"]] == [1, 2, 3, 4, 5, 6]
    assert snapshot["banks"][0]["slots"][0]["door"] == "closed"
    [checkout] = snapshot["checkouts"]
    assert (checkout["employee"], checkout["bank"], checkout["overdue"]) == (
        "Ana Test",
        "BANK-A",
        False,
    )
    assert [a["title"] for a in snapshot["alerts"]] == ["Door 6 forced"]
    await comm.disconnect()


async def test_a_door_opening_is_forwarded_with_its_bank(world, supervisor, now) -> None:
    comm, _ = await opened(supervisor)

    await database_sync_to_async(record_slot_state)(
        world.bank, 5, at=WEDNESDAY_10AM, door_open=True
    )

    messages = [await receive(comm) for _ in range(2)]
    slot = next(m for m in messages if m["type"] == "slot")
    assert (slot["bank"], slot["slot"], slot["door"], slot["lock"]) == (
        "BANK-A",
        5,
        "open",
        "unlocked",
    )
    # The forced door raised an alert: it arrives once, though two groups carry it.
    assert [m["type"] for m in messages].count("alert") == 1
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_bank_status_checkouts_and_alert_changes_are_forwarded(
    world, supervisor, now
) -> None:
    comm, _ = await opened(supervisor)

    await database_sync_to_async(take)(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    seen = []
    while not any(m["type"] == "checkout" for m in seen):
        seen.append(await receive(comm))
    checkout = next(m for m in seen if m["type"] == "checkout")
    assert (checkout["status"], checkout["asset"], checkout["employee"]) == (
        "active",
        "SC-1001",
        "Ana Test",
    )
    assert {m["type"] for m in seen} <= {"slot", "checkout"}  # taps are not the dashboard's

    await database_sync_to_async(_stale_heartbeats)()
    codes = await database_sync_to_async(mark_stale_banks_offline)(
        WEDNESDAY_10AM + timedelta(hours=1), after=timedelta(seconds=1)
    )
    assert codes == ["BANK-A", "BANK-B"]
    updates = [await receive(comm) for _ in range(4)]
    banks = [m for m in updates if m["type"] == "bank"]
    assert {(m["bank"], m["online"]) for m in banks} == {("BANK-A", False), ("BANK-B", False)}

    alert = await Alert.objects.aget(dedup_key="bank-offline:BANK-A")
    await database_sync_to_async(acknowledge_alert)(alert, user=supervisor)
    while True:
        message = await receive(comm)
        if message["type"] == "alert" and message["state"] == "acknowledged":
            break
    assert message["id"] == alert.pk
    await comm.disconnect()


def _stale_heartbeats() -> None:
    from devices.models import LockerBank

    LockerBank.objects.update(is_online=True, last_heartbeat_at=WEDNESDAY_10AM)


async def test_a_reconnect_resynchronises_what_changed_meanwhile(world, supervisor, now) -> None:
    comm, before = await opened(supervisor)
    assert before["banks"][0]["slots"][4]["door"] == "closed"
    await comm.disconnect()

    await database_sync_to_async(record_slot_state)(
        world.bank, 5, at=WEDNESDAY_10AM, door_open=True
    )
    comm, after = await opened(supervisor)

    assert after["banks"][0]["slots"][4]["door"] == "open"
    assert [a["kind"] for a in after["alerts"]] == ["door_forced"]
    await comm.disconnect()


async def test_asking_to_resync_sends_a_fresh_snapshot(world, supervisor, now) -> None:
    comm, _ = await opened(supervisor)
    await comm.send_to(text_data=json.dumps({"type": "resync"}))
    assert (await receive(comm))["type"] == "snapshot"
    await comm.disconnect()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{nope", "bad_message"),
        ("[]", "bad_message"),
        (json.dumps({"type": "remote_open", "slot": 1}), "unknown_type"),
        (json.dumps({"no": "type"}), "unknown_type"),
    ],
)
async def test_malformed_messages_get_an_error_and_the_feed_goes_on(
    world, supervisor, now, raw, code
) -> None:
    comm, _ = await opened(supervisor)

    await comm.send_to(text_data=raw)

    reply = await receive(comm)
    assert (reply["type"], reply["code"]) == ("error", code)
    assert reply["detail"]
    await database_sync_to_async(present_badge)(world.bank, world.ana_badge.uid)
    assert (await receive(comm))["type"] == "slot"  # still live
    await comm.disconnect()


async def test_an_administrator_gets_the_feed(world, admin_user, now) -> None:
    comm, snapshot = await opened(admin_user)
    assert len(snapshot["banks"]) == 2
    await comm.disconnect()
