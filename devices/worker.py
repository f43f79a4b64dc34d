"""The bank worker: runs next to one locker bank, decides its badge taps and connects it to the
server.

It owns the serial lock bus, the NFC badge reader and the optional charge meter, and speaks the
protocol of ``docs/device-protocol.md`` (version 2) over one WebSocket::

    LOCKERHUB_BANK_TOKEN=... LOCKERHUB_SERVER_KEY=... python -m devices.worker \\
        --server wss://lockerhub.example.com --bank BANK-A --lock-port /dev/ttyUSB0 \\
        --protocol kerong-cu16 --nfc usb:072f:2200

Every badge tap is decided here, from the server's signed access snapshot
(``access.core.decide``), and a granted one unlocks its door at once, with or without the
server. Everything the worker observes (taps and its decisions on them, doors, item presence,
charge states, command results, holds that lapsed) is first written to a small SQLite journal
(``devices.worker_journal``) and only then sent; an event leaves the journal when the server
acknowledges it, so nothing is lost across disconnects, crashes or power cuts. The journal
also keeps the snapshot (re-verified at every start) and the last configuration, so a worker
that starts while the server is down still watches its doors and decides taps. A local
WebSocket (``devices.worker_kiosk``) tells the kiosk page what happens when the server cannot.

This module must not import Django: the worker runs on a small computer without the project's
database or settings.

Exit status of ``main``: 0 after SIGINT/SIGTERM, 1 when the hardware cannot be opened or the
worker fails, 2 for a bad command line, 3 when the server rejects the token (close code 4401),
4 when the server does not know the bank (4404). Those two are not retried: the same token and
bank code would be refused forever, and an operator has to fix the configuration first (a
service manager's restart policy then brings the worker back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from access import core
from devices.charge import ChargeThresholds
from devices.drivers.base import LockBoardError, LockBus
from devices.wire import PROTOCOL_VERSION, CloseCode, MessageType
from devices.worker_bank import BankState, ChargeMeter, Tap
from devices.worker_commands import CommandRunner
from devices.worker_config import (
    MIN_POLL_HZ,
    BadMessage,
    BankConfig,
    SlotConfig,
    build_parser,
    check_arguments,
    int_field,
    parse_config,
    server_url,
)
from devices.worker_journal import CommandRecord, Journal, iso, utc_now
from devices.worker_kiosk import KioskFeed

__all__ = [
    "BadMessage",
    "BankConfig",
    "BankWorker",
    "CommandRecord",
    "Journal",
    "SlotConfig",
    "Tap",
    "WorkerRejected",
    "build_parser",
    "main",
    "parse_config",
    "server_url",
]

# Named explicitly: under "python -m" __name__ is "__main__".
log = logging.getLogger("devices.worker")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BAD_TOKEN = 3
EXIT_UNKNOWN_BANK = 4

DEFAULT_HEARTBEAT_SECONDS = 5.0
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0


class WorkerRejected(Exception):
    """The server refused this worker for good (bad token or unknown bank): do not retry."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_status(self) -> int:
        return EXIT_BAD_TOKEN if self.code == CloseCode.BAD_TOKEN else EXIT_UNKNOWN_BANK


