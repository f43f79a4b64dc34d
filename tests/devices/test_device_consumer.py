"""The bank worker's WebSocket, through the real ASGI application and the real database."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from access import core
from access.actions import offboard_employee, revoke_badge
from access.models import AccessEvent
from assets.models import Checkout, Reservation
from devices.actions import remote_open, rotate_token
from devices.consumers import CLOSE_UNAUTHORIZED, CLOSE_UNKNOWN_BANK
from devices.models import FailedDeviceEvent, LockerBank, Slot
from lockerhub import events, signing
from lockerhub.asgi import application
from lockerhub.audit import SYSTEM
from lockerhub.models import Alert, AuditEvent
from tests.conftest import WEDNESDAY_10AM, World

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def now(time_machine):
    time_machine.move_to(WEDNESDAY_10AM, tick=True)
    return WEDNESDAY_10AM


@pytest.fixture
def token(world: World) -> str:
    return rotate_token(world.bank, actor=SYSTEM)


def connect(code: str, token: str | None, path_suffix: str = "") -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return WebsocketCommunicator(application, f"/ws/devices/{code}/{path_suffix}", headers=headers)


async def send(comm: WebsocketCommunicator, message: dict | str) -> None:
    await comm.send_to(text_data=message if isinstance(message, str) else json.dumps(message))


async def receive(comm: WebsocketCommunicator) -> dict:
    """The next message, skipping the snapshot deltas that changes push at any moment (kept in
    ``comm.deltas``)."""
    while True:
        message = json.loads(await comm.receive_from(timeout=5))
        if message.get("type") != "access_delta":
            return message
        comm.deltas = [*getattr(comm, "deltas", []), message]


async def receive_delta(comm: WebsocketCommunicator) -> dict:
    if getattr(comm, "deltas", None):
        return comm.deltas.pop(0)
    return json.loads(await comm.receive_from(timeout=5))


async def hello(comm: WebsocketCommunicator, worker_id: str | None = None) -> dict:
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await send(
        comm,
        {
            "type": "hello",
            "worker_id": worker_id or str(uuid.uuid4()),
            "version": "1",
            "last_seq": 0,
        },
    )
    config = await receive(comm)
    assert config["type"] == "config"
    comm.snapshot = await receive(comm)
    assert comm.snapshot["type"] == "access_snapshot"
    return config


def at(delta: float = 0) -> str:
    return (WEDNESDAY_10AM + timedelta(seconds=delta)).isoformat()


@pytest.mark.parametrize(
    ("code", "which_token", "close_code"),
    [
        ("BANK-A", None, CLOSE_UNAUTHORIZED),
        ("BANK-A", "wrong", CLOSE_UNAUTHORIZED),
        ("BANK-Z", "right", CLOSE_UNKNOWN_BANK),
    ],
)
async def test_a_connection_without_the_right_token_is_closed(
    world, token, code, which_token, close_code
) -> None:
    comm = connect(code, {"right": token, "wrong": "lhb_nope", None: None}[which_token])
    await comm.connect(timeout=5)
    output = await comm.receive_output(timeout=5)
    await comm.disconnect()
    assert output == {"type": "websocket.close", "code": close_code}


async def test_a_token_in_the_url_is_not_accepted(world, token) -> None:
    comm = WebsocketCommunicator(application, f"/ws/devices/BANK-A/?token={token}")
    await comm.connect(timeout=5)
    assert (await comm.receive_output(timeout=5))["code"] == CLOSE_UNAUTHORIZED
    await comm.disconnect()


async def test_hello_gets_the_slot_configuration(world, token, now) -> None:
    comm = connect("BANK-A", token)
    config = await hello(comm)
    assert config["bank"] == "BANK-A"
    assert [s["slot"] for s in config["slots"]] == [1, 2, 3, 4, 5, 6]
    assert config["slots"][0] == {"slot": 1, "board": 0, "lock_index": 0, "has_charger": True}
    assert config["last_acked_seq"] == 0
    await comm.disconnect()


def bank_tap(world: World, slot: int = 1, seq: int = 1, **fields) -> dict:
    """A take the bank granted from its snapshot, as its tap event says it."""
    return {
        "type": "tap",
        "seq": seq,
        "at": at(),
        "uid": world.ana_badge.uid,
        "granted": True,
        "reason": "granted_take",
        "purpose": "take",
        "slot": slot,
        "asset": f"SC-10{slot:02d}",
        "checkout": None,
        "holder": world.ana.pk,
        "version": 1,
        **fields,
    }


async def test_hello_gets_a_signed_access_snapshot(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    message = comm.snapshot
    await comm.disconnect()
    assert message["type"] == "access_snapshot"
    key = core.load_public_key(await sync_to_async(signing.public_key_text)())
    data = core.open_signed(key, message, bank="BANK-A")
    snapshot = core.Snapshot.from_data(data)
    assert snapshot.version >= 1
    assert snapshot.badge_for(world.ana_badge.uid).holder == world.ana.pk
    assert world.ana_badge.uid not in message["data"]  # listed by keyed hash only
    tampered = {**message, "data": message["data"].replace('"active"', '"revoked"', 1)}
    with pytest.raises(ValueError, match="signature"):
        core.open_signed(key, tampered, bank="BANK-A")
    with pytest.raises(ValueError, match="bank"):
        core.open_signed(key, message, bank="BANK-B")


async def test_every_snapshot_sent_has_a_newer_version(world, token, now) -> None:
    versions = []
    for _ in range(2):
        comm = connect("BANK-A", token)
        await hello(comm)
        versions.append(json.loads(comm.snapshot["data"])["version"])
        await send(comm, {"type": "snapshot_request"})
        versions.append(json.loads((await receive(comm))["data"])["version"])
        await comm.disconnect()
    assert versions == sorted(set(versions))


async def test_a_tap_decided_at_the_bank_is_recorded_once(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world))
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await send(comm, bank_tap(world))  # replayed after a lost ack
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await comm.disconnect()
    event = await AccessEvent.objects.aget()
    assert (event.granted, event.reason, event.at) == (True, "granted_take", WEDNESDAY_10AM)
    reservation = await Reservation.objects.select_related("checkout").aget()
    assert reservation.decided_at_bank
    assert reservation.checkout.status == Checkout.Status.RESERVED
    assert not await Alert.objects.filter(kind=Alert.Kind.DECISION_MISMATCH).aexists()


async def test_door_presence_door_completes_the_take(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world, slot=2))
    await receive(comm)
    for seq, event in enumerate(
        [
            {"type": "door", "slot": 2, "open": True},
            {"type": "presence", "slot": 2, "present": False},
            {"type": "door", "slot": 2, "open": False},
        ],
        start=2,
    ):
        await send(comm, {**event, "seq": seq, "at": at(seq)})
        assert await receive(comm) == {"type": "ack", "seq": seq}
    await comm.disconnect()
    checkout = await Checkout.objects.select_related("asset").aget()
    assert checkout.status == Checkout.Status.ACTIVE
    assert checkout.asset.asset_tag == "SC-1002"
    assert not await Alert.objects.filter(kind=Alert.Kind.DOOR_FORCED).aexists()


async def test_a_hold_that_ended_unopened_lapses(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world))
    await receive(comm)
    await send(comm, {"type": "hold_ended", "seq": 2, "at": at(30), "slot": 1, "purpose": "take"})
    assert await receive(comm) == {"type": "ack", "seq": 2}
    await comm.disconnect()
    assert (await Reservation.objects.aget()).status == Reservation.Status.LAPSED
    assert (await Checkout.objects.aget()).status == Checkout.Status.LAPSED


async def test_a_grant_the_server_would_refuse_raises_one_alert(world, token, now) -> None:
    await sync_to_async(revoke_badge)(world.ana_badge, actor=SYSTEM)
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world, version=3))
    await receive(comm)
    await send(comm, bank_tap(world, seq=2, version=3, again=True))  # the same door again
    await receive(comm)
    await comm.disconnect()
    alert = await Alert.objects.aget(kind=Alert.Kind.DECISION_MISMATCH)
    assert alert.details["bank_decision"] == "granted_take"
    assert alert.details["server_decision"] == "badge_revoked"
    assert alert.details["bank_snapshot_version"] == 3
    assert alert.details["server_snapshot_version"] >= 1
    # The take physically happened: it is on record all the same.
    assert await Checkout.objects.filter(status=Checkout.Status.RESERVED).acount() == 1


async def test_an_event_that_fails_to_apply_is_kept_and_the_bank_goes_on(
    world, token, now, monkeypatch
) -> None:
    from devices import actions as device_actions

    def broken(*args, **kwargs):
        raise RuntimeError("the charge handler is broken")

    monkeypatch.setattr(device_actions, "record_slot_state", broken)
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, {"type": "charge", "seq": 1, "at": at(), "slot": 1, "state": "charging"})
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await send(comm, bank_tap(world, seq=2))
    assert await receive(comm) == {"type": "ack", "seq": 2}
    await comm.disconnect()
    failed = await FailedDeviceEvent.objects.aget()
    assert (failed.seq, failed.type) == (1, "charge")
    assert "the charge handler is broken" in failed.error
    assert await Alert.objects.filter(kind=Alert.Kind.DEVICE_EVENT_FAILED).acount() == 1
    assert await AccessEvent.objects.acount() == 1  # the next event was applied
    bank = await LockerBank.objects.aget(code="BANK-A")
    assert bank.last_event_seq == 2


async def test_a_revocation_reaches_the_connected_bank_as_a_signed_delta(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    snapshot = core.Snapshot.from_data(json.loads(comm.snapshot["data"]))
    key = core.load_public_key(await sync_to_async(signing.public_key_text)())
    await sync_to_async(offboard_employee)(world.ana, actor=SYSTEM)
    # The change may come as one delta or a few (one per notice read): follow them all.
    deadline = asyncio.get_running_loop().time() + 2
    while True:
        message = await receive_delta(comm)
        assert message["type"] == "access_delta"
        assert len(message["data"]) <= 2048
        snapshot = snapshot.with_delta(core.open_signed(key, message, bank="BANK-A"))
        decision = core.decide(snapshot, [], WEDNESDAY_10AM.timestamp(), world.ana_badge.uid)
        if decision.reason == "employee_offboarded":
            break
        assert asyncio.get_running_loop().time() < deadline, decision.reason
    await comm.disconnect()


async def test_door_opened_without_an_unlock_is_recorded_as_forced(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, {"type": "door", "seq": 1, "at": at(), "slot": 5, "open": True})
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await comm.disconnect()
    assert await Alert.objects.filter(kind=Alert.Kind.DOOR_FORCED, bank__code="BANK-A").aexists()
    assert await AuditEvent.objects.filter(action="slot.door_forced").aexists()


BAD_MESSAGES = [
    ("{not json", "bad_message"),
    ("[1, 2]", "bad_message"),
    (json.dumps({"type": "launch_missiles", "seq": 1}), "unknown_type"),
    (json.dumps({"type": "badge", "seq": 1, "uid": "04A1B2C3"}), "unknown_type"),
    (
        json.dumps(
            {
                "type": "tap",
                "seq": 0,
                "uid": "04A1B2C3",
                "granted": False,
                "reason": "badge_unknown",
            }
        ),
        "bad_field",
    ),
    (
        json.dumps(
            {
                "type": "tap",
                "seq": 2**63,
                "uid": "04A1B2C3",
                "granted": False,
                "reason": "badge_unknown",
            }
        ),
        "bad_field",
    ),
    (
        json.dumps(
            {"type": "tap", "seq": 1, "uid": "not-hex", "granted": False, "reason": "badge_unknown"}
        ),
        "bad_field",
    ),
    (
        json.dumps(
            {"type": "tap", "seq": 1, "uid": "04A1B2C3", "granted": True, "reason": "granted_take"}
        ),
        "bad_field",
    ),
    (
        json.dumps(
            {"type": "tap", "seq": 1, "uid": "04A1B2C3", "granted": False, "reason": "because"}
        ),
        "bad_field",
    ),
    (json.dumps({"type": "tap", "seq": 1}), "bad_field"),
    (json.dumps({"type": "door", "seq": 1, "slot": "7", "open": True}), "bad_field"),
    (json.dumps({"type": "door", "seq": 1, "slot": 7, "open": 1}), "bad_field"),
    (json.dumps({"type": "door", "seq": 1, "slot": 99, "open": True}), "bad_field"),
    (json.dumps({"type": "charge", "seq": 1, "slot": 1, "state": "on fire"}), "bad_field"),
    (
        json.dumps({"type": "door", "seq": 1, "slot": 1, "open": True, "at": "yesterday"}),
        "bad_field",
    ),
    (json.dumps({"type": "snapshot", "seq": 1, "slots": [{"slot": 1}]}), "bad_field"),
    (json.dumps({"type": "hello", "worker_id": "nope"}), "bad_field"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_MESSAGES, ids=[c for _, c in BAD_MESSAGES])
async def test_a_bad_message_gets_an_error_and_changes_nothing(
    world, token, now, raw, code
) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    audit_before = await AuditEvent.objects.acount()
    bank_before = await LockerBank.objects.aget(code="BANK-A")

    await send(comm, raw)
    reply = await receive(comm)

    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply["detail"]
    # The connection stays up and still works.
    await send(comm, {"type": "door", "seq": 1, "at": at(), "slot": 1, "open": False})
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await comm.disconnect()
    assert await AuditEvent.objects.acount() == audit_before
    bank_after = await LockerBank.objects.aget(code="BANK-A")
    assert bank_after.last_event_seq == 1
    assert bank_before.last_event_seq == 0
    assert not await Slot.objects.filter(
        bank__code="BANK-A", door_state=Slot.DoorState.OPEN
    ).aexists()


async def test_snapshot_is_the_physical_truth(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    slots = [
        {
            "slot": n,
            "door_open": False,
            "present": n != 2,
            "charge_state": "charging" if n == 3 else None,
        }
        for n in range(1, 7)
    ]
    await send(comm, {"type": "snapshot", "seq": 1, "at": at(), "slots": slots})
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await comm.disconnect()
    assert (await Slot.objects.aget(bank=world.bank, number=2)).present is False
    assert (
        await Slot.objects.aget(bank=world.bank, number=3)
    ).charge_state == Slot.ChargeState.CHARGING


async def test_a_new_worker_journal_starts_counting_afresh(world, token, now) -> None:
    first = str(uuid.uuid4())
    comm = connect("BANK-A", token)
    await hello(comm, first)
    await send(comm, {"type": "door", "seq": 7, "at": at(), "slot": 1, "open": False})
    await receive(comm)
    await comm.disconnect()

    comm = connect("BANK-A", token)
    assert (await hello(comm, first))["last_acked_seq"] == 7
    await comm.disconnect()
    comm = connect("BANK-A", token)
    assert (await hello(comm, str(uuid.uuid4())))["last_acked_seq"] == 0
    await comm.disconnect()


async def open_remotely(world: World, number: int = 5) -> Reservation:
    return await sync_to_async(remote_open)(
        await sync_to_async(world.slot)(number),
        user=AnonymousUser(),
        actor="api:test",
        reason="Check the charger",
    )


async def test_a_remote_open_reaches_the_connected_worker(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    reservation = await open_remotely(world)
    command = await receive(comm)
    await comm.disconnect()
    assert command["type"] == "command"
    assert command["id"] == str(reservation.command_id)
    assert (command["slot"], command["board"], command["lock_index"]) == (5, 0, 4)


async def test_a_failed_unlock_frees_the_slot(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await open_remotely(world)
    command = await receive(comm)
    await send(
        comm,
        {
            "type": "command_result",
            "seq": 1,
            "at": at(1),
            "id": command["id"],
            "status": "failed",
            "detail": "no reply from board 0",
        },
    )
    assert await receive(comm) == {"type": "ack", "seq": 1}
    await comm.disconnect()
    assert (await Reservation.objects.aget()).status == Reservation.Status.CANCELLED


async def test_unexpired_commands_are_sent_again_on_reconnect(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    reservation = await open_remotely(world)
    await receive(comm)
    await comm.disconnect()

    comm = connect("BANK-A", token)
    await hello(comm)
    assert (await receive(comm))["id"] == str(reservation.command_id)
    await comm.disconnect()


async def test_holds_the_bank_decided_are_never_sent_back_as_commands(world, token, now) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world))
    await receive(comm)
    await comm.disconnect()
    comm = connect("BANK-A", token)
    await hello(comm)
    assert await comm.receive_nothing(timeout=1.5)
    await comm.disconnect()


async def test_the_unlock_does_not_wait_for_the_live_fan_out(world, token, now) -> None:
    # A slow channel layer (Redis far away or busy) must not hold the door: the worker gets its
    # answer first, and the screens get the tap after it, still in order.
    layer = get_channel_layer()
    release = asyncio.Event()
    sent: list[tuple[str, str]] = []
    real_group_send = layer.group_send

    async def slow_group_send(group: str, message: dict) -> None:
        await release.wait()
        sent.append((group, message["event"]))
        await real_group_send(group, message)

    layer.group_send = slow_group_send
    kiosk_channel = await layer.new_channel()
    await layer.group_add(events.bank_group("BANK-A"), kiosk_channel)
    comm = connect("BANK-A", token)
    await hello(comm)
    try:
        await send(comm, bank_tap(world))
        assert await receive(comm) == {"type": "ack", "seq": 1}
        assert sent == []  # the fan-out is still waiting on the layer

        release.set()
        seen = [(await layer.receive(kiosk_channel))["event"] for _ in range(2)]
        assert sorted(seen) == ["slot.changed", "tap"]
        assert [event for _, event in sent] == seen
    finally:
        release.set()
        await comm.disconnect()
        layer.group_send = real_group_send


async def test_a_tap_is_answered_while_the_shared_sync_thread_is_busy(world, token, now) -> None:
    # Channels runs thread-sensitive sync code (HTTP views, the admin, other consumers) on one
    # thread for the whole process. A tap must not queue behind it: here that thread is held
    # until the tap has been answered, so waiting on it would never answer.
    comm = connect("BANK-A", token)
    await hello(comm)
    held, release = threading.Event(), threading.Event()

    def occupy() -> None:
        held.set()
        release.wait(timeout=30)

    blocker = asyncio.ensure_future(sync_to_async(occupy, thread_sensitive=True)())
    try:
        assert await asyncio.to_thread(held.wait, 10)
        await send(comm, bank_tap(world))
        assert await receive(comm) == {"type": "ack", "seq": 1}
        assert not blocker.done()  # the shared thread was busy the whole time
    finally:
        release.set()
        await blocker
        await comm.disconnect()


async def test_a_bank_works_with_redis_stopped(world, token, now, settings) -> None:
    # Nothing listens on port 1: anything that needed Redis would fail at once.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    channel_layers.backends.clear()
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world))
    assert await receive(comm) == {"type": "ack", "seq": 1}
    reservation = await open_remotely(world)
    assert (await receive(comm))["id"] == str(reservation.command_id)
    await comm.disconnect()
    assert await AccessEvent.objects.filter(granted=True).acount() == 1


async def test_a_take_whose_door_went_unseen_is_settled_by_the_next_snapshot(
    world, token, now
) -> None:
    # The worker was down while the door opened and closed: its restart snapshot shows the
    # device gone. The take physically happened, so it is recorded, not lapsed.
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world, slot=1))
    await receive(comm)
    slots = [
        {"slot": n, "door_open": False, "present": n in (2, 3, 4), "charge_state": None}
        for n in range(1, 7)
    ]
    await send(comm, {"type": "snapshot", "seq": 2, "at": at(90), "slots": slots})
    assert await receive(comm) == {"type": "ack", "seq": 2}
    await comm.disconnect()
    checkout = await Checkout.objects.aget()
    assert checkout.status == Checkout.Status.ACTIVE
    assert not await Alert.objects.filter(kind=Alert.Kind.DOOR_FORCED).aexists()


async def test_a_hold_past_its_time_that_changed_nothing_lapses_at_the_next_snapshot(
    world, token, now
) -> None:
    comm = connect("BANK-A", token)
    await hello(comm)
    await send(comm, bank_tap(world, slot=1))
    await receive(comm)
    slots = [
        {"slot": n, "door_open": False, "present": n in (1, 2, 3, 4), "charge_state": None}
        for n in range(1, 7)
    ]
    await send(comm, {"type": "snapshot", "seq": 2, "at": at(90), "slots": slots})
    await receive(comm)
    await comm.disconnect()
    assert (await Checkout.objects.aget()).status == Checkout.Status.LAPSED
