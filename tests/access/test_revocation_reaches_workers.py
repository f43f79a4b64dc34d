"""A revocation is pushed at once to every connected bank worker and holds at every bank."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from access.actions import offboard_employee, present_badge, revoke_badge
from access.models import Reason
from devices.actions import rotate_token
from lockerhub.asgi import application
from lockerhub.audit import SYSTEM
from tests.conftest import WEDNESDAY_10AM, World

pytestmark = pytest.mark.usefixtures("live_db")


async def connected_worker(code: str, token: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        application,
        f"/ws/devices/{code}/",
        headers=[(b"authorization", f"Bearer {token}".encode())],
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    hello = {"type": "hello", "worker_id": str(uuid.uuid4()), "version": "1", "last_seq": 0}
    await comm.send_to(text_data=json.dumps(hello))
    assert json.loads(await comm.receive_from(timeout=5))["type"] == "config"
    return comm


async def next_revocation(comm: WebsocketCommunicator) -> dict:
    # Skip anything else the server pushes (pending commands, acks) until the revocation.
    for _ in range(10):
        message = json.loads(await comm.receive_from(timeout=5))
        if message["type"] == "revoked":
            return message
    raise AssertionError("no revocation received")


@pytest.fixture
def tokens(world: World) -> dict[str, str]:
    return {bank.code: rotate_token(bank, actor=SYSTEM) for bank in (world.bank, world.other_bank)}


async def test_every_connected_worker_hears_of_a_revocation(world: World, tokens) -> None:
    workers = [await connected_worker(code, token) for code, token in tokens.items()]
    await database_sync_to_async(revoke_badge)(world.ana_badge, actor=SYSTEM, reason="lost")
    for comm in workers:
        assert await next_revocation(comm) == {"type": "revoked", "uid": world.ana_badge.uid}
        await comm.disconnect()


async def test_offboarding_then_a_tap_at_every_bank_is_denied(world: World, tokens) -> None:
    workers = [await connected_worker(code, token) for code, token in tokens.items()]
    await database_sync_to_async(offboard_employee)(world.ana, actor=SYSTEM, now=WEDNESDAY_10AM)
    for comm in workers:
        assert (await next_revocation(comm))["uid"] == world.ana_badge.uid
        await comm.disconnect()
    for bank in (world.bank, world.other_bank):
        tap = await database_sync_to_async(present_badge)(
            bank, world.ana_badge.uid, now=WEDNESDAY_10AM + timedelta(seconds=1)
        )
        assert (tap.granted, tap.reason) == (False, Reason.EMPLOYEE_OFFBOARDED)