class _RedactAuthorization(logging.Filter):
    """Hides the token in websockets' debug log of the request headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "Bearer [redacted]")
        return True


_ws_log = logging.getLogger("devices.worker.websocket")
_ws_log.addFilter(_RedactAuthorization())


@dataclass
class _Session:
    ws: ClientConnection
    handshaken: bool = False
    snapshot_requested: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class BankWorker:
    """Runs one locker bank; see the module docstring and the protocol doc.

    ``lock_bus`` is an open :class:`LockBus` (the caller closes it). ``server_key`` is the
    server's Ed25519 public key (base64, as ``create_bank`` prints it): without it no access
    snapshot can be trusted and every tap is denied ``bank_not_ready``. With
    ``badge_reader_path`` the worker runs an NFC :class:`~devices.readers.nfc.BadgeReader` on
    that nfcpy path; taps can also be fed in with :meth:`submit_badge`. ``charge_meter`` is
    anything with a ``read() -> {slot: mA | None}``, read every ``charge_interval`` seconds;
    each charging slot gets a :class:`~devices.charge.ChargeTracker` with
    ``charge_thresholds``. ``heartbeat_seconds`` overrides the server's interval.
    ``kiosk_port`` is the local kiosk feed's port on 127.0.0.1 (0: none).

    :meth:`run` is a coroutine that polls the doors (from the journal's configuration until
    the server sends one) and keeps the connection up (reconnecting with backoff) until
    :meth:`stop` is called from any thread, then stops its threads and closes the journal. It
    raises :class:`WorkerRejected` when the server refuses the token or the bank. A worker
    runs once.
    """

    def __init__(
        self,
        server: str,
        bank: str,
        token: str,
        lock_bus: LockBus,
        *,
        server_key: str | None = None,
        badge_reader_path: str | None = None,
        charge_meter: ChargeMeter | None = None,
        journal_path: str | os.PathLike[str],
        kiosk_port: int = 0,
        poll_hz: float = 10,
        heartbeat_seconds: float | None = None,
        charge_interval: float = 1.0,
        charge_thresholds: ChargeThresholds | None = None,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        open_timeout: float = 10.0,
        config_timeout: float = 15.0,
    ) -> None:
        if not token:
            raise ValueError("a device token is required")
        if not poll_hz >= MIN_POLL_HZ:
            raise ValueError(f"poll_hz must be at least {MIN_POLL_HZ:g}, got {poll_hz!r}")
        if heartbeat_seconds is not None and not heartbeat_seconds > 0:
            raise ValueError("heartbeat_seconds must be positive")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if not 0 <= kiosk_port <= 65535:
            raise ValueError(f"kiosk_port must be 0-65535, got {kiosk_port!r}")
        self.bank = bank
        self.url = server_url(server, bank)
        self._token = token
        public_key = core.load_public_key(server_key) if server_key else None
        self.lock_bus = lock_bus
        self.badge_reader_path = badge_reader_path
        self.charge_meter = charge_meter
        self.poll_hz = float(poll_hz)
        self.heartbeat_override = heartbeat_seconds
        self.charge_interval = charge_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.config_timeout = config_timeout
        self.kiosk = KioskFeed(bank, kiosk_port) if kiosk_port else None
        self._heartbeat_seconds = heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS

        self._halt = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []
        self._background: set[asyncio.Future[None]] = set()
        self._reader: Any = None
        self._started = False
        self._finished = False
        self.journal = Journal(journal_path)
        try:
            self.state = BankState(
                bank,
                self.journal,
                lock_bus,
                server_key=public_key,
                charge_meter=charge_meter,
                charge_thresholds=charge_thresholds,
                wake=self._wake,
                publish=self._publish,
            )
        except BaseException:
            self.journal.close()
            raise
        self._commands = CommandRunner(
            bank, self.journal, lock_bus, self.state.hold_for_remote, self.state.release, self._wake
        )

    def __repr__(self) -> str:
        return f"<BankWorker {self.bank} {self.url}>"

    @property
    def worker_id(self) -> str:
        return self.journal.worker_id

    @property
    def slots(self) -> tuple[SlotConfig, ...]:
        """The configured slots (from the server, or the journal's last config)."""
        return self.state.slots

    @property
    def snapshot_version(self) -> int | None:
        """The version of the server's access snapshot held (None without one)."""
        return self.state.snapshot_version

    # -- public entry points ---------------------------------------------------------------------

    def submit_badge(self, uid: str | bytes) -> Tap:
        """Decide a badge tap, journal it, and unlock its door when granted; safe from any thread.

        ``ValueError`` for something no badge UID can be. The unlock frame goes out once the
        ``tap`` event is committed, without waiting for the server.
        """
        if self._finished:
            raise RuntimeError("the worker has stopped")
        return self.state.decide_tap(uid)

    def poll_once(self) -> list[int]:
        """Read the lock boards once; see :meth:`BankState.poll_once`."""
        return self.state.poll_once()

    def read_charge_once(self) -> list[int]:
        """Read the charge meter once; see :meth:`BankState.read_charge_once`."""
        return self.state.read_charge_once()

    def stop(self) -> None:
        """Ask :meth:`run` to finish; returns at once. Safe from any thread, and repeatable."""
        self._halt.set()
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop_requested.set)

    async def run(self) -> None:
        """Run the bank until :meth:`stop`; raises :class:`WorkerRejected`."""
        if self._started:
            raise RuntimeError("a BankWorker runs only once; make a new one")
        self._started = True
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._halt.is_set():
            self._stop_requested.set()
        log.info(
            "bank worker %s starting: server %s, worker id %s, %d event(s) to replay, "
            "access snapshot %s",
            self.bank,
            self.url,
            self.worker_id,
            len(self.journal.pending_messages()),
            self.snapshot_version,
        )
        try:
            if self.kiosk is not None:
                await self.kiosk.start()
            self._start_reader()
            stored = self.state.config
            if stored is not None and not self._halt.is_set():
                # Watch the doors now, server or no server; the server's config may replace it.
                await asyncio.to_thread(self.state.configure_and_snapshot, stored)
                self._start_pollers()
            await self._connection_loop()
        finally:
            if self.kiosk is not None:
                await self.kiosk.close()
            await asyncio.to_thread(self._shutdown)
            log.info("bank worker %s stopped", self.bank)

    # -- connection ----------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        assert self._stop_requested is not None
        backoff = self.backoff_initial
        while not self._halt.is_set():
            session = asyncio.create_task(self._session())
            stopper = asyncio.create_task(self._stop_requested.wait())
            await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not session.done():
                session.cancel()
                await asyncio.wait({session}, timeout=3)
                if not session.done():
                    log.warning("the connection did not close within 3 s; leaving it")
                return
            handshaken = False
            try:
                handshaken = session.result()
            except WorkerRejected:
                raise
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self._log_connect_failure(exc)
            except Exception:
                log.exception("connection to %s failed", self.url)
            if self._halt.is_set():
                return
            if handshaken:
                backoff = self.backoff_initial
            # "Equal jitter": a fleet of banks that lost the server together spreads out.
            delay = backoff / 2 + random.uniform(0, backoff / 2)
            backoff = min(backoff * 2, self.backoff_max)
            log.info("reconnecting to %s in %.2f s", self.url, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop_requested.wait()

    def _log_connect_failure(self, exc: BaseException) -> None:
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            hint = (
                " (is the bank code right, and the token current?)"
                if status in {401, 403, 404}
                else ""
            )
            log.warning("server %s refused the connection: HTTP %d%s", self.url, status, hint)
        else:
            log.warning("cannot connect to %s: %s", self.url, exc or type(exc).__name__)

    async def _session(self) -> bool:
        """One connection, from connect to close; True if the handshake completed."""
        session: _Session | None = None
        try:
            async with connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self._token}"},
                user_agent_header=f"lockerhub-bank-worker/{PROTOCOL_VERSION}",
                open_timeout=self.open_timeout,
                close_timeout=1,
                ping_interval=20,
                ping_timeout=20,
                logger=_ws_log,
            ) as ws:
                session = _Session(ws)
                log.info("connected to %s", self.url)
                await self._send(
                    ws,
                    {
                        "type": str(MessageType.HELLO),
                        "worker_id": self.worker_id,
                        "version": PROTOCOL_VERSION,
                        "last_seq": self.journal.last_seq,
                        "snapshot_version": self.snapshot_version,
                    },
                )
                try:
                    await self._receive_loop(session)
                except asyncio.CancelledError:
                    # stop(): say goodbye properly, or the server sees an abnormal closure.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1):
                            await ws.close(1001, "worker stopping")
                    raise
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code == CloseCode.BAD_TOKEN:
                log.error(
                    "server %s rejected the device token of bank %s (close code 4401); "
                    "set the current token (manage.py rotate_bank_token) and restart the worker",
                    self.url,
                    self.bank,
                )
                raise WorkerRejected(code, "the server rejected the device token") from None
            if code == CloseCode.UNKNOWN_BANK:
                log.error(
                    "server %s does not know bank %s (close code 4404); check --bank",
                    self.url,
                    self.bank,
                )
                raise WorkerRejected(code, f"the server does not know bank {self.bank}") from None
            log.warning("connection to %s closed: %s", self.url, exc)
        finally:
            if session is not None:
                for task in session.tasks:
                    task.cancel()
                await asyncio.gather(*session.tasks, return_exceptions=True)
                if session.handshaken:
                    self._set_online(False)
        return session is not None and session.handshaken

    async def _receive_loop(self, session: _Session) -> None:
        ws = session.ws
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config_timeout
        while True:
            if session.handshaken:
                raw = await ws.recv()
            else:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
                # cancellation (stop()) that races with the message arriving.
                try:
                    async with asyncio.timeout_at(deadline):
                        raw = await ws.recv()
                except TimeoutError:
                    log.warning(
                        "no config from %s within %.0f s; reconnecting",
                        self.url,
                        self.config_timeout,
                    )
                    return
            message = self._decode(raw)
            if message is not None:
                await self._dispatch(session, message)

    def _decode(self, raw: str | bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            log.warning("ignoring a message that is not JSON: %.200r", raw)
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            log.warning("ignoring a message without a type: %.200r", raw)
            return None
        return message

    async def _dispatch(self, session: _Session, message: dict[str, Any]) -> None:
        kind = message["type"]
        try:
            if kind == MessageType.CONFIG:
                await self._on_config(session, message)
            elif kind == MessageType.ACK:
                seq = int_field(message, "seq")
                await asyncio.to_thread(self.journal.ack, seq)
            elif kind == MessageType.COMMAND:
                # Serial I/O and journal commits happen on the command thread, never here.
                self._commands.submit(message, utc_now())
            elif kind in (MessageType.ACCESS_SNAPSHOT, MessageType.ACCESS_DELTA):
                await self._on_access(session, message)
            elif kind == MessageType.ERROR:
                log.warning(
                    "server reported an error: %s: %s (seq %s)",
                    message.get("code"),
                    message.get("detail"),
                    message.get("seq"),
                )
            else:
                log.warning("ignoring a message of unknown type %r", kind)
        except BadMessage as exc:
            log.warning("ignoring a bad %s message: %s", kind, exc)

    async def _on_config(self, session: _Session, message: dict[str, Any]) -> None:
        config = parse_config(message)
        if message.get("bank") not in (None, self.bank):
            log.warning("config is for bank %r, this worker is %r", message.get("bank"), self.bank)
        self._check_polarity(config.invert_hook)
        if self.heartbeat_override is None and config.heartbeat_seconds is not None:
            self._heartbeat_seconds = config.heartbeat_seconds
        await asyncio.to_thread(self._apply_acked, config.last_acked_seq)
        await asyncio.to_thread(self._keep_config, message)
        log.info(
            "config for bank %s: %d slot(s), heartbeat every %g s, server applied up to seq %d",
            message.get("bank", self.bank),
            len(config.slots),
            self._heartbeat_seconds,
            config.last_acked_seq,
        )
        if not session.handshaken:
            # Replay starts now, before the snapshot: events go out strictly in seq order, and
            # the snapshot (newest truth) must not be followed by older observations.
            for job in (self._send_loop(session.ws), self._heartbeat_loop(session.ws)):
                task = asyncio.create_task(job)
                task.add_done_callback(lambda t, ws=session.ws: self._session_task_done(t, ws))
                session.tasks.append(task)
        await asyncio.to_thread(self.state.configure_and_snapshot, config)
        self._start_pollers()
        session.handshaken = True
        self._set_online(True)

    def _keep_config(self, message: Mapping[str, Any]) -> None:
        # For the next start, which may come while the server is away.
        kept = {k: v for k, v in message.items() if k != "last_acked_seq"}
        if kept != self.journal.config():
            self.journal.save_config(kept)

    def _check_polarity(self, server_says: bool | None) -> None:
        opened_with = getattr(self.lock_bus, "invert_hook", None)
        if (
            isinstance(server_says, bool)
            and isinstance(opened_with, bool)
            and server_says != opened_with
        ):
            # Not fixed up silently: the command line is the contract for the hardware.
            log.error(
                "the server has invert_hook=%s for bank %s but the lock bus runs with %s: "
                "every door will read the wrong way round; fix --invert-hook",
                server_says,
                self.bank,
                opened_with,
            )

    def _session_task_done(self, task: asyncio.Task[None], ws: ClientConnection) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, ConnectionClosed):
            return
        # Without its sender the connection is useless: drop it and start afresh.
        log.error("%s failed", task.get_coro(), exc_info=exc)
        closing = asyncio.ensure_future(ws.close(1011, "worker error"))
        self._background.add(closing)
        closing.add_done_callback(self._background.discard)

    def _apply_acked(self, last_acked: int) -> None:
        dropped = self.journal.ack(last_acked)
        if dropped:
            log.info("server already had %d journal event(s) up to seq %d", dropped, last_acked)
        if self.journal.advance_seq(last_acked):
            log.warning(
                "server has seen seq %d from this worker id, beyond this journal; "
                "continuing after it (was the journal restored from a backup?)",
                last_acked,
            )

    async def _send(self, ws: ClientConnection, message: Mapping[str, Any]) -> None:
        await ws.send(json.dumps(message, separators=(",", ":")))

    async def _send_loop(self, ws: ClientConnection) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        sent_upto = 0  # each connection starts by replaying everything not acknowledged
        while True:
            wakeup.clear()
            batch = self.journal.pending_messages(after=sent_upto)
            for seq, text in batch:
                await ws.send(text)
                sent_upto = seq
            if batch:
                log.debug("sent events up to seq %d", sent_upto)
            else:
                await wakeup.wait()

    async def _heartbeat_loop(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            await self._send(ws, {"type": str(MessageType.HEARTBEAT), "at": iso(utc_now())})

    def _wake(self) -> None:
        """Tell the sender there is something new in the journal (from any thread)."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        if _running_loop() is loop:
            wakeup.set()
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the journal keeps the event
            loop.call_soon_threadsafe(wakeup.set)

    def _set_online(self, online: bool) -> None:
        if self.kiosk is not None:
            self.kiosk.set_online(online)

    def _publish(self, message: Mapping[str, Any]) -> None:
        if self.kiosk is not None:
            self.kiosk.publish(message)

    # -- the access snapshot --------------------------------------------------------------------

    async def _on_access(self, session: _Session, message: dict[str, Any]) -> None:
        # Verifying and storing take a signature check and a commit: not on the event loop.
        if await asyncio.to_thread(self.state.accept_access, message):
            if not session.snapshot_requested:
                session.snapshot_requested = True
                await self._send(session.ws, {"type": str(MessageType.SNAPSHOT_REQUEST)})
        elif message["type"] == MessageType.ACCESS_SNAPSHOT:
            session.snapshot_requested = False

    # -- threads ---------------------------------------------------------------------------------

    def _start_pollers(self) -> None:
        if self._halt.is_set() or any(t.name.startswith("worker-poll") for t in self._threads):
            return
        self._spawn(f"worker-poll-{self.bank}", self._poll_loop)
        if self.charge_meter is not None:
            self._spawn(f"worker-charge-{self.bank}", self._charge_loop)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _poll_loop(self) -> None:
        interval = 1.0 / self.poll_hz
        next_at = time.monotonic()
        while not self._halt.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("polling the lock bus failed")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                # Fell behind (a board timing out): poll again now, no burst to catch up.
                next_at, delay = time.monotonic(), 0.0
            self._halt.wait(delay)

    def _charge_loop(self) -> None:
        while not self._halt.wait(self.charge_interval):
            try:
                self.read_charge_once()
            except Exception:
                log.exception("charge tracking failed")

    def _start_reader(self) -> None:
        if self.badge_reader_path is not None:
            self._spawn(f"worker-nfc-{self.bank}", self._reader_loop)

    def _reader_loop(self) -> None:
        """Keep the badge reader running; reopen it after it fails (unplugged, say)."""
        from devices.readers.nfc import BadgeReader, BadgeReaderError

        path = self.badge_reader_path
        assert path is not None
        while not self._halt.is_set():
            reader = BadgeReader(path, self._on_tap)
            self._reader = reader
            try:
                thread = reader.start_in_thread(name=f"badge-reader {path}")
            except BadgeReaderError as exc:
                log.error("%s; retrying in 5 s", exc)
            else:
                while thread.is_alive() and not self._halt.is_set():
                    thread.join(0.5)
                reader.stop()
                if reader.error is not None:
                    log.error("badge reader failed: %s; reopening in 5 s", reader.error)
            self._halt.wait(5)

    def _on_tap(self, uid: str) -> None:
        try:
            self.submit_badge(uid)
        except ValueError as exc:
            # A card no badge can be (a 3-byte UID, say): nothing to decide on.
            log.warning("ignoring a card: %s", exc)

    def _shutdown(self) -> None:
        self._halt.set()
        reader = self._reader
        if reader is not None:
            reader.stop()
        self._commands.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
            if thread.is_alive():
                log.warning("thread %s did not stop", thread.name)
        self._finished = True
        self.journal.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- command line -----------------------------------------------------------------------------


async def _serve(worker: BankWorker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker from the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    token, server_key = check_arguments(parser, args)
    registers: dict[int, int] | None = None
    if args.charge_registers:
        from devices.drivers.modbus_meter import parse_register_map

        try:
            registers = parse_register_map(args.charge_registers)
        except ValueError as exc:
            parser.error(f"--charge-registers: {exc}")

    from devices.drivers.base import open_lock_bus

    try:
        lock_bus = open_lock_bus(args.protocol, args.lock_port, invert_hook=args.invert_hook)
    except (LockBoardError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    meter: Any = None
    try:
        if args.charge_port and registers is not None:
            from devices.drivers.modbus_meter import ModbusCurrentMeter

            meter = ModbusCurrentMeter(args.charge_port, registers=registers)
        worker = BankWorker(
            args.server,
            args.bank,
            token,
            lock_bus,
            server_key=server_key,
            badge_reader_path=None if args.nfc.lower() == "none" else args.nfc,
            charge_meter=meter,
            journal_path=args.journal or f"./lockerhub-worker-{args.bank}.sqlite3",
            kiosk_port=args.kiosk_port,
            poll_hz=args.poll_hz,
        )
        asyncio.run(_serve(worker))
    except WorkerRejected as exc:
        log.error("stopping: %s", exc)
        return exc.exit_status
    except Exception:
        log.exception("the bank worker failed")
        return EXIT_FAILURE
    finally:
        close = getattr(meter, "close", None)
        if callable(close):
            close()
        lock_bus.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
