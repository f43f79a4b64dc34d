"""WebSockets of the devices app, thin: every change goes through actions.

- /ws/devices/<code>/: the bank worker (``DeviceConsumer``), authenticated by the bank's token;
- /ws/kiosk/<code>/: the kiosk screen beside a bank (``KioskConsumer``), by its kiosk cookie;
- /ws/dashboard/: the supervisors' dashboard (``DashboardConsumer``), by the browser session.

Protocol: docs/device-protocol.md. The decision path reads and writes only the database,
so badge → unlock keeps working while Redis (the live fan-out) is down.
"""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from access.actions import present_badge
from assets.actions import command_failed
from devices import actions
from devices.kiosk import COOKIE_NAME, KioskMessageError, kiosk_from_cookie, parse_kiosk_message
from devices.models import Kiosk, LockerBank, Slot
from devices.protocol import Message, ProtocolError, parse
from devices.queries import (
    can_watch_dashboard,
    checkout_for_dashboard,
    checkout_state,
    dashboard_state,
)
from lockerhub import audit, events
from lockerhub.alerts import ALL_ALERTS_GROUP
from lockerhub.auth import has_mfa, requires_mfa

logger = logging.getLogger(__name__)

# A badge event older than this (a replay after an outage) opens nothing.
STALE_TAP = timedelta(seconds=20)
# Taps get threads of their own, so they never queue behind the door, presence and charge
# events of every other bank in the shared pool (each thread keeps its own connection).
TAP_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="taps")
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

    async def dispatch(self, message: dict) -> None:
        # Channels first closes stale database connections on its one shared sync thread, for
        # every message. Every database call here goes through database_sync_to_async, which
        # does that on the thread that runs it, so the extra hop would only queue each bank's
        # messages behind that one thread (and whatever else is running on it).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

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
        # Not thread-sensitive: by default Channels runs every database call of the process on
        # one thread, so each bank's transactions queued behind every other bank's round trips
        # (bench/tap_to_unlock.py). Order within a bank holds: this consumer applies its
        # messages one after another, and the bank row lock serialises the rest.
        elif message.type == "heartbeat":
            await database_sync_to_async(actions.record_heartbeat, thread_sensitive=False)(
                self.bank, message.at
            )
        else:
            # Someone is standing at the door for a tap; sensor events can wait their turn.
            executor = TAP_EXECUTOR if message.type == "badge" else None
            replies, outbox = await database_sync_to_async(
                self.apply_event, thread_sensitive=False, executor=executor
            )(message)
            # The worker first (the unlock is waiting on it), then the screens watching.
            for reply in replies:
                await self.send_json(reply)
            await events.send_outbox(outbox)

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

    def apply_event(self, message: Message) -> tuple[list[dict[str, Any]], events.Outbox]:
        """Apply one sequenced event exactly once (runs in a worker thread).

        Returns the replies for the worker and the live events to send after them.
        """
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
            with events.deferred() as outbox:
                actions.apply_worker_event(self.bank, message.seq, apply)
        except Slot.DoesNotExist:
            raise ProtocolError(
                "bad_field", f"bank {self.bank.code} has no slot {body.get('slot')}", message.seq
            ) from None
        replies.append({"type": "ack", "seq": message.seq})
        return replies, outbox

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # --- Channel-layer handlers ---

    async def device_command(self, message: dict) -> None:
        await self.send_json({"type": "command", **message["payload"]})

    async def badge_revoked(self, message: dict) -> None:
        # Informational: access is decided by the server on every tap, so nothing is cached to purge.
        await self.send_json({"type": "revoked", "uid": message["payload"]["uid"]})


# --- Browsers: the kiosk screen and the supervisors' dashboard ---

CLOSE_FORBIDDEN = 4403


class LiveConsumer(AsyncWebsocketConsumer):
    """A browser watching channel-layer groups. Events it has no use for are dropped, so a new
    kind of event on a bank's group never breaks a screen."""

    groups_joined: list[str]

    async def dispatch(self, message: dict) -> None:
        if message["type"].startswith("websocket.") or hasattr(
            self, message["type"].replace(".", "_")
        ):
            await super().dispatch(message)
        else:
            logger.debug("%s ignores %s", type(self).__name__, message["type"])

    async def refuse(self, why: str) -> None:
        # Accept first so the browser sees our close code and stops retrying.
        logger.info("%s refused: %s", type(self).__name__, why)
        await self.accept()
        await self.close(code=CLOSE_FORBIDDEN)

    async def join(self, groups: list[str]) -> bool:
        self.groups_joined = []
        try:
            for group in groups:
                await self.channel_layer.group_add(group, self.channel_name)
                self.groups_joined.append(group)
        except Exception:
            # No live feed without the channel layer: close, and the page retries with backoff.
            logger.warning("channel layer unavailable for %s", type(self).__name__, exc_info=True)
            await self.close(code=1011)
            return False
        return True

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.debug("group_discard failed", exc_info=True)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))


@database_sync_to_async
def _paired_kiosk(raw_cookie: str | None, code: str) -> Kiosk | None:
    kiosk = kiosk_from_cookie(raw_cookie, code)
    if kiosk is not None:
        actions.note_kiosk_seen(kiosk)
    return kiosk


