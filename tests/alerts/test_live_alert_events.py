"""Alerts appear live: alert.raised and alert.changed on the all-alerts, site and bank groups,
through the real Redis channel layer."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, BaseChannelLayer, channel_layers

from lockerhub import actions, events
from lockerhub.alerts import ALL_ALERTS_GROUP, site_alerts_group
from lockerhub.models import Alert
from tests.conftest import World


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
