"""What the bank worker tests share (no tests here): a fake server speaking protocol version 2,
a signed access snapshot of a small world, the worker running in a thread, and fixtures.

No database and no Django: the fake server is a ``websockets`` server on 127.0.0.1 that plays
the server side of docs/device-protocol.md and signs its snapshots with a test Ed25519 key
(``access.core.sign``/``canonical``), as the real one does. Every wait is bounded, so a broken
worker fails a test instead of hanging the suite.

Test modules bind the fixtures they use at module level (``server = support.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from access import core
from devices.drivers.base import LockBus, open_lock_bus
from devices.emulators.kerong import KerongBoardEmulator
from devices.wire import CloseCode
from devices.worker import BankWorker
from devices.worker_journal import Journal

TOKEN = "lhb_test-token-0123456789"
BANK = "BANK-A"
WAIT = 5.0
# Slots 1-4 on board 0, locks 0-3; slot 4 has no charger.
SLOTS = [{"slot": n, "board": 0, "lock_index": n - 1, "has_charger": n != 4} for n in range(1, 5)]

# The server's signing key for these tests, and the public half the worker is given.
SIGNING_KEY = Ed25519PrivateKey.generate()
SERVER_KEY = core.public_key_text(SIGNING_KEY)
OTHER_KEY = Ed25519PrivateKey.generate()

# The world: Ana (holder 1) and Ben (holder 2) may hold one scanner each, no shift needed;
# Cleo (holder 3) is suspended. Slots 1 and 2 hold scanners, 3 is empty with a charger, 4 is
# empty without one. UNKNOWN is no badge at all.
ANA, BEN, CLEO, UNKNOWN = "04A1B2C3D4E501", "04A1B2C3D4E502", "04A1B2C3D4E503", "04A1B2C3D4E5FF"
SCANNER = 1
UID_KEY = bytes(range(16))
HOUR = 3600.0


def holder_data(
    name: str, *, status: str = "active", max_loans: int = 1, loans: list[list[Any]] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "status": status,
        "rules": [[[SCANNER], False, 0.0, 0.0, max_loans]],
        "shifts": [],
        "loans": loans or [],
    }


def loan(
    checkout: int, asset: str, *, slot: int = 1, due_in: float = 4 * HOUR, status: str = "active"
) -> list[Any]:
    """A loan (active unless said) of a scanner taken from ``slot`` of this bank, as the
    snapshot lists it."""
    now = time.time()
    return [checkout, SCANNER, status, now + due_in, now - HOUR, BANK, slot, asset]


def world(
    *,
    version: int = 1,
    bank: str = BANK,
    issued_at: float | None = None,
    valid_for: float = 12 * HOUR,
    holders: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Snapshot data (``Snapshot.to_data`` form) of the test world."""
    issued = time.time() if issued_at is None else issued_at
    badge_owner = {ANA: 1, BEN: 2, CLEO: 3}
    return {
        "bank": bank,
        "version": version,
        "issued_at": issued,
        "valid_until": issued + valid_for,
        "uid_key": UID_KEY.hex(),
        "return_grace": 1800.0,
        "types": {str(SCANNER): ["Scanner", False, 12 * HOUR]},
        "badges": {
            core.hash_uid(UID_KEY, uid): [holder, "active", issued - 86400, None, ""]
            for uid, holder in badge_owner.items()
        },
        "holders": holders
        or {
            "1": holder_data("Ana"),
            "2": holder_data("Ben"),
            "3": holder_data("Cleo", status="suspended"),
        },
        "slots": {
            "1": [True, False, "SC-1", SCANNER, "available"],
            "2": [True, False, "SC-2", SCANNER, "available"],
            "3": [True, False, None, None, None],
            "4": [False, False, None, None, None],
        },
    }


def signed(kind: str, data: dict[str, Any], key: Ed25519PrivateKey = SIGNING_KEY) -> dict[str, str]:
    """An ``access_snapshot``/``access_delta`` message as the server sends it."""
    text = core.canonical(data)
    return {"type": kind, "data": text, "sig": core.sign(key, text)}


def journal_world(path: Path, data: dict[str, Any], *, timeout: float = 30) -> None:
    """Prepare a journal as a worker that once talked to the server leaves it: the config and
    a signed snapshot, no server needed."""
    journal = Journal(path)
    message = signed("access_snapshot", data)
    journal.store_access("snapshot", message["data"], message["sig"])
    journal.save_config(config_message(reservation_timeout=timeout))
    journal.close()


def config_message(*, reservation_timeout: float = 30, invert_hook: bool = False) -> dict[str, Any]:
    return {
        "type": "config",
        "bank": BANK,
        "slots": SLOTS,
        "invert_hook": invert_hook,
        "door_held_open_seconds": 60,
        "heartbeat_seconds": 5,
        "reservation_timeout_seconds": reservation_timeout,
    }


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_udp_port() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # nfcpy's udp driver fails on ports that have a service name; skip those.
        try:
            socket.getservbyport(port, "tcp")
        except OSError:
            return port
    raise RuntimeError("no usable UDP port")


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``predicate`` every 10 ms until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.01)
    return result