class KioskConsumer(LiveConsumer):
    """The kiosk screen beside a bank (/ws/kiosk/<code>/): that bank's taps and completions.

    Only a browser holding a valid kiosk cookie for this very bank gets the feed. The screen
    may send one thing back: a damage report on the return in progress.
    """

    kiosk: Kiosk | None = None

    async def connect(self) -> None:
        code = self.scope["url_route"]["kwargs"]["code"]
        raw = self.scope.get("cookies", {}).get(COOKIE_NAME)
        kiosk = await _paired_kiosk(raw, code)
        if kiosk is None:
            await self.refuse(f"no valid kiosk cookie for {code}")
            return
        self.kiosk = kiosk
        await self.accept()
        if await self.join([events.bank_group(kiosk.bank.code)]):
            await self.send_json(
                {"type": "hello", "bank": kiosk.bank.code, "online": kiosk.bank.is_online}
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.kiosk is None:
            return
        try:
            report = parse_kiosk_message(text_data)
        except KioskMessageError as error:
            await self.send_json(error.reply())
            return
        try:
            await database_sync_to_async(actions.report_damage_at_kiosk)(
                self.kiosk, report.slot, report.note
            )
        except ValueError as error:
            await self.send_json({"type": "error", "code": "not_allowed", "detail": str(error)})
            return
        await self.send_json(
            {"type": "damage_reported", "slot": report.slot, "problem": report.problem}
        )

    # --- Channel-layer handlers ---

    async def tap(self, message: dict) -> None:
        await self.send_json({"type": "tap", **message["payload"]})

    async def _completion(self, message: dict) -> None:
        payload = message["payload"]
        # Who took what is not for a public screen beyond what the tap already said.
        await self.send_json(
            {"type": message["event"], "slot": payload["slot"], "asset": payload["asset"]}
        )

    take_completed = take_cancelled = return_completed = return_cancelled = _completion

    async def bank_status(self, message: dict) -> None:
        await self.send_json({"type": "bank.status", "online": message["payload"]["online"]})

    async def kiosk_revoked(self, message: dict) -> None:
        if self.kiosk is not None and message["payload"]["kiosk"] == self.kiosk.pk:
            await self.close(code=CLOSE_FORBIDDEN)


@database_sync_to_async
def _dashboard_access(user: Any) -> tuple[bool, list[str], bool]:
    if user is None or not can_watch_dashboard(user):
        return False, [], False
    # The MFA gate (lockerhub.middleware) sees only HTTP: apply its rule here too.
    if requires_mfa(user) and not has_mfa(user):
        return False, [], False
    codes = list(LockerBank.objects.visible_to(user).values_list("code", flat=True))
    return True, codes, user.has_perm("lockerhub.view_alert")


class DashboardConsumer(LiveConsumer):
    """The supervisors' dashboard (/ws/dashboard/), authenticated by the browser session.

    It joins every visible bank's group first, then sends a full snapshot, then forwards
    events; so a page that (re)connects never misses a change (register → load → apply).
    """

    user: Any = None
    sees_alerts = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        allowed, codes, self.sees_alerts = await _dashboard_access(user)
        if not allowed:
            await self.refuse("not a supervisor")
            return
        self.user = user
        self.codes = set(codes)
        # Alerts reach both the all-alerts group and their bank's group: forward each change once.
        self.last_alerts: dict[int, str] = {}
        await self.accept()
        groups = [events.bank_group(code) for code in codes]
        if self.sees_alerts:
            groups.append(ALL_ALERTS_GROUP)
        if await self.join(groups):
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        state = await database_sync_to_async(dashboard_state)(self.user, timezone.now())
        await self.send_json({"type": "snapshot", **state})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user is None:
            return
        try:
            data = json.loads(text_data) if text_data is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            await self.send_json(
                {"type": "error", "code": "bad_message", "detail": "send a JSON object"}
            )
            return
        if data.get("type") != "resync":
            await self.send_json(
                {
                    "type": "error",
                    "code": "unknown_type",
                    "detail": f"unknown message type {str(data.get('type'))[:40]!r}; "
                    "the dashboard only asks to resync",
                }
            )
            return
        await self.send_snapshot()

    # --- Channel-layer handlers ---

    async def slot_changed(self, message: dict) -> None:
        payload = message["payload"]
        if payload.get("bank") in self.codes:
            await self.send_json({"type": "slot", **payload})

    async def bank_status(self, message: dict) -> None:
        payload = message["payload"]
        if payload["bank"] in self.codes:
            await self.send_json({"type": "bank", **payload})

    async def _checkout_changed(self, message: dict) -> None:
        checkout = await database_sync_to_async(checkout_for_dashboard)(
            message["payload"]["checkout"]
        )
        if checkout is not None and checkout.slot_out.bank.code in self.codes:
            state = checkout_state(checkout, timezone.now())
            await self.send_json({"type": "checkout", **state})

    take_completed = take_cancelled = return_completed = return_cancelled = _checkout_changed

    async def _alert(self, message: dict) -> None:
        if not self.sees_alerts:
            return
        payload = message["payload"]
        fingerprint = json.dumps(payload, sort_keys=True, default=str)
        if self.last_alerts.get(payload["id"]) == fingerprint:
            return
        if len(self.last_alerts) > 1000:  # a long-open page: forget the old ones
            self.last_alerts.clear()
        self.last_alerts[payload["id"]] = fingerprint
        await self.send_json({"type": "alert", **payload})

    alert_raised = alert_changed = _alert
