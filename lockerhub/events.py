"""The live event bus: state changes fanned out to browsers (dashboard, kiosk) over Channels.

Bank workers are not on it: their connections read and write the database only
(``devices.bankbus``), so losing Redis pauses the live views and never a bank.

Everything is sent after the transaction commits, so nobody sees a change that was rolled
back, and sending is best effort: Redis being down must never fail an action (the decision
path does not depend on it; pages resynchronise from the database when they reconnect).

A caller on the latency path (the bank worker's connection answering a tap) collects what
its actions broadcast with :func:`deferred` and sends it itself once its reply is out, so the
unlock never waits on Redis round trips.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

Outbox = list[tuple[str, dict[str, Any]]]

_outbox: contextvars.ContextVar[Outbox | None] = contextvars.ContextVar("outbox", default=None)

logger = logging.getLogger(__name__)


def bank_group(code: str) -> str:
    """Browsers (dashboard, kiosk) watching one bank."""
    return f"bank.{code}"


def broadcast(group: str, event_type: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to ``group`` once the current transaction commits."""
    message = {"type": event_type.replace(".", "_"), "event": event_type, "payload": payload}
    outbox = _outbox.get()
    if outbox is None:
        transaction.on_commit(lambda: send_now(group, message))
    else:
        transaction.on_commit(lambda: outbox.append((group, message)))


@contextmanager
def deferred() -> Iterator[Outbox]:
    """Collect (instead of sending) what is broadcast inside the block; still only on commit.

    The caller sends the outbox with :func:`send_outbox` when it is ready, in order.
    """
    outbox: Outbox = []
    token = _outbox.set(outbox)
    try:
        yield outbox
    finally:
        _outbox.reset(token)


async def send_outbox(outbox: Outbox) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for group, message in outbox:
        try:
            await layer.group_send(group, message)
        except Exception:
            logger.warning(
                "live event to %s not sent (channel layer unavailable)", group, exc_info=True
            )


def send_now(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Also when called from a thread running an event loop, where async_to_sync refuses.
        logger.warning(
            "live event to %s not sent (channel layer unavailable)", group, exc_info=True
        )