class FakeServer:
    """The server side of the protocol, on its own event loop thread.

    Records every request and message (with the number of the connection it came on), acks
    every event unless ``auto_ack`` is off, and remembers the highest acked seq per worker id
    for the next config's ``last_acked_seq``. On every hello it sends the config and, when
    ``access`` is set, that snapshot data signed with a new version (as the server does);
    a ``snapshot_request`` is answered the same way.
    """

    def __init__(self, token: str = TOKEN, bank: str = BANK) -> None:
        self.token = token
        self.bank = bank
        self.auto_ack = True
        self.answer_snapshot_requests = True
        self.invert_hook = False
        self.reservation_timeout = 30.0
        self.access: dict[str, Any] | None = world()
        self.version = 0
        self.applied: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.messages: list[tuple[int, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self.connections = 0
        self.port = 0
        self._cond = threading.Condition()
        self._current: ServerConnection | None = None
        self._server: Server | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeServer:
        async def _start() -> int:
            self._server = await serve(self._handler, "127.0.0.1", self.port)
            return self._server.sockets[0].getsockname()[1]

        self.port = self._call(_start())
        return self

    def shutdown(self) -> None:
        """Stop listening and close every connection (1001 going away)."""

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None

        self._call(_stop())

    def close(self) -> None:
        self.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- acting as the server ------------------------------------------------------------

    def send(self, message: dict[str, Any] | str) -> None:
        assert self._current is not None, "no worker connected"
        if isinstance(message, str):
            self._call(self._current.send(message))
        else:
            self._call(self._send_json(self._current, message))

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def whole_snapshot(self) -> dict[str, str]:
        """The ``access`` data as the next version, signed."""
        assert self.access is not None
        self.access = {**self.access, "version": self.next_version()}
        return signed("access_snapshot", self.access)

    def send_delta(self, changes: dict[str, Any], *, base_version: int | None = None) -> int:
        """Change ``access`` (entries of ``types``/``badges``/``holders``/``slots``, None for
        one that goes; or a top-level field such as ``valid_until``), send the signed delta,
        and return its version. ``base_version`` overrides the one the delta follows."""
        assert self.access is not None
        old = self.access
        new = copy.deepcopy(old)
        for part, value in changes.items():
            if part not in ("types", "badges", "holders", "slots"):
                new[part] = value
                continue
            for key, entry in value.items():
                if entry is None:
                    new[part].pop(key, None)
                else:
                    new[part][key] = entry
        new["version"] = self.next_version()
        delta = core.make_delta(old, new)
        if base_version is not None:
            delta["base_version"] = base_version
        self.access = new
        self.send(signed("access_delta", delta))
        return new["version"]

    def drop(self) -> None:
        """Cut the current connection without a close handshake, like a network failure."""
        ws = self._current
        assert ws is not None
        self.loop.call_soon_threadsafe(ws.transport.abort)

    async def _send_json(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        with self._cond:
            self.sent.append(message)
        await ws.send(json.dumps(message))

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        with self._cond:
            self.connections += 1
            conn = self.connections
            self.requests.append((request.path, dict(request.headers.raw_items())))
            self._cond.notify_all()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            await ws.close(CloseCode.BAD_TOKEN, "bad token")
            return
        if request.path != f"/ws/devices/{self.bank}/":
            await ws.close(CloseCode.UNKNOWN_BANK, "unknown bank")
            return
        try:
            hello = json.loads(await ws.recv())
            self._record(conn, hello)
            worker_id = hello["worker_id"]
            config = config_message(
                reservation_timeout=self.reservation_timeout, invert_hook=self.invert_hook
            )
            config["bank"] = self.bank
            config["last_acked_seq"] = self.applied.get(worker_id, 0)
            await self._send_json(ws, config)
            if self.access is not None:
                await self._send_json(ws, self.whole_snapshot())
            self._current = ws
            async for raw in ws:
                message = json.loads(raw)
                self._record(conn, message)
                seq = message.get("seq")
                if message.get("type") == "snapshot_request" and self.answer_snapshot_requests:
                    await self._send_json(ws, self.whole_snapshot())
                if seq is not None and self.auto_ack:
                    self.applied[worker_id] = max(self.applied.get(worker_id, 0), seq)
                    await ws.send(json.dumps({"type": "ack", "seq": seq}))
        except ConnectionClosed:
            pass

    def _record(self, conn: int, message: dict[str, Any]) -> None:
        with self._cond:
            self.messages.append((conn, message))
            self._cond.notify_all()

    # -- looking at what happened ---------------------------------------------------------

    def wait_until(self, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Wait for ``predicate`` to be truthy; rechecked on every message and every 20 ms."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out; messages: {self.messages}"
                self._cond.wait(min(remaining, 0.02))
        return result

    def of_type(self, kind: str, conn: int | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [
                m for c, m in self.messages if m.get("type") == kind and (conn is None or c == conn)
            ]

    def events(self, conn: int | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [m for c, m in self.messages if "seq" in m and (conn is None or c == conn)]

    def wait_for(self, kind: str, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            hits = [m for m in self.of_type(kind) if all(m.get(k) == v for k, v in fields.items())]
            return hits if len(hits) >= count else None

        return self.wait_until(found)

    def wait_connections(self, count: int) -> None:
        # A connection counts once its hello is in.
        self.wait_until(lambda: len(self.of_type("hello")) >= count)


class RunningWorker:
    """A BankWorker running in a thread with its own event loop."""

    def __init__(self, worker: BankWorker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self.worker.run())
        except BaseException as exc:  # handed to the test
            self.error = exc

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "run() did not return after stop()"
        if self.error is not None:
            raise self.error


class KioskPage:
    """A page listening to a worker's local kiosk feed, on its own event loop thread."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._ws: ClientConnection | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(port), self.loop).result(WAIT)
        self._reader = asyncio.run_coroutine_threadsafe(self._read(), self.loop)

    async def _open(self, port: int) -> None:
        self._ws = await connect(f"ws://127.0.0.1:{port}/", open_timeout=WAIT)

    async def _read(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self._ws:
                with self._cond:
                    self.messages.append(json.loads(raw))
                    self._cond.notify_all()

    def say(self, text: str) -> None:
        assert self._ws is not None
        asyncio.run_coroutine_threadsafe(self._ws.send(text), self.loop).result(WAIT)

    def wait_for(self, kind: str, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        with self._cond:
            while True:
                for message in self.messages:
                    if message.get("type") == kind and all(
                        message.get(k) == v for k, v in fields.items()
                    ):
                        return message
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {kind} {fields}; got {self.messages}"
                self._cond.wait(min(remaining, 0.02))

    def close(self) -> None:
        if self._ws is not None:
            asyncio.run_coroutine_threadsafe(self._ws.close(), self.loop).result(WAIT)
        self._reader.result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[KerongBoardEmulator]:
    with KerongBoardEmulator(boards=(0,)) as emu:
        # Slots 1 and 2 hold their scanners, as the snapshot says.
        emu.set_present(0, 0, True)
        emu.set_present(0, 1, True)
        yield emu


@pytest.fixture
def bus(emulator: KerongBoardEmulator) -> Iterator[LockBus]:
    with open_lock_bus("kerong-cu16", emulator.port, timeout=0.2) as lock_bus:
        yield lock_bus


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer().start()
    yield fake
    fake.close()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite3"


@pytest.fixture
def start_worker(bus: LockBus, journal_path: Path) -> Iterator[Callable[..., RunningWorker]]:
    """Start a worker: ``start_worker(server)`` for one talking to a fake server, or
    ``start_worker()`` for one whose server is nowhere (a closed port)."""
    running: list[RunningWorker] = []

    def start(server: FakeServer | None = None, **kwargs: Any) -> RunningWorker:
        options: dict[str, Any] = {
            "journal_path": journal_path,
            "server_key": SERVER_KEY,
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
        }
        options.update(kwargs)
        token = options.pop("token", TOKEN)
        url = server.base_url if server is not None else f"ws://127.0.0.1:{free_tcp_port()}"
        runner = RunningWorker(BankWorker(url, BANK, token, bus, **options))
        running.append(runner)
        return runner

    yield start
    for runner in running:
        runner.worker.stop()
    for runner in running:
        runner.thread.join(WAIT)


def wait_all_acked(worker: BankWorker) -> None:
    deadline = time.monotonic() + WAIT
    while worker.journal.pending_messages():
        assert time.monotonic() < deadline, worker.journal.pending()
        time.sleep(0.01)


def snapshot_of(server: FakeServer, conn: int | None = None) -> dict[str, Any]:
    """The last ``snapshot`` event (of connection ``conn``), once it is in."""
    server.wait_until(lambda: server.of_type("snapshot", conn))
    return server.of_type("snapshot", conn)[-1]


def wait_configured(worker: BankWorker) -> None:
    """Wait until the worker has read its boards for the configuration it has."""
    wait_until(lambda: worker.slots, what="the worker's slots")


def wait_version(worker: BankWorker, version: int) -> None:
    wait_until(lambda: worker.snapshot_version == version, what=f"snapshot version {version}")


def ready(server: FakeServer, worker: BankWorker) -> None:
    """Wait until the worker has its snapshot event in and holds the server's snapshot."""
    snapshot_of(server)
    wait_version(worker, server.version)
