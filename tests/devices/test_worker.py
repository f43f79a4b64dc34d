"""The bank worker against a real WebSocket peer and the Kerong pty emulator (no database):
the connection, the journal, commands, sensors and the command line.

The fake server (tests/devices/test_worker_support.py) plays the server side of
docs/device-protocol.md, version 2. Deciding taps, the snapshot in the journal, working
offline and the local kiosk feed have test files of their own (test_worker_*.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devices.charge import ChargeThresholds
from devices.emulators.nfc_card import tap
from devices.wire import CloseCode
from devices.worker import EXIT_BAD_TOKEN, EXIT_USAGE, BankWorker, Journal, WorkerRejected, main
from devices.worker_config import server_url
from tests.devices import test_worker_support as support
from tests.devices.test_worker_support import (
    ANA,
    BANK,
    SERVER_KEY,
    TOKEN,
    WAIT,
    snapshot_of,
    wait_all_acked,
)

emulator = support.emulator
bus = support.bus
server = support.server
journal_path = support.journal_path
start_worker = support.start_worker

# Badges the test world does not know: denied, so they open nothing and change no slot.
UID1, UID2, UID3 = "05A1B2C3D4E501", "05A1B2C3D4E502", "05A1B2C3D4E503"
REPO = Path(__file__).resolve().parents[2]


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


# -- connection and handshake -------------------------------------------------------------------


def test_token_goes_in_the_header_never_in_the_url_or_the_log(server, start_worker, caplog):
    caplog.set_level(logging.DEBUG)
    runner = start_worker(server)
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
    emulator.set_present(0, 3, True)
    runner = start_worker(server)
    snapshot = snapshot_of(server)
    (hello,) = server.of_type("hello")
    assert hello["worker_id"] == runner.worker.worker_id
    assert hello["version"] == "2"
    assert hello["last_seq"] == 0
    assert hello["snapshot_version"] is None  # a new journal holds no access snapshot
    # The hello comes first and the snapshot is the first event of the connection.
    assert server.messages[0][1]["type"] == "hello"
    assert server.events()[0] is snapshot
    assert snapshot["seq"] == 1
    assert datetime.fromisoformat(snapshot["at"]).utcoffset() is not None
    assert snapshot["slots"] == [
        {"slot": 1, "door_open": False, "present": True, "charge_state": None},
        {"slot": 2, "door_open": True, "present": True, "charge_state": None},
        {"slot": 3, "door_open": False, "present": False, "charge_state": None},
        {"slot": 4, "door_open": False, "present": True, "charge_state": None},
    ]
    runner.stop()


def test_door_and_presence_changes_become_events_in_seq_order(emulator, server, start_worker):
    runner = start_worker(server)
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
    runner = start_worker(server)
    snapshot_of(server)
    emulator.open_door(0, 9)  # no slot has lock 9
    emulator.open_door(0, 0)
    server.wait_for("door", slot=1, open=True)
    assert [e["slot"] for e in server.of_type("door")] == [1]
    runner.stop()


def test_heartbeats_carry_no_seq(server, start_worker):
    runner = start_worker(server, heartbeat_seconds=0.1)
    beats = server.wait_for("heartbeat", count=2)
    assert all("seq" not in b and datetime.fromisoformat(b["at"]) for b in beats)
    runner.stop()


def test_a_tap_is_decided_journaled_and_sent_at_once(server, start_worker):
    # Slow polling: a tap that waited for a poll tick would show up here.
    runner = start_worker(server, poll_hz=5)
    support.ready(server, runner.worker)
    latencies = []
    for i in range(5):
        started = time.monotonic()
        tap = runner.worker.submit_badge(f"05:a1:b2:c3:d4:e5:{i:02x}")
        server.wait_for("tap", seq=tap.seq)
        latencies.append(time.monotonic() - started)
        assert tap.reason == "badge_unknown"
    taps = server.of_type("tap")
    assert [t["uid"] for t in taps] == [f"05A1B2C3D4E5{i:02X}" for i in range(5)]
    assert {(t["granted"], t["reason"], t["version"]) for t in taps} == {
        (False, "badge_unknown", server.version)
    }
    assert statistics.median(latencies) < 0.1, latencies
    runner.stop()


def test_uids_are_normalised_and_impossible_ones_refused(server, start_worker):
    runner = start_worker(server)
    support.ready(server, runner.worker)
    assert runner.worker.submit_badge(" 05-a1-b2-c3-d4-e5-f6 ").uid == "05A1B2C3D4E5F6"
    assert runner.worker.submit_badge(b"\x05\xa1\xb2\xc3").uid == "05A1B2C3"
    last = runner.worker.journal.last_seq
    # The server takes 4 to 10 bytes of hex; anything else is no badge and is not journaled.
    for bad in ("", "05a1b2", "05a1b2c", "zza1b2c3", "05" * 11):
        with pytest.raises(ValueError, match="hex"):
            runner.worker.submit_badge(bad)
    assert runner.worker.journal.last_seq == last
    runner.stop()


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
    runner = start_worker(server)
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
    runner = start_worker(server)
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
    runner = start_worker(server)
    snapshot_of(server)
    emulator.set_mute(0, True)
    server.send(unlock(1, command_id=MUTED))
    (result,) = server.wait_for("command_result", id=MUTED)
    assert result["status"] == "failed"
    assert "did not answer" in result["detail"]
    runner.stop()


# -- the journal across reconnects and restarts ------------------------------------------------------


def test_unacked_events_are_replayed_after_a_drop_and_acked_ones_are_not(server, start_worker):
    runner = start_worker(server)
    snapshot_of(server, conn=1)  # acked: must never come back
    server.auto_ack = False
    seqs = [runner.worker.submit_badge(uid).seq for uid in (UID1, UID2, UID3)]
    server.wait_until(lambda: len(server.of_type("tap", conn=1)) == 3)
    server.drop()
    server.wait_connections(2)
    # The snapshot of the new connection comes after the replay, with a fresh seq.
    new_snapshot = snapshot_of(server, conn=2)
    replayed = server.events(conn=2)
    assert [e["seq"] for e in replayed[:3]] == seqs
    assert [e["uid"] for e in replayed[:3]] == [UID1, UID2, UID3]
    assert server.of_type("tap", conn=1) == server.of_type("tap", conn=2)
    assert new_snapshot["seq"] == seqs[-1] + 1
    assert [e["seq"] for e in replayed] == [*seqs, new_snapshot["seq"]]
    first_snapshot = server.of_type("snapshot", conn=1)[0]
    assert first_snapshot not in replayed
    runner.stop()


def test_events_survive_a_worker_restart(server, start_worker, journal_path):
    first = start_worker(server)
    snapshot_of(server, conn=1)
    server.auto_ack = False
    seqs = [first.worker.submit_badge(uid).seq for uid in (UID1, UID2)]
    server.wait_until(lambda: len(server.of_type("tap")) == 2)
    worker_id = first.worker.worker_id
    first.stop()
    server.auto_ack = True
    second = start_worker(server)  # same journal file
    server.wait_connections(2)
    hello = server.of_type("hello", conn=2)[0]
    assert hello["worker_id"] == worker_id
    assert hello["last_seq"] == seqs[-1] + 1  # with the snapshot taken at start-up
    server.wait_until(lambda: len(server.of_type("snapshot", conn=2)) == 2)
    replayed = server.events(conn=2)
    # The restarted worker watched its doors from the journal's config before it connected
    # (a snapshot at start-up), and sent one more snapshot after the replay, as always.
    assert [(e["type"], e["seq"]) for e in replayed] == [
        ("tap", seqs[0]),
        ("tap", seqs[1]),
        ("snapshot", seqs[1] + 1),
        ("snapshot", seqs[1] + 2),
    ]
    wait_all_acked(second.worker)
    second.stop()
    # Everything was acked this time: a third run replays nothing.
    journal = Journal(journal_path)
    assert journal.pending() == []
    journal.close()
    third = start_worker(server)
    server.wait_connections(3)
    server.wait_until(lambda: len(server.of_type("snapshot", conn=3)) == 2)
    assert [e["type"] for e in server.events(conn=3)] == ["snapshot", "snapshot"]
    third.stop()


def test_config_last_acked_seq_drops_what_the_server_already_has(server, start_worker):
    runner = start_worker(server)
    snapshot_of(server, conn=1)
    server.auto_ack = False
    seqs = [runner.worker.submit_badge(uid).seq for uid in (UID1, UID2, UID3)]
    server.wait_until(lambda: len(server.of_type("tap", conn=1)) == 3)
    # The server applied the first two but its acks were lost with the connection.
    server.applied[runner.worker.worker_id] = seqs[1]
    server.drop()
    server.wait_connections(2)
    snapshot_of(server, conn=2)
    assert [e["seq"] for e in server.events(conn=2)] == [seqs[2], seqs[2] + 1]
    runner.stop()


def test_malformed_messages_and_errors_do_not_kill_the_worker(emulator, server, start_worker):
    runner = start_worker(server)
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
        {"type": "access_snapshot", "data": "{}", "sig": "bm90IGEgc2lnbmF0dXJl"},
        {"type": "access_delta"},
    ):
        server.send(message)
    (bad,) = server.wait_for("command_result", id=BAD)
    assert bad["status"] == "failed"
    server.send(unlock(4, command_id=AFTER))
    server.wait_for("command_result", id=AFTER, status="done")
    assert [(b, i) for _, b, i in emulator.unlock_log] == [(0, 3)]
    assert server.connections == 1
    assert runner.worker.snapshot_version == server.version  # the signed one, still
    runner.stop()


def test_reconnects_with_backoff_after_the_server_goes_away(server, start_worker, caplog):
    caplog.set_level(logging.INFO, logger="devices.worker")
    runner = start_worker(server, backoff_initial=0.1, backoff_max=0.4)
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
    runner = start_worker(server, token="lhb_wrong")
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()
    assert isinstance(runner.error, WorkerRejected)
    assert runner.error.code == CloseCode.BAD_TOKEN
    assert server.connections == 1


def test_an_unknown_bank_stops_the_worker(server, bus, journal_path):
    server.bank = "BANK-Z"
    worker = BankWorker(server.base_url, BANK, TOKEN, bus, journal_path=journal_path)
    with pytest.raises(WorkerRejected) as info:
        asyncio.run(asyncio.wait_for(worker.run(), WAIT))
    assert info.value.code == CloseCode.UNKNOWN_BANK


def test_stop_before_run_returns_at_once(bus, journal_path):
    worker = BankWorker("ws://127.0.0.1:9", BANK, TOKEN, bus, journal_path=journal_path)
    worker.stop()
    asyncio.run(asyncio.wait_for(worker.run(), WAIT))


# -- the command line ---------------------------------------------------------------------------


def test_main_takes_the_token_and_key_from_the_environment(
    server, emulator, journal_path, monkeypatch
):
    monkeypatch.setenv("LOCKERHUB_BANK_TOKEN", "lhb_rotated-away")
    monkeypatch.setenv("LOCKERHUB_SERVER_KEY", SERVER_KEY)
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
        "--kiosk-port",
        "0",
    ]
    assert main(argv) == EXIT_BAD_TOKEN
    assert server.requests[0][1]["Authorization"] == "Bearer lhb_rotated-away"
    monkeypatch.delenv("LOCKERHUB_BANK_TOKEN")
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE


@pytest.mark.parametrize("key", [None, "", "not base64!", "c2hvcnQ="])
def test_main_needs_the_servers_public_key(emulator, journal_path, monkeypatch, capsys, key):
    monkeypatch.setenv("LOCKERHUB_BANK_TOKEN", TOKEN)
    monkeypatch.delenv("LOCKERHUB_SERVER_KEY", raising=False)
    argv = ["--server", "ws://127.0.0.1:9", "--bank", BANK, "--lock-port", emulator.port]
    argv += ["--nfc", "none", "--journal", str(journal_path)]
    if key is not None:
        argv += ["--server-key", key]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    assert "server-key" in capsys.readouterr().err.replace("_", "-").lower()


def test_the_worker_does_not_import_django():
    code = "import sys, devices.worker; sys.exit(any(m.startswith('django') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30, check=False)
    assert done.returncode == 0


# -- the journal on its own -------------------------------------------------------------------------


def test_journal_survives_reopening(journal_path):
    journal = Journal(journal_path)
    worker_id = journal.worker_id
    assert journal.last_seq == 0
    assert journal.append({"type": "tap", "uid": "01"}) == 1
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
        journal.append({"type": "tap", "uid": f"{n:02X}"})
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
    assert journal.append({"type": "tap", "uid": "FF"}) == 6
    assert journal.advance_seq(3) is False
    assert journal.advance_seq(10) is True
    assert journal.append({"type": "tap", "uid": "FF"}) == 11
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
            seq = journal.append({"type": "tap", "uid": "01"})
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
    runner = start_worker(server)
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
        server,
        charge_meter=meter,
        charge_interval=0.05,
        charge_thresholds=ChargeThresholds(dwell_seconds=0),
    )
    slots = {s["slot"]: s for s in snapshot_of(server)["slots"]}
    # No meter reading yet when the snapshot is taken, so a present device is unknown.
    assert slots[1]["charge_state"] == "unknown"
    assert slots[3]["charge_state"] == "empty"
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
    runner = start_worker(server)
    snapshot_of(server)
    runner.stop()
    assert "fix --invert-hook" in caplog.text


def test_main_rejects_bad_charge_options(emulator, journal_path, monkeypatch):
    monkeypatch.setenv("LOCKERHUB_BANK_TOKEN", TOKEN)
    monkeypatch.setenv("LOCKERHUB_SERVER_KEY", SERVER_KEY)
    base = ["--server", "ws://127.0.0.1:9", "--bank", BANK, "--lock-port", emulator.port]
    base += ["--nfc", "none", "--journal", str(journal_path)]
    for extra in (
        ["--charge-port", "/dev/null"],
        ["--charge-port", "x", "--charge-registers", "?"],
    ):
        with pytest.raises(SystemExit) as info:
            main([*base, *extra])
        assert info.value.code == 2


def test_a_card_on_the_reader_is_decided_and_opens_its_door(emulator, server, start_worker):
    # The real BadgeReader on nfcpy's udp driver, and an emulated card in another process.
    port = support.free_udp_port()
    runner = start_worker(server, badge_reader_path=f"udp:127.0.0.1:{port}")
    support.ready(server, runner.worker)
    tap(port, ANA, hold=0.15)
    (event,) = server.wait_for("tap")
    assert (event["uid"], event["granted"], event["reason"]) == (ANA, True, "granted_take")
    assert [(b, i) for _, b, i in emulator.unlock_log] == [(0, event["slot"] - 1)]
    runner.stop()


def test_journal_keeps_the_config_the_signed_snapshot_and_the_local_state(journal_path):
    journal = Journal(journal_path)
    assert (journal.config(), journal.access_entries(), journal.local_state()) == (None, [], {})
    journal.save_config({"type": "config", "slots": []})
    journal.store_access("snapshot", '{"version":1}', "sig1")
    journal.store_access("delta", '{"version":2}', "sig2", local={"holds": [], "notes": [1]})
    # An event and the local state it changed go in one commit; a part not named is kept.
    assert journal.append({"type": "tap"}, local={"holds": [{"slot": 1}]}) == 1
    assert journal.append({"type": "hold_ended", "slot": 1}, local={"holds": []}) == 2
    with pytest.raises(ValueError, match="part"):
        journal.append({"type": "tap"}, local={"secrets": []})
    assert journal.next_seq == 3  # the refused append stored nothing
    journal.close()
    journal = Journal(journal_path)
    assert journal.config() == {"type": "config", "slots": []}
    assert [(e.kind, e.data, e.sig) for e in journal.access_entries()] == [
        ("snapshot", '{"version":1}', "sig1"),
        ("delta", '{"version":2}', "sig2"),
    ]
    assert journal.local_state() == {"holds": [], "notes": [1]}
    # A whole snapshot replaces the snapshot and its deltas.
    journal.store_access("snapshot", '{"version":3}', "sig3")
    assert [e.data for e in journal.access_entries()] == ['{"version":3}']
    with pytest.raises(ValueError, match="kind"):
        journal.store_access("patch", "{}", "")
    journal.close()
