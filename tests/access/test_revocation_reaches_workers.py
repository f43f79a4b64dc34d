"""A revocation reaches every connected bank at once, as a signed delta its decisions follow."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from access import core
from access.actions import offboard_employee, revoke_badge
from devices.actions import rotate_token
from lockerhub import signing
from lockerhub.asgi import application
from lockerhub.audit import SYSTEM
from tests.conftest import WEDNESDAY_10AM, World

pytestmark = pytest.mark.usefixtures("live_db")


async def connected_worker(code: str, token: str) -> tuple[WebsocketCommunicator, core.Snapshot]:
    comm = WebsocketCommunicator(
        application,
        f"/ws/devices/{code}/",
        headers=[(b"authorization", f"Bearer {token}".encode())],
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    hello = {"type": "hello", "worker_id": str(uuid.uuid4()), "version": "2", "last_seq": 0}
    await comm.send_to(text_data=json.dumps(hello))
    assert json.loads(await comm.receive_from(timeout=5))["type"] == "config"
    message = json.loads(await comm.receive_from(timeout=5))
    assert message["type"] == "access_snapshot"
    return comm, core.Snapshot.from_data(json.loads(message["data"]))


async def follow_until(
    comm: WebsocketCommunicator, code: str, snapshot: core.Snapshot, done
) -> core.Snapshot:
    """Apply the deltas the bank is sent until ``done(snapshot)``; within a second, since the
    connection is woken after commit, not at its next periodic check."""
    key = core.load_public_key(await database_sync_to_async(signing.public_key_text)())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while not done(snapshot):
        message = json.loads(await comm.receive_from(timeout=max(0.01, deadline - loop.time())))
        assert message["type"] == "access_delta"
        snapshot = snapshot.with_delta(core.open_signed(key, message, bank=code))
    return snapshot


@pytest.fixture
def tokens(world: World) -> dict[str, str]:
    return {bank.code: rotate_token(bank, actor=SYSTEM) for bank in (world.bank, world.other_bank)}


async def test_every_connected_bank_hears_of_a_revocation(world: World, tokens) -> None:
    workers = [(code, *await connected_worker(code, token)) for code, token in tokens.items()]
    await database_sync_to_async(revoke_badge)(world.ana_badge, actor=SYSTEM, reason="lost")
    for code, comm, snapshot in workers:
        await follow_until(
            comm, code, snapshot, lambda s: s.badge_for(world.ana_badge.uid).status == "revoked"
        )
        await comm.disconnect()


async def test_offboarding_then_a_tap_at_every_bank_is_denied(world: World, tokens) -> None:
    workers = [(code, *await connected_worker(code, token)) for code, token in tokens.items()]
    await database_sync_to_async(offboard_employee)(world.ana, actor=SYSTEM, now=WEDNESDAY_10AM)

    def denied(snapshot: core.Snapshot) -> bool:
        decision = core.decide(snapshot, [], WEDNESDAY_10AM.timestamp(), world.ana_badge.uid)
        return (decision.granted, decision.reason) == (False, core.Reason.EMPLOYEE_OFFBOARDED)

    for code, comm, snapshot in workers:
        await follow_until(comm, code, snapshot, denied)
        await comm.disconnect()
