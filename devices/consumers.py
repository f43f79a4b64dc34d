"""WebSockets of the devices app, thin: every change goes through actions.

- /ws/devices/<code>/: the bank worker (``DeviceConsumer``), authenticated by the bank's token;
- /ws/kiosk/<code>/: the kiosk screen beside a bank (``KioskConsumer``), by its kiosk cookie;
- /ws/dashboard/: the supervisors' dashboard (``DashboardConsumer``), by the browser session.

Protocol: docs/device-protocol.md. The bank decides taps itself; its connection reads and
writes only the database, so a bank keeps working while Redis (the live fan-out) is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from access.bank_taps import record_bank_tap
from assets.actions import command_failed
from devices import actions, bankbus
from devices.bank_feed import BankFeed
from devices.kiosk import COOKIE_NAME, KioskMessageError, kiosk_from_cookie, parse_kiosk_message
from devices.models import Kiosk, LockerBank, Slot
from devices.protocol import Message, ProtocolError, parse
from devices.queries import (
    can_watch_dashboard,
    checkout_for_dashboard,
    checkout_state,
    dashboard_state,
)
from devices.wire import CloseCode, MessageType
from lockerhub import audit, events
from lockerhub.alerts import ALL_ALERTS_GROUP
from lockerhub.auth import has_mfa, requires_mfa

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = CloseCode.BAD_TOKEN
CLOSE_UNKNOWN_BANK = CloseCode.UNKNOWN_BANK
# How often a connection looks for news in the database when nobody woke it: the backstop
# for a wake-up that never came (SQLite has no NOTIFY; a listener may be reconnecting).
CHECK_EVERY_SECONDS = {"postgresql": 5.0}
CHECK_EVERY_DEFAULT = 1.0


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


def _db(function: Any) -> Any:
    # Not thread-sensitive: by default Channels runs every database call of the process on one
    # thread, so each bank's transactions would queue behind every other bank's. Order within
    # a bank holds: a connection applies its messages one after another.
    return database_sync_to_async(function, thread_sensitive=False)


class DeviceConsumer(AsyncWebsocketConsumer):
    """One bank worker's connection. It uses no channel layer: everything it receives and
    sends goes through the database, so a bank keeps working while Redis is down."""

    # No channel layer (an alias that is not configured): Redis is not on the device path.
    channel_layer_alias = "device-path-needs-no-channel-layer"
    bank: LockerBank | None = None
    feed: BankFeed | None = None
    watcher: asyncio.Task | None = None

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
        self.feed = BankFeed(bank)
        self.woken = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._wake = lambda: loop.call_soon_threadsafe(self.woken.set)
        bankbus.register(bank.code, self._wake)

    async def disconnect(self, code: int) -> None:
        if self.bank is None:
            return
        bankbus.unregister(self.bank.code, self._wake)
        if self.watcher is not None:
            self.watcher.cancel()

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
        if message.type == MessageType.HELLO:
            await self.on_hello(message)
        elif message.type == MessageType.HEARTBEAT:
            await _db(actions.record_heartbeat)(self.bank, message.at)
        elif message.type == MessageType.SNAPSHOT_REQUEST:
            await self.send_json(await _db(self.feed.whole)(timezone.now()))
        else:
            replies, outbox = await _db(self.apply_event)(message)
            for reply in replies:
                await self.send_json(reply)
            await events.send_outbox(outbox)

    async def on_hello(self, message: Message) -> None:
        worker_id = uuid.UUID(message.body["worker_id"])
        last_acked, config, snapshot, commands = await _db(self._hello)(worker_id, message)
        await self.send_json({**config, "last_acked_seq": last_acked})
        await self.send_json(snapshot)
        for command in commands:
            await self.send_json(command)
        if self.watcher is None:
            self.watcher = asyncio.create_task(self._watch())

    def _hello(self, worker_id: uuid.UUID, message: Message) -> tuple[int, dict, dict, list[dict]]:
        last_acked = actions.register_worker(self.bank, worker_id, at=message.at)
        self.bank.refresh_from_db()
        self.feed.bank = self.bank
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
            "reservation_timeout_seconds": settings.LOCKERHUB["RESERVATION_TIMEOUT_SECONDS"],
        }
        now = timezone.now()
        return last_acked, config, self.feed.whole(now), self.feed.commands(now)

    async def _watch(self) -> None:
        """Send the bank what is new (deltas, commands) whenever woken, and now and then."""
        vendor = await _db(lambda: connection.vendor)()
        every = CHECK_EVERY_SECONDS.get(vendor, CHECK_EVERY_DEFAULT)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self.woken.wait()
            self.woken.clear()
            try:
                messages = await _db(self.feed.updates)(timezone.now())
            except Exception:
                # The database is away: the bank decides on its own meanwhile; try again.
                logger.warning("bank %s: could not read its updates", self.bank.code, exc_info=True)
                continue
            for message in messages:
                await self.send_json(message)

    def apply_event(self, message: Message) -> tuple[list[dict[str, Any]], events.Outbox]:
        """Apply one sequenced event exactly once (runs in a worker thread).

        Returns the replies for the worker and the live events to send after them. An event
        whose apply fails is kept with its error, alerted and acknowledged: the bank goes on.
        """
        body, at, actor = message.body, message.at, audit.actor_for_bank(self.bank.code)

        def apply(bank: LockerBank) -> None:
            if message.type == MessageType.TAP:
                record_bank_tap(bank, body, at=at, actor=actor)
            elif message.type == MessageType.HOLD_ENDED:
                actions.end_bank_hold(bank, body["slot"], at=at, actor=actor)
            elif message.type == MessageType.DOOR:
                actions.record_slot_state(
                    bank, body["slot"], at=at, door_open=body["open"], actor=actor
                )
            elif message.type == MessageType.PRESENCE:
                actions.record_slot_state(
                    bank, body["slot"], at=at, present=body["present"], actor=actor
                )
            elif message.type == MessageType.CHARGE:
                actions.record_slot_state(
                    bank, body["slot"], at=at, charge_state=body["state"], actor=actor
                )
            elif message.type == MessageType.SNAPSHOT:
                actions.reconcile_snapshot(bank, body["slots"], at=at)
            elif message.type == MessageType.COMMAND_RESULT and body["status"] == "failed":
                command_failed(body["id"], str(body.get("detail", "")), at=at, actor=actor)

        try:
            outbox = self._apply_retrying(message.seq, apply)
        except OperationalError:
            raise  # the database is away: the connection drops and the bank replays later
        except Slot.DoesNotExist:
            # Bad input, answered as such: nothing applied, nothing recorded.
            raise ProtocolError(
                "bad_field", f"bank {self.bank.code} has no slot {body.get('slot')}", message.seq
            ) from None
        except Exception as error:
            logger.exception(
                "bank %s: event %s (%s) could not be applied; kept and acknowledged",
                self.bank.code,
                message.seq,
                message.type,
            )
            actions.record_failed_event(
                self.bank, message.seq, message.type, body, error, at=timezone.now()
            )
            outbox = []
        return [{"type": "ack", "seq": message.seq}], outbox

    def _apply_retrying(self, seq: int, apply: Any) -> events.Outbox:
        # A deadlock or serialisation failure is no fault of the event: try it again.
        for attempt in range(3):
            try:
                with events.deferred() as outbox:
                    actions.apply_worker_event(self.bank, seq, apply)
                return outbox
            except OperationalError:
                if attempt == 2 or not connection.is_usable():
                    raise
                logger.info("bank %s: event %s hit a transient error; again", self.bank.code, seq)
        raise AssertionError("unreachable")

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))


# --- Browsers: the kiosk screen and the supervisors' dashboard ---

CLOSE_FORBIDDEN = 4403
CLOSE_LIVE_PAUSED = 4503


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
            # No live feed without the channel layer: close saying so ("live updates paused"),
            # and the page retries with backoff. The banks are not affected.
            logger.warning("channel layer unavailable for %s", type(self).__name__)
            await self.close(code=CLOSE_LIVE_PAUSED)
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
