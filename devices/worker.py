"""The bank worker: runs next to one locker bank and connects it to the server.

It owns the serial lock bus, the NFC badge reader and the optional charge meter, and speaks the
protocol of ``docs/device-protocol.md`` over one WebSocket::

    LOCKERHUB_BANK_TOKEN=... python -m devices.worker --server wss://lockerhub.example.com \\
        --bank BANK-A --lock-port /dev/ttyUSB0 --protocol kerong-cu16 --nfc usb:072f:2200

Everything it observes (badge taps, doors, item presence, charge states, command results) is
first written to a small SQLite journal and only then sent; an event leaves the journal when
the server acknowledges it, so nothing is lost across disconnects, crashes or power cuts.

This module must not import Django: the worker runs on a small computer without the project's
database or settings.

Exit status of ``main``: 0 after SIGINT/SIGTERM, 1 when the hardware cannot be opened or the
worker fails, 2 for a bad command line, 3 when the server rejects the token (close code 4401),
4 when the server does not know the bank (4404). Those two are not retried: the same token and
bank code would be refused forever, and an operator has to fix the configuration first (a
service manager's restart policy then brings the worker back).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from devices.charge import ChargeThresholds, ChargeTracker
from devices.drivers.base import LOCKS_PER_BOARD, BoardStatus, LockBoardError, LockBus

# Named explicitly: under "python -m" __name__ is "__main__".
log = logging.getLogger("devices.worker")

PROTOCOL_VERSION = "1"
CLOSE_BAD_TOKEN = 4401
CLOSE_UNKNOWN_BANK = 4404

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BAD_TOKEN = 3
EXIT_UNKNOWN_BANK = 4

TOKEN_ENV = "LOCKERHUB_BANK_TOKEN"  # noqa: S105 - the name of the variable, not a token
MIN_POLL_HZ = 5.0
DEFAULT_HEARTBEAT_SECONDS = 5.0
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
# Results of executed commands are kept this long after the command expired, so a late
# redelivery is answered with its original result instead of "expired".
COMMAND_MEMORY_SECONDS = 24 * 3600.0

COMMAND_STATUSES = frozenset({"done", "failed", "expired"})


def utc_now() -> datetime:
    """The worker's clock, in UTC."""
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# -- the journal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRecord:
    """What the journal remembers of one command id."""

    id: str
    status: str  # "started" while the unlock runs, then one of COMMAND_STATUSES
    detail: str


