"""The framework floor: the bank worker's protocol answered by Daphne and Channels alone.

``python -m bench.tap_to_unlock --server-app floor`` runs this application in Daphne instead
of LockerHub's. It speaks the device protocol exactly as the bank worker expects (token in the
header, hello → config, sequenced events acknowledged once, a tap answered with ``tap_result``
and an unlock ``command``) and validates every message with the real parser, but decides from
memory: no database, no channel layer, no audit, no live fan-out. What it costs is what
Daphne, Channels and the WebSocket framing cost, so a run against it shows what the machine
can do with the server's own work taken away. It is a measuring device, never a server.

The benchmark's world (codes, tokens, slots) comes from the JSON file named by
``LOCKERHUB_BENCH_WORLD``.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lockerhub.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402

from devices.consumers import _bearer_token  # noqa: E402
from devices.protocol import ProtocolError, parse  # noqa: E402


@dataclass
class FloorSlot:
    number: int
    board: int
    lock_index: int
    present: bool
    reserved: bool = False


@dataclass
class FloorBank:
    code: str
    token: str
    slots: dict[int, FloorSlot]
    last_seq: int = 0
    holding: dict[str, int] = field(default_factory=dict)

    def choose(self, uid: str) -> tuple[FloorSlot | None, str]:
        """A return for whoever holds a device, otherwise a take; the first free slot that fits."""
        returning = uid in self.holding
        for slot in self.slots.values():
            if not slot.reserved and slot.present != returning:
                slot.reserved = True
                if returning:
                    del self.holding[uid]
                else:
                    self.holding[uid] = slot.number
                return slot, "granted_return" if returning else "granted_take"
        return None, "no_asset_available"


def _load_world() -> dict[str, FloorBank]:
    world = json.loads(Path(os.environ["LOCKERHUB_BENCH_WORLD"]).read_text())
    return {
        bank["code"]: FloorBank(
            bank["code"],
            bank["token"],
            {n: FloorSlot(n, board, lock, present) for n, board, lock, present in bank["slots"]},
        )
        for bank in world["banks"]
    }


BANKS = _load_world()


class FloorDeviceConsumer(AsyncWebsocketConsumer):
    """The device protocol answered from memory (see the module docstring)."""

    channel_layer_alias = "none"  # no channel layer: nothing reaches Redis
    bank: FloorBank | None = None

    async def connect(self) -> None:
        bank = BANKS.get(self.scope["url_route"]["kwargs"]["code"])
        token = _bearer_token(self.scope)
        await self.accept()
        if bank is None or token is None or not secrets.compare_digest(token, bank.token):
            await self.close(code=4401)
            return
        self.bank = bank

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.bank is None:
            return
        try:
            message = parse(text_data)
        except ProtocolError as error:
            await self.send_json(error.reply())
            return
        bank = self.bank
        if message.type == "hello":
            await self.send_json(
                {
                    "type": "config",
                    "bank": bank.code,
                    "slots": [
                        {"slot": s.number, "board": s.board, "lock_index": s.lock_index,
                         "has_charger": True}
                        for s in bank.slots.values()
                    ],
                    "invert_hook": False,
                    "door_held_open_seconds": 60,
                    "heartbeat_seconds": 5,
                    "last_acked_seq": bank.last_seq,
                }
            )  # fmt: skip
            return
        if message.seq is None:  # heartbeat
            return
        if message.seq > bank.last_seq:
            bank.last_seq = message.seq
            for reply in self.apply(bank, message.type, message.body, message.seq):
                await self.send_json(reply)
        await self.send_json({"type": "ack", "seq": message.seq})

    def apply(self, bank: FloorBank, kind: str, body: dict[str, Any], seq: int) -> list[dict]:
        if kind == "badge":
            slot, reason = bank.choose(body["uid"])
            result = {"type": "tap_result", "seq": seq, "granted": slot is not None,
                      "reason": reason, "message": "", "slot": slot and slot.number}  # fmt: skip
            if slot is None:
                return [result]
            command = {
                "type": "command",
                "id": str(uuid.uuid4()),
                "action": "unlock",
                "slot": slot.number,
                "board": slot.board,
                "lock_index": slot.lock_index,
                "expires_at": (timezone.now() + timedelta(seconds=30)).isoformat(),
            }
            return [result, command]
        slot = bank.slots.get(body.get("slot", 0))
        if kind == "presence" and slot is not None:
            slot.present = body["present"]
        elif kind == "door" and slot is not None and not body["open"]:
            slot.reserved = False
        elif kind == "snapshot":
            for entry in body["slots"]:
                if entry["slot"] in bank.slots and entry["present"] is not None:
                    bank.slots[entry["slot"]].present = entry["present"]
        return []

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/devices/<str:code>/", FloorDeviceConsumer.as_asgi())]),
    }
)
