"""The bank worker's WebSocket (/ws/devices/<code>/): thin, every change goes through actions.

Protocol: docs/device-protocol.md. The decision path reads and writes only the database,
so badge → unlock keeps working while Redis (the live fan-out) is down.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from access.actions import present_badge
from assets.actions import command_failed
from devices import actions
from devices.models import LockerBank, Slot
from devices.protocol import Message, ProtocolError, parse
from lockerhub import audit, events

logger = logging.getLogger(__name__)

# A badge event older than this (a replay after an outage) opens nothing.
STALE_TAP = timedelta(seconds=20)
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_BANK = 4404


def _bearer_token(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@database_sync_to_async
def _authenticate(code: str, token: str | None) -> tuple[LockerBank | None, int | None]:
    bank = LockerBank.objects.filter(code=code).select_related("site").first()
    if bank is None:
        return None, CLOSE_UNKNOWN_BANK
    if token is None or not bank.check_token(token):
        return None, CLOSE_UNAUTHORIZED
    return bank, None


class DeviceConsumer(AsyncWebsocketConsumer):
    """One bank worker's connection."""

    bank: LockerBank | None = None

    async def connect(self) -> None:
        code = self.scope["url_route"]["kwargs"]["code"]
        bank, close_code = await _authenticate(code, _bearer_token(self.scope))
        await self.accept()
        if bank is None:
            logger.warning("device connection for %s refused (%s)", code, close_code)
            await self.close(code=close_code)
            return
        self.bank = bank
        self.groups_joined = [events.device_group(bank.code), events.ALL_DEVICES_GROUP]
        for group in self.groups_joined:
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception:
                logger.warning(
                    "bank %s: channel layer unavailable; remote commands will wait for a reconnect",
                    code,
                )

    async def disconnect(self, code: int) -> None:
        if self.bank is None:
            return
        for group in getattr(self, "groups_joined", []):
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.debug("group_discard failed", exc_info=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.bank is None:
            return
        try:
            message = parse(text_data)
            await self.dispatch_message(message)
        except ProtocolError as error:
            logger.warning(
                "bank %s sent a bad message: %s (%s)", self.bank.code, error.detail, error.code
            )
            await self.send_json(error.reply())

    async def dispatch_message(self, message: Message) -> None:
        if message.type == "hello":
            await self.on_hello(message)
        elif message.type == "heartbeat":
            await database_sync_to_async(actions.record_heartbeat)(self.bank, message.at)
        else:
            replies = await database_sync_to_async(self.apply_event)(message)
            for reply in replies:
                await self.send_json(reply)

    async def on_hello(self, message: Message) -> None:
        worker_id = uuid.UUID(message.body["worker_id"])
        last_acked, config, commands = await database_sync_to_async(self._hello)(worker_id, message)
        await self.send_json({**config, "last_acked_seq": last_acked})
        for command in commands:
            await self.send_json({"type": "command", **command})

    def _hello(self, worker_id: uuid.UUID, message: Message) -> tuple[int, dict, list[dict]]:
        last_acked = actions.register_worker(self.bank, worker_id, at=message.at)
        self.bank.refresh_from_db()
        config = {
            "type": "config",
            "bank": self.bank.code,
            "slots": [
                {
                    "slot": s.number,
                    "board": s.board,
                    "lock_index": s.lock_index,
                    "has_charger": s.has_charger,
                }
                for s in self.bank.slots.order_by("number")
            ],
            "invert_hook": self.bank.invert_hook,
            "door_held_open_seconds": self.bank.door_held_open_seconds,
            "heartbeat_seconds": settings.LOCKERHUB["HEARTBEAT_SECONDS"],
        }
        return last_acked, config, actions.pending_commands(self.bank, timezone.now())

    def apply_event(self, message: Message) -> list[dict[str, Any]]:
        """Apply one sequenced event exactly once (runs in a worker thread)."""
        replies: list[dict[str, Any]] = []
        body, at, actor = message.body, message.at, audit.actor_for_bank(self.bank.code)

        def apply(bank: LockerBank) -> None:
            if message.type == "badge":
                now = timezone.now()
                if now - at > STALE_TAP:
                    # Replayed long after the fact: whoever tapped has walked away; open nothing.
                    logger.info("bank %s: tap from %s ignored as stale", bank.code, at.isoformat())
                    replies.append(
                        {
                            "type": "tap_result",
                            "seq": message.seq,
                            "granted": False,
                            "reason": "stale",
                            "message": "Tap again, please.",
                            "slot": None,
                        }
                    )
                    return
                result = present_badge(bank, body["uid"], now=now, actor=actor)
                replies.append(
                    {
                        "type": "tap_result",
                        "seq": message.seq,
                        "granted": result.granted,
                        "reason": str(result.reason),
                        "message": result.message,
                        "slot": result.reservation.slot.number if result.reservation else None,
                    }
                )
                if result.command is not None:
                    replies.append({"type": "command", **result.command})
            elif message.type == "door":
                actions.record_slot_state(
                    bank, body["slot"], at=at, door_open=body["open"], actor=actor
                )
            elif message.type == "presence":
                actions.record_slot_state(
                    bank, body["slot"], at=at, present=body["present"], actor=actor
                )
            elif message.type == "charge":
                actions.record_slot_state(
                    bank, body["slot"], at=at, charge_state=body["state"], actor=actor
                )
            elif message.type == "snapshot":
                actions.reconcile_snapshot(bank, body["slots"], at=at)
            elif message.type == "command_result" and body["status"] == "failed":
                command_failed(body["id"], str(body.get("detail", "")), at=at, actor=actor)

        try:
            actions.apply_worker_event(self.bank, message.seq, apply)
        except Slot.DoesNotExist:
            raise ProtocolError(
                "bad_field", f"bank {self.bank.code} has no slot {body.get('slot')}", message.seq
            ) from None
        replies.append({"type": "ack", "seq": message.seq})
        return replies

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # --- Channel-layer handlers ---

    async def device_command(self, message: dict) -> None:
        await self.send_json({"type": "command", **message["payload"]})

    async def badge_revoked(self, message: dict) -> None:
        # Informational: access is decided by the server on every tap, so nothing is cached to purge.
        await self.send_json({"type": "revoked", "uid": message["payload"]["uid"]})