class Journal:
    """The worker's durable memory: a small SQLite file next to the bank.

    It holds the worker id (made once, when the file is created), the next event sequence
    number, every event not yet acknowledged by the server (in ``seq`` order), and the
    commands already executed with their results. :meth:`append` has committed the event to
    disk (``synchronous=FULL``) when it returns, so an event is never sent before it is safe.

    One connection is shared by all threads behind a lock. Unacknowledged events are mirrored
    in memory so that the sender can read them without waiting for a disk write of another
    thread; the badge path (append, then send) then costs one commit and no query.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10
        )
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL may lose the last commits on power loss; FULL makes each commit durable.
        db.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, status TEXT NOT NULL,"
                " detail TEXT NOT NULL, keep_until REAL NOT NULL)"
            )
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('worker_id', ?)",
                (str(uuid.uuid4()),),
            )
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', '1')")
            self.worker_id: str = self._meta("worker_id")
            self._next_seq = int(self._meta("next_seq"))
            self._pending: dict[int, str] = dict(
                db.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
            )
        self.prune_commands()

    def __repr__(self) -> str:
        return f"<Journal {self.path} worker_id={self.worker_id}>"

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"journal {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _meta(self, key: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0]

    def _insert_events(
        self, db: sqlite3.Connection, events: Iterable[Mapping[str, Any]]
    ) -> dict[int, str]:
        added: dict[int, str] = {}
        seq = self._next_seq
        for event in events:
            if not isinstance(event.get("type"), str):
                raise ValueError(f"an event needs a type: {event!r}")
            body = dict(event)
            body["seq"] = seq
            body.setdefault("at", _iso(utc_now()))
            text = json.dumps(body, separators=(",", ":"))
            db.execute("INSERT INTO events (seq, body) VALUES (?, ?)", (seq, text))
            added[seq] = text
            seq += 1
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq),))
        return added

    def _commit_added(self, added: dict[int, str]) -> None:
        # Only called after COMMIT: the mirror must never show an event that is not on disk.
        self._pending.update(added)
        if added:
            self._next_seq = max(added) + 1

    # -- events ----------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest sequence number ever given out (0 for a new journal)."""
        with self._lock:
            return self._next_seq - 1

    def append(self, event: Mapping[str, Any]) -> int:
        """Give ``event`` the next seq (and ``at`` if missing), store it durably, return seq."""
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """Like :meth:`append` for several events, in one commit; returns their seqs in order."""
        if not events:
            return []
        with self._lock:
            with self._transaction() as db:
                added = self._insert_events(db, events)
            self._commit_added(added)
            return list(added)

    def ack(self, seq: int) -> int:
        """Forget every event with a seq up to ``seq``; returns how many were removed."""
        with self._lock:
            gone = [s for s in self._pending if s <= seq]
            if not gone:
                return 0
            with self._transaction() as db:
                db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
            for s in gone:
                del self._pending[s]
            return len(gone)

    def pending(self) -> list[dict[str, Any]]:
        """The unacknowledged events, oldest first."""
        return [json.loads(text) for _, text in self.pending_messages()]

    def pending_messages(self, after: int = 0) -> list[tuple[int, str]]:
        """(seq, JSON text) of the unacknowledged events with a seq above ``after``, in order."""
        with self._lock:
            return sorted((s, t) for s, t in self._pending.items() if s > after)

    def advance_seq(self, last_used: int) -> bool:
        """Make sure the next seq is above ``last_used``; True if it had to move.

        The server remembers the highest seq it applied for this worker id. If the journal is
        older than that (restored from a backup, say), new events would reuse seqs the server
        takes for duplicates and silently drops.
        """
        with self._lock:
            if last_used < self._next_seq:
                return False
            with self._transaction() as db:
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(last_used + 1),)
                )
            self._next_seq = last_used + 1
            return True

    # -- commands --------------------------------------------------------------------------

    def command(self, command_id: str) -> CommandRecord | None:
        """What is known of ``command_id``, or None if it was never seen (or long forgotten)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT status, detail FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
        return None if row is None else CommandRecord(command_id, row[0], row[1])

    def claim_command(self, command_id: str, expires_at: datetime) -> CommandRecord | None:
        """Record that ``command_id`` is about to run; None if the caller may run it.

        Otherwise returns what is already known of it and the caller must not run it. The
        claim is durable before the unlock, so a crash in the middle never causes a second
        unlock: the command then stays "started" and is reported as failed.
        """
        keep_until = max(time.time(), expires_at.timestamp()) + COMMAND_MEMORY_SECONDS
        with self._lock:
            existing = self.command(command_id)
            if existing is not None:
                return existing
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO commands (id, status, detail, keep_until) VALUES (?, 'started', '', ?)",
                    (command_id, keep_until),
                )
            return None

    def finish_command(
        self, command_id: str, status: str, detail: str, *, expires_at: datetime | None = None
    ) -> int:
        """Store the result of ``command_id`` and journal its ``command_result``; returns seq.

        Both happen in one commit, so a result is never remembered without being reported.
        """
        if status not in COMMAND_STATUSES:
            raise ValueError(f"unknown command status {status!r}")
        expires = expires_at.timestamp() if expires_at is not None else time.time()
        keep_until = max(time.time(), expires) + COMMAND_MEMORY_SECONDS
        event = {"type": "command_result", "id": command_id, "status": status, "detail": detail}
        with self._lock:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO commands (id, status, detail, keep_until) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                    " detail = excluded.detail, keep_until = MAX(keep_until, excluded.keep_until)",
                    (command_id, status, detail, keep_until),
                )
                added = self._insert_events(db, [event])
            self._commit_added(added)
            return next(iter(added))

    def prune_commands(self, now: float | None = None) -> int:
        """Forget commands whose memory period is over; returns how many."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            return db.execute("DELETE FROM commands WHERE keep_until < ?", (now,)).rowcount

    def close(self) -> None:
        """Close the file. Calling it more than once is harmless."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


# -- configuration and state ------------------------------------------------------------------


class WorkerRejected(Exception):
    """The server refused this worker for good (bad token or unknown bank): do not retry."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_status(self) -> int:
        return EXIT_BAD_TOKEN if self.code == CLOSE_BAD_TOKEN else EXIT_UNKNOWN_BANK


