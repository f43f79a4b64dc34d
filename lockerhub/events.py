"""The live event bus: state changes fanned out to browsers and bank workers over Channels.

Everything is sent after the transaction commits, so nobody sees a change that was rolled
back, and sending is best effort: Redis being down must never fail an action (the decision
path does not depend on it; pages resynchronise from the database when they reconnect).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def bank_group(code: str) -> str:
    """Browsers (dashboard, kiosk) watching one bank."""
    return f"bank.{code}"


def device_group(code: str) -> str:
    """The bank worker connection of one bank."""
    return f"device.{code}"


ALL_DEVICES_GROUP = "devices.all"


def broadcast(group: str, event_type: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to ``group`` once the current transaction commits."""
    message = {"type": event_type.replace(".", "_"), "event": event_type, "payload": payload}
    transaction.on_commit(lambda: send_now(group, message))


def send_now(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning(
            "live event to %s not sent (channel layer unavailable)", group, exc_info=True
        )
