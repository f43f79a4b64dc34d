"""The bank worker against a real WebSocket peer and the Kerong pty emulator (no database).

Each test starts a small ``websockets`` server on 127.0.0.1 that plays the server side of
docs/device-protocol.md, and runs a :class:`BankWorker` in a thread with its own event loop.
Every wait is bounded, so a broken worker fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from devices.charge import ChargeThresholds
from devices.drivers.base import LockBus, open_lock_bus
from devices.emulators.kerong import KerongBoardEmulator
from devices.emulators.nfc_card import tap
from devices.worker import (
    CLOSE_BAD_TOKEN,
    CLOSE_UNKNOWN_BANK,
    EXIT_BAD_TOKEN,
    BankWorker,
    Journal,
    WorkerRejected,
    main,
    normalise_uid,
    server_url,
)

TOKEN = "lhb_test-token-0123456789"
UID1, UID2, UID3 = "04A1B2C3D4E501", "04A1B2C3D4E502", "04A1B2C3D4E503"
BANK = "BANK-A"
WAIT = 5.0
# Slots 1-4 on board 0, locks 0-3; slot 4 has no charger.
SLOTS = [{"slot": n, "board": 0, "lock_index": n - 1, "has_charger": n != 4} for n in range(1, 5)]
REPO = Path(__file__).resolve().parents[2]


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


class FakeServer:
    """The server side of the protocol, on its own event loop thread.

    Records every request and message (with the number of the connection it came on),
    answers badges with a tap_result and acks every event unless ``auto_ack`` is off, and
    remembers the highest acked seq per worker id for the next config's ``last_acked_seq``.
    """

    def __init__(self, token: str = TOKEN, bank: str = BANK) -> None:
        self.token = token
        self.bank = bank
        self.auto_ack = True
        self.invert_hook = False
        self.applied: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.messages: list[tuple[int, dict[str, Any]]] = []
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
        text = message if isinstance(message, str) else json.dumps(message)
        assert self._current is not None, "no worker connected"
        self._call(self._current.send(text))

    def drop(self) -> None:
        """Cut the current connection without a close handshake, like a network failure."""
        ws = self._current
        assert ws is not None
        self.loop.call_soon_threadsafe(ws.transport.abort)

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        with self._cond:
            self.connections += 1
            conn = self.connections
            self.requests.append((request.path, dict(request.headers.raw_items())))
            self._cond.notify_all()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            await ws.close(CLOSE_BAD_TOKEN, "bad token")
            return
        if request.path != f"/ws/devices/{self.bank}/":
            await ws.close(CLOSE_UNKNOWN_BANK, "unknown bank")
            return
        try:
            hello = json.loads(await ws.recv())
            self._record(conn, hello)
            worker_id = hello["worker_id"]
            config = {
                "type": "config",
                "bank": self.bank,
                "slots": SLOTS,
                "invert_hook": self.invert_hook,
                "door_held_open_seconds": 60,
                "heartbeat_seconds": 5,
                "last_acked_seq": self.applied.get(worker_id, 0),
            }
            await ws.send(json.dumps(config))
            self._current = ws
            async for raw in ws:
                message = json.loads(raw)
                self._record(conn, message)
                seq = message.get("seq")
                if message.get("type") == "badge":
                    result = {"type": "tap_result", "seq": seq, "granted": False}
                    result |= {"reason": "test", "message": "Test.", "slot": None}
                    await ws.send(json.dumps(result))
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


@pytest.fixture
def emulator() -> Iterator[KerongBoardEmulator]:
    with KerongBoardEmulator(boards=(0,)) as emu:
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
def start_worker(
    server: FakeServer, bus: LockBus, journal_path: Path
) -> Iterator[Callable[..., RunningWorker]]:
    running: list[RunningWorker] = []

    def start(**kwargs: Any) -> RunningWorker:
        options: dict[str, Any] = {
            "journal_path": journal_path,
            "backoff_initial": 0.05,
            "backoff_max": 0.2,
        }
        options.update(kwargs)
        token = options.pop("token", TOKEN)
        runner = RunningWorker(BankWorker(server.base_url, BANK, token, bus, **options))
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
    server.wait_until(lambda: server.of_type("snapshot", conn))
    return server.of_type("snapshot", conn)[-1]


# -- connection and handshake -------------------------------------------------------------------


def test_token_goes_in_the_header_never_in_the_url_or_the_log(server, start_worker, caplog):
    caplog.set_level(logging.DEBUG)
    runner = start_worker()
    server.wait_connections(1)
    path, headers = server.requests[0]
    assert path == f"/ws/devices/{BANK}/"
    assert TOKEN not in path
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    snapshot_of(server)
    runner.stop()
    # (The fake server's own debug log shows the header it received; only the worker's counts.)
    worker_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("devices.worker")
    )
    assert TOKEN not in worker_log
    # websockets' debug log of the request headers was there, redacted.
    assert "Authorization: Bearer [redacted]" in worker_log


def test_server_url_mapping():
    assert server_url("http://h:8000", "BANK-A") == "ws://h:8000/ws/devices/BANK-A/"
    assert server_url("https://h/lh/", "B1") == "wss://h/lh/ws/devices/B1/"
    assert server_url("wss://h", "B1") == "wss://h/ws/devices/B1/"
    for bad in ("ftp://h", "h:8000", "wss://h/?token=x", "wss://u:p@h"):
        with pytest.raises(ValueError, match="--server"):
            server_url(bad, "B1")


def test_handshake_and_snapshot_show_the_physical_state(emulator, server, start_worker):
    emulator.open_door(0, 1)
    emulator.set_present(0, 0, True)
    emulator.set_present(0, 3, True)
    runner = start_worker()
    snapshot = snapshot_of(server)
    (hello,) = server.of_type("hello")
    assert hello["worker_id"] == runner.worker.worker_id
    assert hello["version"] == "1"
    assert hello["last_seq"] == 0
    # The hello comes first and the snapshot is the first event of the connection.
    assert server.messages[0][1]["type"] == "hello"
    assert server.events()[0] is snapshot
    assert snapshot["seq"] == 1
    assert datetime.fromisoformat(snapshot["at"]).utcoffset() is not None
    assert snapshot["slots"] == [
        {"slot": 1, "door_open": False, "present": True, "charge_state": None},
        {"slot": 2, "door_open": True, "present": False, "charge_state": None},
        {"slot": 3, "door_open": False, "present": False, "charge_state": None},
        {"slot": 4, "door_open": False, "present": True, "charge_state": None},
    ]
    runner.stop()


def test_door_and_presence_changes_become_events_in_seq_order(emulator, server, start_worker):
    runner = start_worker()
    snapshot = snapshot_of(server)
    emulator.open_door(0, 2)
    (opened,) = server.wait_for("door", slot=3, open=True)
    emulator.set_present(0, 2, True)
    (arrived,) = server.wait_for("presence", slot=3, present=True)
    emulator.close_door(0, 2)
    (closed,) = server.wait_for("door", slot=3, open=False)
    assert snapshot["seq"] < opened["seq"] < arrived["seq"] < closed["seq"]
    seqs = [e["seq"] for e in server.events()]
    assert seqs == list(range(1, len(seqs) + 1))
    # Nothing changed on the other slots, so nothing was reported about them.
    assert {e["slot"] for e in server.events() if e["type"] in {"door", "presence"}} == {3}
    runner.stop()


def test_an_unconfigured_lock_is_not_reported(emulator, server, start_worker):
    runner = start_worker()
    snapshot_of(server)
    emulator.open_door(0, 9)  # no slot has lock 9
    emulator.open_door(0, 0)
    server.wait_for("door", slot=1, open=True)
    assert [e["slot"] for e in server.of_type("door")] == [1]
    runner.stop()


def test_heartbeats_carry_no_seq(server, start_worker):
    runner = start_worker(heartbeat_seconds=0.1)
    beats = server.wait_for("heartbeat", count=2)
    assert all("seq" not in b and datetime.fromisoformat(b["at"]) for b in beats)
    runner.stop()


def test_badge_is_sent_at_once(server, start_worker, caplog):
    caplog.set_level(logging.INFO, logger="devices.worker")
    # Slow polling: a badge that waited for a poll tick would show up here.
    runner = start_worker(poll_hz=5)
    snapshot_of(server)
    latencies = []
    for i in range(5):
        started = time.monotonic()
        seq = runner.worker.submit_badge(f"04:a1:b2:c3:d4:e5:{i:02x}")
        server.wait_for("badge", seq=seq)
        latencies.append(time.monotonic() - started)
    badges = server.of_type("badge")
    assert [b["uid"] for b in badges] == [f"04A1B2C3D4E5{i:02X}" for i in range(5)]
    assert statistics.median(latencies) < 0.1, latencies
    server.wait_until(lambda: "tap result for seq" in caplog.text)
    runner.stop()


def test_normalise_uid():
    assert normalise_uid("04a1b2c3") == "04A1B2C3"
    assert normalise_uid(" 04-a1-b2-c3-d4-e5-f6 ") == "04A1B2C3D4E5F6"
    assert normalise_uid(b"\x04\xa1\xb2\xc3") == "04A1B2C3"
    # The server takes 4 to 10 bytes of hex.
    for bad in ("", "04a1b2", "04a1b2c", "zza1b2c3", "04" * 11):
        with pytest.raises(ValueError, match="hex"):
            normalise_uid(bad)


# -- commands -------------------------------------------------------------------------------------


CMD1, OLD, MUTED, BAD, AFTER, HALF = (str(uuid.uuid4()) for _ in range(6))


def unlock(slot: int, *, expires_in: float = 30, command_id: str = CMD1) -> dict[str, Any]:
    return {
        "type": "command",
        "id": command_id,
        "action": "unlock",
        "slot": slot,
        "board": 0,
        "lock_index": slot - 1,
        "expires_at": iso_in(expires_in),
    }


def test_command_runs_once_even_when_delivered_twice(emulator, server, start_worker):
    runner = start_worker()
    snapshot_of(server)
    command = unlock(2)
    server.send(command)
    server.send(command)
    results = server.wait_for("command_result", count=2, id=CMD1)
    assert [r["status"] for r in results] == ["done", "done"]
    assert results[0]["seq"] < results[1]["seq"]
    assert [(b, i) for _, b, i in emulator.unlock_log] == [(0, 1)]
    # The door the unlock opened is reported by the poller.
    server.wait_for("door", slot=2, open=True)
    # A third delivery, much later, is answered from the journal as well.
    server.send(command)
    server.wait_for("command_result", count=3, id=CMD1)
    assert len(emulator.unlock_log) == 1
    runner.stop()


def test_expired_command_is_never_executed(emulator, server, start_worker):
    runner = start_worker()
    snapshot_of(server)
    server.send(unlock(1, expires_in=-1, command_id=OLD))
    (result,) = server.wait_for("command_result", id=OLD)
    assert result["status"] == "expired"
    # Delivered again (still expired), it is reported again without running.
    server.send(unlock(1, expires_in=-1, command_id=OLD))
    server.wait_for("command_result", count=2, id=OLD, status="expired")
    time.sleep(0.2)
    assert emulator.unlock_log == []
    runner.stop()


def test_unlock_failure_is_reported(emulator, server, start_worker):
    runner = start_worker()
    snapshot_of(server)
    emulator.set_mute(0, True)
    server.send(unlock(1, command_id=MUTED))
    (result,) = server.wait_for("command_result", id=MUTED)
    assert result["status"] == "failed"
    assert "did not answer" in result["detail"]
    runner.stop()


# -- the journal across reconnects and restarts ------------------------------------------------------


def test_unacked_events_are_replayed_after_a_drop_and_acked_ones_are_not(server, start_worker):
    runner = start_worker()
    snapshot_of(server, conn=1)  # acked: must never come back
    server.auto_ack = False
    seqs = [runner.worker.submit_badge(uid) for uid in (UID1, UID2, UID3)]
    server.wait_until(lambda: len(server.of_type("badge", conn=1)) == 3)
    server.drop()
    server.wait_connections(2)
    # The snapshot of the new connection comes after the replay, with a fresh seq.
    new_snapshot = snapshot_of(server, conn=2)
    replayed = server.events(conn=2)
    assert [e["seq"] for e in replayed[:3]] == seqs
    assert [e["uid"] for e in replayed[:3]] == [UID1, UID2, UID3]
    assert server.of_type("badge", conn=1) == server.of_type("badge", conn=2)
    assert new_snapshot["seq"] == seqs[-1] + 1
    assert [e["seq"] for e in replayed] == [*seqs, new_snapshot["seq"]]
    first_snapshot = server.of_type("snapshot", conn=1)[0]
    assert first_snapshot not in replayed
    runner.stop()


def test_events_survive_a_worker_restart(server, start_worker, journal_path):
    first = start_worker()
    snapshot_of(server, conn=1)
    server.auto_ack = False
    seqs = [first.worker.submit_badge(uid) for uid in (UID1, UID2)]
    server.wait_until(lambda: len(server.of_type("badge")) == 2)
    worker_id = first.worker.worker_id
    first.stop()
    server.auto_ack = True
    second = start_worker()  # same journal file
    server.wait_connections(2)
    hello = server.of_type("hello", conn=2)[0]
    assert hello["worker_id"] == worker_id
    assert hello["last_seq"] == seqs[-1]
    server.wait_until(lambda: server.of_type("snapshot", conn=2))
    replayed = server.events(conn=2)
    assert [(e["type"], e["seq"]) for e in replayed] == [
        ("badge", seqs[0]),
        ("badge", seqs[1]),
        ("snapshot", seqs[1] + 1),
    ]
    wait_all_acked(second.worker)
    second.stop()
    # Everything was acked this time: a third run replays nothing.
    journal = Journal(journal_path)
    assert journal.pending() == []
    journal.close()
    third = start_worker()
    server.wait_connections(3)
    snapshot_of(server, conn=3)
    assert [e["type"] for e in server.events(conn=3)] == ["snapshot"]
    third.stop()


def test_config_last_acked_seq_drops_what_the_server_already_has(server, start_worker):
    runner = start_worker()
    snapshot_of(server, conn=1)
    server.auto_ack = False
    seqs = [runner.worker.submit_badge(uid) for uid in (UID1, UID2, UID3)]
    server.wait_until(lambda: len(server.of_type("badge", conn=1)) == 3)
    # The server applied the first two but its acks were lost with the connection.
    server.applied[runner.worker.worker_id] = seqs[1]
    server.drop()
    server.wait_connections(2)
    snapshot_of(server, conn=2)
    assert [e["seq"] for e in server.events(conn=2)] == [seqs[2], seqs[2] + 1]
    runner.stop()


def test_malformed_messages_and_errors_do_not_kill_the_worker(emulator, server, start_worker):
    runner = start_worker()
    snapshot_of(server)
    for message in (
        "this is not json",
        "[1, 2, 3]",
        {"no": "type"},
        {"type": "no_such_type"},
        {"type": "ack", "seq": "three"},
        {"type": "config", "slots": "all of them"},
        {"type": "command", "action": "unlock"},
        {"type": "command", "id": BAD, "action": "unlock", "slot": 1},
        {"type": "error", "code": "bad_message", "detail": "test", "seq": None},
        {"type": "revoked", "uid": UID1},
    ):
        server.send(message)
    (bad,) = server.wait_for("command_result", id=BAD)
    assert bad["status"] == "failed"
    server.send(unlock(4, command_id=AFTER))
    server.wait_for("command_result", id=AFTER, status="done")
    assert [(b, i) for _, b, i in emulator.unlock_log] == [(0, 3)]
    assert server.connections == 1
    runner.stop()


def test_reconnects_with_backoff_after_the_server_goes_away(server, start_worker, caplog):
    caplog.set_level(logging.INFO, logger="devices.worker")
    runner = start_worker(backoff_initial=0.1, backoff_max=0.4)
    snapshot_of(server, conn=1)
    server.shutdown()

    def delays() -> list[float]:
        return [float(d) for d in re.findall(r"reconnecting to \S+ in ([\d.]+) s", caplog.text)]

    server.wait_until(lambda: len(delays()) >= 5, timeout=WAIT)
    server.start()  # same port
    server.wait_connections(2)
    snapshot_of(server, conn=2)
    observed = delays()
    # 0.1 s doubling to 0.4 s, each with jitter in [b/2, b] (logged with two decimals).
    assert 0.05 <= observed[0] <= 0.1
    assert 0.1 <= observed[1] <= 0.2
    assert all(0.2 <= d <= 0.4 for d in observed[2:5])
    # A successful handshake resets the backoff.
    server.drop()
    server.wait_connections(3)
    assert 0.05 <= delays()[len(observed)] <= 0.1
    runner.stop()


def test_a_rejected_token_stops_the_worker_for_good(server, start_worker):
    runner = start_worker(token="lhb_wrong")
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()
    assert isinstance(runner.error, WorkerRejected)
    assert runner.error.code == CLOSE_BAD_TOKEN
    assert server.connections == 1


def test_an_unknown_bank_stops_the_worker(server, bus, journal_path):
    server.bank = "BANK-Z"
    worker = BankWorker(server.base_url, BANK, TOKEN, bus, journal_path=journal_path)
    with pytest.raises(WorkerRejected) as info:
        asyncio.run(asyncio.wait_for(worker.run(), WAIT))
    assert info.value.code == CLOSE_UNKNOWN_BANK


def test_stop_before_run_returns_at_once(bus, journal_path):
    worker = BankWorker("ws://127.0.0.1:9", BANK, TOKEN, bus, journal_path=journal_path)
    worker.stop()
    asyncio.run(asyncio.wait_for(worker.run(), WAIT))


# -- the command line ---------------------------------------------------------------------------


def test_main_takes_the_token_from_the_environment(server, emulator, journal_path, monkeypatch):
    monkeypatch.setenv("LOCKERHUB_BANK_TOKEN", "lhb_rotated-away")
    argv = [
        "--server",
        f"http://127.0.0.1:{server.port}",
        "--bank",
        BANK,
        "--lock-port",
        emulator.port,
        "--protocol",
        "kerong-cu16",
        "--nfc",
        "none",
        "--journal",
        str(journal_path),
    ]
    assert main(argv) == EXIT_BAD_TOKEN
    assert server.requests[0][1]["Authorization"] == "Bearer lhb_rotated-away"
    monkeypatch.delenv("LOCKERHUB_BANK_TOKEN")
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_the_worker_does_not_import_django():
    code = "import sys, devices.worker; sys.exit(any(m.startswith('django') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30, check=False)
    assert done.returncode == 0


# -- the journal on its own -------------------------------------------------------------------------


def test_journal_survives_reopening(journal_path):
    journal = Journal(journal_path)
    worker_id = journal.worker_id
    assert journal.last_seq == 0
    assert journal.append({"type": "badge", "uid": "01"}) == 1
    assert journal.append_many([{"type": "door", "slot": 1, "open": True}] * 2) == [2, 3]
    journal.close()
    journal.close()

    journal = Journal(journal_path)
    assert journal.worker_id == worker_id
    assert journal.last_seq == 3
    assert [e["seq"] for e in journal.pending()] == [1, 2, 3]
    assert journal.pending()[0]["uid"] == "01"
    assert datetime.fromisoformat(journal.pending()[0]["at"]).utcoffset() == timedelta(0)
    journal.close()
    other = Journal(journal_path.with_name("other.sqlite3"))
    assert other.worker_id != worker_id
    other.close()


def test_journal_ack_semantics(journal_path):
    journal = Journal(journal_path)
    for n in range(5):
        journal.append({"type": "badge", "uid": f"{n:02X}"})
    assert journal.ack(2) == 2
    assert [e["seq"] for e in journal.pending()] == [3, 4, 5]
    assert journal.ack(2) == 0  # duplicate ack
    assert journal.ack(0) == 0
    assert [s for s, _ in journal.pending_messages(after=3)] == [4, 5]
    assert journal.ack(99) == 3
    assert journal.pending() == []
    # Sequence numbers are never reused, even once everything is acked and reopened.
    journal.close()
    journal = Journal(journal_path)
    assert journal.append({"type": "badge", "uid": "FF"}) == 6
    assert journal.advance_seq(3) is False
    assert journal.advance_seq(10) is True
    assert journal.append({"type": "badge", "uid": "FF"}) == 11
    journal.close()


def test_journal_commands(journal_path):
    journal = Journal(journal_path)
    expires = datetime.now(UTC) + timedelta(minutes=1)
    assert journal.command("c1") is None
    assert journal.claim_command("c1", expires) is None
    assert journal.claim_command("c1", expires).status == "started"
    seq = journal.finish_command("c1", "done", "unlocked", expires_at=expires)
    (event,) = journal.pending()
    assert event == {
        "type": "command_result",
        "id": "c1",
        "status": "done",
        "detail": "unlocked",
        "seq": seq,
        "at": event["at"],
    }
    journal.close()
    journal = Journal(journal_path)
    assert journal.command("c1").status == "done"
    assert journal.claim_command("c1", expires).detail == "unlocked"
    with pytest.raises(ValueError, match="status"):
        journal.finish_command("c2", "maybe", "")
    # Forgotten a day after expiry, not before.
    assert journal.prune_commands(now=time.time() + 3600) == 0
    assert journal.prune_commands(now=time.time() + 2 * 86400) == 1
    assert journal.command("c1") is None
    journal.close()


def test_journal_is_thread_safe(journal_path):
    journal = Journal(journal_path)
    seqs: list[int] = []
    lock = threading.Lock()

    def append_many() -> None:
        for _ in range(25):
            seq = journal.append({"type": "badge", "uid": "01"})
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=append_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(seqs) == list(range(1, 101))
    assert [e["seq"] for e in journal.pending()] == list(range(1, 101))
    journal.close()


def test_interrupted_command_is_not_run_again(emulator, server, start_worker, journal_path):
    # A previous run claimed the command and died before recording the result.
    journal = Journal(journal_path)
    journal.claim_command(HALF, datetime.now(UTC) + timedelta(minutes=1))
    journal.close()
    runner = start_worker()
    snapshot_of(server)
    server.send(unlock(1, command_id=HALF))
    (result,) = server.wait_for("command_result", id=HALF)
    assert result["status"] == "failed"
    assert "interrupted" in result["detail"]
    assert emulator.unlock_log == []
    runner.stop()


# -- charge tracking and configuration checks ---------------------------------------------------------


class FakeMeter:
    """A charge meter whose currents the test sets; a slot missing from it reads None."""

    def __init__(self) -> None:
        self.currents: dict[int, int | None] = {}
        self.lock = threading.Lock()

    def set(self, slot: int, current_ma: int | None) -> None:
        with self.lock:
            self.currents[slot] = current_ma

    def read(self) -> dict[int, int | None]:
        with self.lock:
            return dict(self.currents)


def test_charge_states_follow_presence_and_current(emulator, server, start_worker):
    meter = FakeMeter()
    meter.set(1, 800)
    emulator.set_present(0, 0, True)
    runner = start_worker(
        charge_meter=meter,
        charge_interval=0.05,
        charge_thresholds=ChargeThresholds(dwell_seconds=0),
    )
    slots = {s["slot"]: s for s in snapshot_of(server)["slots"]}
    # No meter reading yet when the snapshot is taken, so a present device is unknown.
    assert slots[1]["charge_state"] == "unknown"
    assert slots[2]["charge_state"] == "empty"
    assert slots[4]["charge_state"] is None  # no charger in slot 4
    (charging,) = server.wait_for("charge", slot=1, state="charging")
    assert charging["current_ma"] == 800
    meter.set(1, 20)  # trickle after charging: full
    (charged,) = server.wait_for("charge", slot=1, state="charged")
    assert charged["current_ma"] == 20
    emulator.set_present(0, 0, False)
    server.wait_for("presence", slot=1, present=False)
    (empty,) = server.wait_for("charge", slot=1, state="empty")
    assert charging["seq"] < charged["seq"] < empty["seq"]
    assert {e["slot"] for e in server.of_type("charge")} == {1}
    runner.stop()


def test_polarity_mismatch_with_the_server_is_logged(server, start_worker, caplog):
    caplog.set_level(logging.ERROR, logger="devices.worker")
    server.invert_hook = True  # the bus in these tests runs with normal polarity
    runner = start_worker()
    snapshot_of(server)
    runner.stop()
    assert "fix --invert-hook" in caplog.text


def test_main_rejects_bad_charge_options(emulator, journal_path, monkeypatch):
    monkeypatch.setenv("LOCKERHUB_BANK_TOKEN", TOKEN)
    base = ["--server", "ws://127.0.0.1:9", "--bank", BANK, "--lock-port", emulator.port]
    base += ["--nfc", "none", "--journal", str(journal_path)]
    for extra in (
        ["--charge-port", "/dev/null"],
        ["--charge-port", "x", "--charge-registers", "?"],
    ):
        with pytest.raises(SystemExit) as info:
            main([*base, *extra])
        assert info.value.code == 2


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


def test_a_card_on_the_reader_becomes_a_badge_event(server, start_worker):
    # The real BadgeReader on nfcpy's udp driver, and an emulated card in another process.
    port = free_udp_port()
    runner = start_worker(badge_reader_path=f"udp:127.0.0.1:{port}")
    snapshot_of(server)
    tap(port, "04A1B2C3D4E5F6", hold=0.15)
    (badge,) = server.wait_for("badge")
    assert badge["uid"] == "04A1B2C3D4E5F6"
    runner.stop()