class BadMessage(ValueError):
    """A message from the server that does not follow the protocol."""


@dataclass(frozen=True)
class SlotConfig:
    """One slot as the server configured it."""

    slot: int
    board: int
    lock_index: int
    has_charger: bool


@dataclass
class _SlotState:
    # The state last reported to the server (in a snapshot or event); None = never reported.
    door_open: bool | None = None
    present: bool | None = None
    charge_state: str | None = None
    current_ma: int | None = None
    tracker: ChargeTracker | None = None


class ChargeMeter(Protocol):
    """What the worker needs of a charge meter: current per slot in mA (None = no reading)."""

    def read(self) -> Mapping[int, int | None]: ...


def _int_field(
    message: Mapping[str, Any], name: str, *, low: int = 0, high: int | None = None
) -> int:
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadMessage(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise BadMessage(f"{name} out of range: {value!r}")
    return value


def parse_config(message: Mapping[str, Any]) -> tuple[tuple[SlotConfig, ...], float | None, int]:
    """(slots, heartbeat_seconds, last_acked_seq) of a ``config`` message; raises BadMessage."""
    raw_slots = message.get("slots")
    if not isinstance(raw_slots, list):
        raise BadMessage("config.slots must be a list")
    slots: list[SlotConfig] = []
    for raw in raw_slots:
        if not isinstance(raw, dict):
            raise BadMessage(f"config slot must be an object, got {raw!r}")
        has_charger = raw.get("has_charger", False)
        if not isinstance(has_charger, bool):
            raise BadMessage(f"has_charger must be a boolean, got {has_charger!r}")
        slots.append(
            SlotConfig(
                slot=_int_field(raw, "slot", low=1),
                board=_int_field(raw, "board", high=LOCKS_PER_BOARD - 1),
                lock_index=_int_field(raw, "lock_index", high=LOCKS_PER_BOARD - 1),
                has_charger=has_charger,
            )
        )
    if len({s.slot for s in slots}) != len(slots):
        raise BadMessage("config has a slot number twice")
    if len({(s.board, s.lock_index) for s in slots}) != len(slots):
        raise BadMessage("config has a lock address twice")
    heartbeat = message.get("heartbeat_seconds")
    if heartbeat is not None and (
        isinstance(heartbeat, bool)
        or not isinstance(heartbeat, int | float)
        or not math.isfinite(heartbeat)
        or heartbeat <= 0
    ):
        raise BadMessage(f"heartbeat_seconds must be a positive number, got {heartbeat!r}")
    last_acked = message.get("last_acked_seq", 0)
    if last_acked is None:
        last_acked = 0
    if not isinstance(last_acked, int) or isinstance(last_acked, bool) or last_acked < 0:
        raise BadMessage(f"last_acked_seq must be a non-negative integer, got {last_acked!r}")
    return tuple(sorted(slots, key=lambda s: s.slot)), heartbeat, last_acked


def parse_expiry(value: Any) -> datetime:
    """``expires_at`` of a command as an aware datetime; a naive time is taken as UTC."""
    if not isinstance(value, str):
        raise BadMessage(f"expires_at must be an ISO 8601 string, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadMessage(f"expires_at is not ISO 8601: {value!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def normalise_uid(uid: str | bytes) -> str:
    """A badge UID as upper-case hex without separators (``04:a1:b2:c3`` -> ``04A1B2C3``).

    The server takes 4 to 10 bytes; anything else is refused here, at the source, rather
    than journaled as an event the server would answer with an error.
    """
    if isinstance(uid, bytes | bytearray):
        text = bytes(uid).hex()
    else:
        text = uid.strip().replace(":", "").replace("-", "").replace(" ", "")
    if (
        not 8 <= len(text) <= 20
        or len(text) % 2
        or any(c not in "0123456789abcdefABCDEF" for c in text)
    ):
        raise ValueError(f"a badge UID must be 4 to 10 bytes of hex, got {uid!r}")
    return text.upper()


def server_url(server: str, bank: str) -> str:
    """The bank's WebSocket URL under ``server`` (``http(s)://`` is mapped to ``ws(s)://``)."""
    parts = urllib.parse.urlsplit(server.strip())
    scheme = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"--server must be a ws://, wss://, http:// or https:// URL, got {server!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        # Anything secret in the URL ends up in proxy logs; the token goes in a header.
        raise ValueError("--server must not carry credentials, a query or a fragment")
    if not bank or "/" in bank:
        raise ValueError(f"bad bank code {bank!r}")
    path = parts.path.rstrip("/") + f"/ws/devices/{urllib.parse.quote(bank, safe='')}/"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


class _RedactAuthorization(logging.Filter):
    """Hides the token in websockets' debug log of the request headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "Bearer [redacted]")
        return True


_ws_log = logging.getLogger("devices.worker.websocket")
_ws_log.addFilter(_RedactAuthorization())


# -- the worker ---------------------------------------------------------------------------------


@dataclass
class _Session:
    ws: ClientConnection
    handshaken: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class BankWorker:
    """Connects one locker bank to the server; see the module docstring and the protocol doc.

    ``lock_bus`` is an open :class:`LockBus` (the caller closes it). With ``badge_reader_path``
    the worker runs an NFC :class:`~devices.readers.nfc.BadgeReader` on that nfcpy path; badge
    taps can also be fed in with :meth:`submit_badge`. ``charge_meter`` is anything with a
    ``read() -> {slot: mA | None}`` (e.g. :class:`~devices.drivers.modbus_meter.ModbusCurrentMeter`),
    read every ``charge_interval`` seconds; each charging slot gets a :class:`ChargeTracker`
    with ``charge_thresholds``. ``heartbeat_seconds`` overrides the server's interval.

    :meth:`run` is a coroutine that keeps the connection up (reconnecting with backoff) until
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
        badge_reader_path: str | None = None,
        charge_meter: ChargeMeter | None = None,
        journal_path: str | os.PathLike[str],
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
        self.bank = bank
        self.url = server_url(server, bank)
        self._token = token
        self.lock_bus = lock_bus
        self.badge_reader_path = badge_reader_path
        self.charge_meter = charge_meter
        self.poll_hz = float(poll_hz)
        self.heartbeat_override = heartbeat_seconds
        self.charge_interval = charge_interval
        self.charge_thresholds = charge_thresholds or ChargeThresholds()
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.config_timeout = config_timeout
        self.journal = Journal(journal_path)

        # Guards the slot configuration and the last reported state; held across a bus read
        # and the journal append of what it found, so that a snapshot and the poller never
        # interleave (every change after a snapshot gets a later seq than the snapshot).
        self._state_lock = threading.RLock()
        self._slots: tuple[SlotConfig, ...] = ()
        self._states: dict[int, _SlotState] = {}
        self._board_ok: dict[int, bool] = {}
        self._currents: dict[int, int | None] = {}
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
        # One thread: commands run one after the other, which also makes the journal's
        # executed-id check race-free when a command is delivered twice in a row.
        self._commands = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"worker-commands-{bank}"
        )

    def __repr__(self) -> str:
        return f"<BankWorker {self.bank} {self.url}>"

    @property
    def worker_id(self) -> str:
        return self.journal.worker_id

    @property
    def slots(self) -> tuple[SlotConfig, ...]:
        """The slots of the last config received (empty before the first one)."""
        with self._state_lock:
            return self._slots

    # -- public entry points -----------------------------------------------------------------

    def submit_badge(self, uid: str | bytes) -> int:
        """Journal a badge tap and send it at once; returns its seq. Safe from any thread."""
        if self._finished:
            raise RuntimeError("the worker has stopped")
        uid = normalise_uid(uid)
        seq = self.journal.append({"type": "badge", "uid": uid})
        self._wake()
        log.info("badge %s tapped (seq %d)", uid, seq)
        return seq

    def stop(self) -> None:
        """Ask :meth:`run` to finish; returns at once. Safe from any thread, and repeatable."""
        self._halt.set()
        loop, stop_requested = self._loop, self._stop_requested
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop_requested.set)

    async def run(self) -> None:
        """Keep the bank connected until :meth:`stop`; raises :class:`WorkerRejected`."""
        if self._started:
            raise RuntimeError("a BankWorker runs only once; make a new one")
        self._started = True
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._halt.is_set():
            self._stop_requested.set()
        log.info(
            "bank worker %s starting: server %s, worker id %s, %d event(s) to replay",
            self.bank,
            self.url,
            self.worker_id,
            len(self.journal.pending_messages()),
        )
        try:
            self._start_reader()
            await self._connection_loop()
        finally:
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
                        "type": "hello",
                        "worker_id": self.worker_id,
                        "version": PROTOCOL_VERSION,
                        "last_seq": self.journal.last_seq,
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
            if code == CLOSE_BAD_TOKEN:
                log.error(
                    "server %s rejected the device token of bank %s (close code 4401); "
                    "set the current token (manage.py rotate_bank_token) and restart the worker",
                    self.url,
                    self.bank,
                )
                raise WorkerRejected(code, "the server rejected the device token") from None
            if code == CLOSE_UNKNOWN_BANK:
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
            if kind == "config":
                await self._on_config(session, message)
            elif kind == "ack":
                seq = _int_field(message, "seq")
                await asyncio.to_thread(self.journal.ack, seq)
            elif kind == "command":
                # Serial I/O and journal commits happen on the command thread, never here.
                self._commands.submit(self._run_command, message, utc_now())
            elif kind == "tap_result":
                log.info(
                    "tap result for seq %s: %s (%s) slot %s: %s",
                    message.get("seq"),
                    "granted" if message.get("granted") else "denied",
                    message.get("reason"),
                    message.get("slot"),
                    message.get("message"),
                )
            elif kind == "revoked":
                # Informational: the server decides every tap, nothing is cached here.
                log.info("server: badge %s was revoked", message.get("uid"))
            elif kind == "error":
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
        slots, heartbeat, last_acked = parse_config(message)
        if message.get("bank") not in (None, self.bank):
            log.warning("config is for bank %r, this worker is %r", message.get("bank"), self.bank)
        self._check_polarity(message.get("invert_hook"))
        if self.heartbeat_override is None and heartbeat is not None:
            self._heartbeat_seconds = float(heartbeat)
        await asyncio.to_thread(self._apply_acked, last_acked)
        log.info(
            "config for bank %s: %d slot(s), heartbeat every %g s, server applied up to seq %d",
            message.get("bank", self.bank),
            len(slots),
            self._heartbeat_seconds,
            last_acked,
        )
        if not session.handshaken:
            # Replay starts now, before the snapshot: events go out strictly in seq order, and
            # the snapshot (newest truth) must not be followed by older observations.
            for job in (self._send_loop(session.ws), self._heartbeat_loop(session.ws)):
                task = asyncio.create_task(job)
                task.add_done_callback(lambda t, ws=session.ws: self._session_task_done(t, ws))
                session.tasks.append(task)
        await asyncio.to_thread(self._configure_and_snapshot, slots)
        self._start_pollers()
        session.handshaken = True

    def _check_polarity(self, server_says: Any) -> None:
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
            await self._send(ws, {"type": "heartbeat", "at": _iso(utc_now())})

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

    # -- commands --------------------------------------------------------------------------------

    def _run_command(self, message: dict[str, Any], received_at: datetime) -> None:
        """Execute one ``command`` at most once (on the command thread)."""
        command_id = message.get("id")
        if not isinstance(command_id, str) or not command_id:
            log.warning("ignoring a command without an id: %.200r", message)
            return
        try:
            self._execute_command(command_id, message, received_at)
        except Exception:
            # The journal write itself failed (disk full?): nothing more can be promised.
            log.exception("command %s could not be handled", command_id)
        self._wake()

    def _execute_command(
        self, command_id: str, message: dict[str, Any], received_at: datetime
    ) -> None:
        known = self.journal.command(command_id)
        if known is not None:
            self._report_again(known)
            return
        try:
            expires_at = parse_expiry(message.get("expires_at"))
            if message.get("action") != "unlock":
                raise BadMessage(f"unknown action {message.get('action')!r}")
            board = _int_field(message, "board", high=LOCKS_PER_BOARD - 1)
            lock_index = _int_field(message, "lock_index", high=LOCKS_PER_BOARD - 1)
        except BadMessage as exc:
            log.warning("command %s is malformed: %s", command_id, exc)
            self.journal.finish_command(command_id, "failed", f"bad command: {exc}")
            return
        slot = message.get("slot")
        # Checked against the receive time and again now: a command that waited behind
        # another one must not run late either.
        if received_at >= expires_at or utc_now() >= expires_at:
            detail = f"received at {_iso(received_at)}, expired at {_iso(expires_at)}"
            log.warning("command %s (unlock slot %s) expired: %s", command_id, slot, detail)
            self.journal.finish_command(command_id, "expired", detail, expires_at=expires_at)
            return
        known = self.journal.claim_command(command_id, expires_at)
        if known is not None:
            self._report_again(known)
            return
        try:
            status = self.lock_bus.unlock(board, lock_index)
        except LockBoardError as exc:
            log.error("command %s: unlock of slot %s failed: %s", command_id, slot, exc)
            result, detail = "failed", str(exc)
        except Exception as exc:
            log.exception("command %s: unlock of slot %s failed", command_id, slot)
            result, detail = "failed", f"{type(exc).__name__}: {exc}"
        else:
            result = "done"
            detail = f"unlocked board {board} lock {lock_index}"
            if status.door_closed[lock_index]:
                detail += "; the board still reports the door closed"
            log.info(
                "command %s: unlocked slot %s (board %d lock %d)",
                command_id,
                slot,
                board,
                lock_index,
            )
        self.journal.finish_command(command_id, result, detail, expires_at=expires_at)

    def _report_again(self, known: CommandRecord) -> None:
        if known.status == "started":
            # Claimed by an earlier run that never recorded a result: it stopped mid-unlock.
            # Whether the door opened is unknown, and unlocking again could open it twice.
            log.warning("command %s was interrupted earlier; not executing it again", known.id)
            self.journal.finish_command(
                known.id, "failed", "interrupted: the worker stopped while executing it"
            )
            return
        log.info("command %s already handled (%s); reporting it again", known.id, known.status)
        self.journal.append(
            {
                "type": "command_result",
                "id": known.id,
                "status": known.status,
                "detail": known.detail,
            }
        )

    # -- sensors ---------------------------------------------------------------------------------

    def _configure_and_snapshot(self, slots: tuple[SlotConfig, ...]) -> int | None:
        """Apply a slot configuration and journal a snapshot of the physical state."""
        with self._state_lock:
            previous = {s.slot: s for s in self._slots}
            self._slots = slots
            states: dict[int, _SlotState] = {}
            for cfg in slots:
                old = self._states.get(cfg.slot)
                keep = old is not None and previous.get(cfg.slot) == cfg
                states[cfg.slot] = old if keep and old is not None else _SlotState()
                if (
                    self.charge_meter is not None
                    and cfg.has_charger
                    and states[cfg.slot].tracker is None
                ):
                    states[cfg.slot].tracker = ChargeTracker(self.charge_thresholds)
            self._states = states
            at = utc_now()
            readings = self._read_boards(sorted({s.board for s in slots}))
            entries = []
            for cfg in slots:
                status = readings.get(cfg.board)
                if status is None:
                    # No truth to report; the poller reports it once the board answers.
                    continue
                state = self._states[cfg.slot]
                state.door_open = not status.door_closed[cfg.lock_index]
                state.present = status.present[cfg.lock_index]
                if state.tracker is not None:
                    state.charge_state = self._charge_state(cfg, state)
                entries.append(
                    {
                        "slot": cfg.slot,
                        "door_open": state.door_open,
                        "present": state.present,
                        "charge_state": state.charge_state,
                    }
                )
            seq = self.journal.append({"type": "snapshot", "at": _iso(at), "slots": entries})
        self._wake()
        log.info("snapshot of %d slot(s) journaled as seq %d", len(entries), seq)
        return seq

    def _read_boards(self, boards: Iterable[int]) -> dict[int, BoardStatus]:
        readings: dict[int, BoardStatus] = {}
        for board in boards:
            try:
                readings[board] = self.lock_bus.status(board)
            except LockBoardError as exc:
                if self._board_ok.get(board, True):
                    log.error("lock board %d does not answer: %s", board, exc)
                self._board_ok[board] = False
                continue
            if not self._board_ok.get(board, True):
                log.info("lock board %d answers again", board)
            self._board_ok[board] = True
        return readings

    def poll_once(self) -> list[int]:
        """Read every configured board once and journal what changed; returns the new seqs."""
        with self._state_lock:
            slots = self._slots
            if not slots:
                return []
            at = _iso(utc_now())
            readings = self._read_boards(sorted({s.board for s in slots}))
            events: list[dict[str, Any]] = []
            for cfg in slots:
                status = readings.get(cfg.board)
                if status is not None:
                    events.extend(self._slot_changes(cfg, status, at))
            seqs = self.journal.append_many(events)
        if seqs:
            self._wake()
            for event, seq in zip(events, seqs, strict=True):
                log.debug("seq %d: %s", seq, event)
        return seqs

    def _slot_changes(self, cfg: SlotConfig, status: BoardStatus, at: str) -> list[dict[str, Any]]:
        state = self._states[cfg.slot]
        door_open = not status.door_closed[cfg.lock_index]
        present = status.present[cfg.lock_index]
        events: list[dict[str, Any]] = []
        door_event = {"type": "door", "slot": cfg.slot, "open": door_open, "at": at}
        door_changed = door_open != state.door_open
        # Same order as things happen: the door opens, the item leaves or arrives, the door
        # closes. The server applies them in seq order.
        if door_changed and door_open:
            events.append(door_event)
        if present != state.present:
            state.present = present
            events.append({"type": "presence", "slot": cfg.slot, "present": present, "at": at})
            events.extend(self._charge_changes(cfg, state, at))
        if door_changed and not door_open:
            events.append(door_event)
        state.door_open = door_open
        return events

    def _charge_state(self, cfg: SlotConfig, state: _SlotState) -> str:
        # Called with the state lock held, so the tracker's clock never runs backwards.
        assert state.tracker is not None
        state.current_ma = self._currents.get(cfg.slot)
        return state.tracker.update(state.present, state.current_ma, time.monotonic()).value

    def _charge_changes(self, cfg: SlotConfig, state: _SlotState, at: str) -> list[dict[str, Any]]:
        if state.tracker is None:
            return []
        new = self._charge_state(cfg, state)
        if new == state.charge_state:
            return []
        state.charge_state = new
        return [
            {
                "type": "charge",
                "slot": cfg.slot,
                "state": new,
                "current_ma": state.current_ma,
                "at": at,
            }
        ]

    def read_charge_once(self) -> list[int]:
        """Read the charge meter once and journal charge state changes; returns the new seqs."""
        meter = self.charge_meter
        if meter is None:
            return []
        try:
            currents = dict(meter.read())
        except Exception as exc:
            log.warning("charge meter read failed: %s", exc)
            currents = {}
        with self._state_lock:
            self._currents = {k: (int(v) if v is not None else None) for k, v in currents.items()}
            at = _iso(utc_now())
            events: list[dict[str, Any]] = []
            for cfg in self._slots:
                state = self._states.get(cfg.slot)
                if state is not None and state.tracker is not None and state.present is not None:
                    events.extend(self._charge_changes(cfg, state, at))
            seqs = self.journal.append_many(events)
        if seqs:
            self._wake()
        return seqs

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
            # A card no badge can be (a 3-byte UID, say): nothing the server could decide on.
            log.warning("ignoring a card: %s", exc)

    def _shutdown(self) -> None:
        self._halt.set()
        reader = self._reader
        if reader is not None:
            reader.stop()
        self._commands.shutdown(wait=True, cancel_futures=True)
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


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devices.worker``."""
    parser = argparse.ArgumentParser(
        prog="python -m devices.worker",
        description="Connect a locker bank (lock boards, badge reader, charge meter) to LockerHub.",
    )
    parser.add_argument(
        "--server", required=True, help="base URL, e.g. wss://lockerhub.example.com"
    )
    parser.add_argument("--bank", required=True, help="bank code, e.g. BANK-A")
    parser.add_argument(
        "--token",
        help=f"device token; prefer the {TOKEN_ENV} environment variable (not shown in ps)",
    )
    parser.add_argument(
        "--lock-port", required=True, help="serial port or pyserial URL of the lock bus"
    )
    parser.add_argument(
        "--protocol", default="kerong-cu16", help="lock-board protocol (default: kerong-cu16)"
    )
    parser.add_argument(
        "--nfc", required=True, metavar="DEVICE", help="nfcpy reader path, or 'none'"
    )
    parser.add_argument("--charge-port", help="serial port of the Modbus charge-current meter")
    parser.add_argument("--charge-registers", metavar="MAP", help="slot to meter register map")
    parser.add_argument(
        "--invert-hook", action="store_true", help="this hardware reports 1 for an open door"
    )
    parser.add_argument(
        "--journal", help="journal file (default: ./lockerhub-worker-<BANK>.sqlite3)"
    )
    parser.add_argument(
        "--poll-hz", type=float, default=10.0, help="lock bus polls per second (>= 5)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )
    return parser


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
    token = (os.environ.get(TOKEN_ENV) or "").strip()
    if args.token:
        log.warning("--token is visible to every user in ps; prefer %s", TOKEN_ENV)
        token = args.token.strip()
    if not token:
        parser.error(f"a device token is needed: set {TOKEN_ENV} (or pass --token)")
    if args.poll_hz < MIN_POLL_HZ:
        parser.error(f"--poll-hz must be at least {MIN_POLL_HZ:g}")
    try:
        server_url(args.server, args.bank)
    except ValueError as exc:
        parser.error(str(exc))
    if bool(args.charge_registers) != bool(args.charge_port):
        parser.error("--charge-port and --charge-registers go together")
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
            badge_reader_path=None if args.nfc.lower() == "none" else args.nfc,
            charge_meter=meter,
            journal_path=args.journal or f"./lockerhub-worker-{args.bank}.sqlite3",
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
