"""Alerts appear live: alert.raised and alert.changed on the all-alerts, site and bank groups,
through the real Redis channel layer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer, channel_layers

from devices.actions import mark_stale_banks_offline, record_heartbeat
from devices.models import LockerBank
from lockerhub import actions, events
from lockerhub.alerts import ALL_ALERTS_GROUP, site_alerts_group
from lockerhub.alerts.rules import sweep_overdue
from lockerhub.models import Alert
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import give_back, take


@pytest.fixture
def layer() -> BaseChannelLayer:
    # A private instance: receiving binds a layer to the event loop it runs in, and the
    # process-wide one must stay usable by the consumer tests that run later.
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


async def _listen(layer: BaseChannelLayer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _next(layer: BaseChannelLayer, channel: str) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout=5)


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """The events handed to the channel layer so far (they are still sent for real)."""
    sent: list[str] = []
    send_now = events.send_now

    def spy(group: str, message: dict) -> None:
        sent.append(message["event"])
        send_now(group, message)

    monkeypatch.setattr(events, "send_now", spy)
    return sent


@pytest.mark.django_db
def test_raise_acknowledge_and_resolve_are_broadcast(
    world: World, supervisor, layer: BaseChannelLayer, django_capture_on_commit_callbacks
) -> None:
    groups = [ALL_ALERTS_GROUP, site_alerts_group(world.site.pk), events.bank_group("BANK-A")]
    channels = [async_to_sync(_listen)(layer, group) for group in groups]

    with django_capture_on_commit_callbacks(execute=True):
        alert, _ = actions.raise_alert(
            Alert.Kind.DOOR_FORCED,
            "door-forced:BANK-A:5:x",
            "Door 5 forced",
            bank=world.bank,
            site_id=world.site.pk,
        )
    for channel in channels:
        message = async_to_sync(_next)(layer, channel)
        assert message["type"] == "alert_raised"
        assert message["event"] == "alert.raised"
        assert message["payload"]["id"] == alert.pk
        assert message["payload"]["state"] == "open"
        assert message["payload"]["bank"] == "BANK-A"

    with django_capture_on_commit_callbacks(execute=True):
        actions.acknowledge_alert(alert, user=supervisor)
    message = async_to_sync(_next)(layer, channels[0])
    assert (message["event"], message["payload"]["change"]) == ("alert.changed", "acknowledged")

    with django_capture_on_commit_callbacks(execute=True):
        actions.resolve_alert(alert, user=supervisor)
    message = async_to_sync(_next)(layer, channels[0])
    assert (message["event"], message["payload"]["change"]) == ("alert.changed", "resolved")
    assert message["payload"]["resolved_at"] is not None


@pytest.mark.django_db
def test_a_return_closes_its_overdue_alert_live_once_committed(
    world: World,
    layer: BaseChannelLayer,
    sent: list[str],
    time_machine,
    django_capture_on_commit_callbacks,
) -> None:
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    _, checkout = take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    late = checkout.due_at + timedelta(minutes=5)
    time_machine.move_to(late, tick=False)
    sweep_overdue()
    alert = Alert.objects.get(kind=Alert.Kind.OVERDUE)
    channel = async_to_sync(_listen)(layer, ALL_ALERTS_GROUP)

    with django_capture_on_commit_callbacks() as callbacks:
        give_back(world.bank, world.ana_badge.uid, late + timedelta(minutes=1))
    assert sent == []  # nothing is said before the return commits

    for callback in callbacks:
        callback()
    message = async_to_sync(_next)(layer, channel)
    assert (message["event"], message["payload"]["change"]) == ("alert.changed", "resolved")
    assert (message["payload"]["id"], message["payload"]["state"]) == (alert.pk, "resolved")
    assert message["payload"]["checkout"] == checkout.pk


@pytest.mark.django_db
def test_a_bank_back_online_closes_its_offline_alert_live_once_committed(
    world: World, layer: BaseChannelLayer, sent: list[str], django_capture_on_commit_callbacks
) -> None:
    LockerBank.objects.filter(pk=world.bank.pk).update(
        last_heartbeat_at=WEDNESDAY_10AM - timedelta(minutes=1)
    )
    mark_stale_banks_offline(WEDNESDAY_10AM, after=timedelta(seconds=15))
    alert = Alert.objects.get(kind=Alert.Kind.BANK_OFFLINE)
    channel = async_to_sync(_listen)(layer, events.bank_group("BANK-A"))

    with django_capture_on_commit_callbacks() as callbacks:
        record_heartbeat(world.bank, WEDNESDAY_10AM + timedelta(minutes=2))
    assert sent == []

    for callback in callbacks:
        callback()
    received = {}
    for _ in range(2):  # the alert's change and the bank's own status
        message = async_to_sync(_next)(layer, channel)
        received[message["event"]] = message["payload"]
    assert set(received) == {"alert.changed", "bank.status"}
    assert (received["alert.changed"]["id"], received["alert.changed"]["change"]) == (
        alert.pk,
        "resolved",
    )
    assert received["bank.status"]["online"] is True
