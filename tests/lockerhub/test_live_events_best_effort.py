"""Live events are best effort: with Redis gone, every action still commits and answers."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers

from access.actions import present_badge
from assets.models import Reservation
from lockerhub import events
from tests.conftest import WEDNESDAY_10AM, World


@pytest.fixture
def redis_gone(settings):
    # Nothing listens on port 1: every send fails at once with a refused connection.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def test_a_tap_is_granted_and_recorded_with_redis_gone(
    world: World, redis_gone, django_capture_on_commit_callbacks, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="lockerhub.events")
    with django_capture_on_commit_callbacks(execute=True) as sent:
        result = present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM)

    assert result.granted
    assert Reservation.objects.filter(pk=result.reservation.pk).exists()
    assert len(sent) >= 2  # the kiosk's tap and the slot change were attempted
    assert "live event to bank.BANK-A not sent" in caplog.text


def test_the_bank_connections_outbox_survives_redis_gone(redis_gone, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="lockerhub.events")
    message = {"type": "tap", "event": "tap", "payload": {}}

    async_to_sync(events.send_outbox)([("bank.BANK-A", message), ("bank.BANK-B", message)])

    # Each event is tried, and failing one does not stop the next.
    assert caplog.text.count("not sent (channel layer unavailable)") == 2
