"""BadgeReader end to end on nfcpy's udp driver against a card emulator process, and the
debounce logic on its own with explicit times."""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nfc
import nfc.clf
import pytest

from devices.emulators.nfc_card import CardEmulatorError, parse_uid, start_tap, tap
from devices.readers.nfc import BadgeReader, BadgeReaderError, TapDebouncer, uid_from_target

ANA = "04A1B2C3D4E5F6"  # 7-byte NXP-style UID, the usual badge
BEN = "DEADBEEF"  # 4-byte UID, the other common size

# Upper bound for any single wait below: a tap needs process start-up plus at most one empty
# sense round (1 s on the udp driver) before the card is seen.
WAIT = 5.0
# A quick tap; real ones last a few tenths of a second, anticollision takes milliseconds.
HOLD = 0.15


def free_udp_port() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # nfcpy's udp driver turns a port into its /etc/services name (57000 is "dircproxy")
        # and then fails on int(); skip those.
        try:
            socket.getservbyport(port, "tcp")
        except OSError:
            return port
    raise RuntimeError("no usable UDP port")


@dataclass
class Running:
    reader: BadgeReader
    thread: threading.Thread
    port: int
    taps: queue.Queue[str]

    def taps_after(self, settle: float) -> list[str]:
        """Everything delivered so far, after ``settle`` seconds for stragglers."""
        time.sleep(settle)
        delivered = []
        while not self.taps.empty():
            delivered.append(self.taps.get_nowait())
        return delivered


@contextlib.contextmanager
def running_reader(on_tap=None) -> Iterator[Running]:
    port = free_udp_port()
    taps: queue.Queue[str] = queue.Queue()
    reader = BadgeReader(f"udp:127.0.0.1:{port}", on_tap or taps.put, debounce_seconds=1.0)
    thread = reader.start_in_thread()
    try:
        yield Running(reader, thread, port, taps)
    finally:
        reader.stop(timeout=WAIT)
        thread.join(timeout=WAIT)


@pytest.fixture
def running() -> Iterator[Running]:
    with running_reader() as r:
        yield r


# -- end to end: reader thread + card emulator process ----------------------------------------


def test_one_tap_delivers_the_uid_exactly_once(running):
    tap(running.port, ANA, hold=HOLD)

    assert running.taps.get(timeout=WAIT) == ANA
    assert running.taps_after(0.3) == []


def test_holding_the_card_for_seconds_is_still_one_tap(running):
    tap(running.port, ANA, hold=2.0)

    assert running.taps_after(0.2) == [ANA]


def test_two_different_cards_give_two_taps(running):
    tap(running.port, ANA, hold=HOLD)
    tap(running.port, BEN, hold=HOLD)

    assert running.taps_after(0.2) == [ANA, BEN]


def test_stop_makes_run_return_promptly_and_closes_the_reader(monkeypatch):
    closed = threading.Event()
    original_close = nfc.ContactlessFrontend.close

    def close_spy(self: nfc.ContactlessFrontend) -> None:
        original_close(self)
        closed.set()

    monkeypatch.setattr(nfc.ContactlessFrontend, "close", close_spy)
    reader = BadgeReader(f"udp:127.0.0.1:{free_udp_port()}", lambda uid: None)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    time.sleep(0.3)  # let it get into a sense round, which blocks for up to 1 s

    started = time.monotonic()
    assert reader.stop(timeout=WAIT) is True
    elapsed = time.monotonic() - started
    thread.join(timeout=WAIT)

    assert elapsed < 1.5
    assert not thread.is_alive()
    assert closed.is_set()
    assert reader.stop() is True  # again: harmless


def test_stop_is_prompt_while_a_card_is_held(running):
    card = start_tap(running.port, ANA, hold=10.0)
    try:
        assert running.taps.get(timeout=WAIT) == ANA

        started = time.monotonic()
        assert running.reader.stop(timeout=WAIT) is True
        assert time.monotonic() - started < 1.5
        running.thread.join(timeout=WAIT)
        assert not running.thread.is_alive()
    finally:
        card.kill()
        card.communicate(timeout=WAIT)


def test_an_unopenable_path_raises_badge_reader_error():
    path = "tty:LOCKERHUB_NO_SUCH_PORT:pn532"
    reader = BadgeReader(path, lambda uid: None)

    with pytest.raises(BadgeReaderError, match="LOCKERHUB_NO_SUCH_PORT"):
        reader.start_in_thread()
    assert reader.stop(timeout=0.1) is True

    with pytest.raises(BadgeReaderError, match="LOCKERHUB_NO_SUCH_PORT"):
        BadgeReader(path, lambda uid: None).run()


def test_a_reader_that_activates_the_tag_reads_the_same_identifier():
    # Readers written the other common way (activate, read tag.identifier, wait for the
    # presence check to fail) work against the emulated card too.
    port = free_udp_port()
    card = start_tap(port, ANA, hold=0.5)
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + WAIT

    def on_connect(tag) -> bool:
        seen.append((tag.type, tag.identifier.hex().upper()))
        return True  # keep it until the presence check fails

    try:
        with nfc.ContactlessFrontend(f"udp:127.0.0.1:{port}") as clf:
            released = clf.connect(
                rdwr={"targets": ["106A"], "on-connect": on_connect},
                terminate=lambda: time.monotonic() > deadline,
            )
    finally:
        _, stderr = card.communicate(timeout=WAIT)

    assert seen == [("Type2Tag", ANA)]
    assert released is True  # on-release ran: the card left and the presence check noticed
    assert card.returncode == 0, stderr


def test_the_emulator_reports_a_tap_no_reader_sensed():
    with pytest.raises(CardEmulatorError, match="no reader sensed"):
        tap(free_udp_port(), ANA, wait=0.3)


def test_the_emulator_refuses_a_port_in_use():
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(CardEmulatorError, match="in use"):
            tap(port, ANA, wait=1.0)


def test_the_emulator_binds_loopback_only():
    port = free_udp_port()
    card = start_tap(port, ANA, wait=3.0)
    try:
        bound = _wait_for_udp_bind(port, deadline=time.monotonic() + WAIT)
    finally:
        card.kill()
        card.communicate(timeout=WAIT)
    assert bound == "127.0.0.1"


def _wait_for_udp_bind(port: int, *, deadline: float) -> str | None:
    """The local address a UDP socket on ``port`` is bound to, from /proc/net/udp."""
    while time.monotonic() < deadline:
        with open("/proc/net/udp") as table:
            for line in table.readlines()[1:]:
                address, port_hex = line.split()[1].split(":")
                if int(port_hex, 16) == port:
                    return socket.inet_ntoa(bytes.fromhex(address)[::-1])
        time.sleep(0.05)
    return None


def test_the_emulator_command_line_rejects_a_bad_uid():
    result = subprocess.run(
        [sys.executable, "-m", "devices.emulators.nfc_card", "--port=40000", "--uid=XYZ"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "not hexadecimal" in result.stderr


# -- units ------------------------------------------------------------------------------------


class ScriptedFrontend:
    """Stands in for nfc.ContactlessFrontend: each connect() is one sense round from a script.

    A script entry is a UID (a card answers), None (empty field) or False (connect() gives
    up, as nfcpy does on a device error). When the script runs out the field stays empty.
    """

    def __init__(self, script: list[str | bool | None]) -> None:
        self.script = list(script)
        self.closed = threading.Event()

    def __call__(self, path: str) -> ScriptedFrontend:
        return self

    def connect(self, *, rdwr, terminate):
        if terminate():
            return None
        step = self.script.pop(0) if self.script else None
        if step is False:
            return False
        if step is not None:
            target = nfc.clf.RemoteTarget(
                "106A", sens_res=b"\x44\x00", sel_res=b"\x00", sdd_res=bytes.fromhex(step)
            )
            assert rdwr["on-discover"](target) is False  # never activates
        assert terminate() is True  # exactly one round per connect()
        return None

    def close(self) -> None:
        self.closed.set()


def test_a_failing_callback_is_logged_and_polling_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(nfc, "ContactlessFrontend", ScriptedFrontend([ANA, ANA, None, BEN]))
    delivered: list[str] = []
    both = threading.Event()

    def on_tap(uid: str) -> None:
        delivered.append(uid)
        if len(delivered) == 2:
            both.set()
        raise RuntimeError("kiosk backend is down")

    reader = BadgeReader("usb:054c:06c1", on_tap, poll_interval=0.001)
    with caplog.at_level(logging.ERROR, logger="devices.readers.nfc"):
        thread = reader.start_in_thread()
        assert both.wait(WAIT)
        assert thread.is_alive()
        assert reader.stop(timeout=WAIT) is True

    assert delivered == [ANA, BEN]
    failures = [rec for rec in caplog.records if "on_tap failed" in rec.getMessage()]
    assert [rec.exc_info[0] for rec in failures] == [RuntimeError, RuntimeError]


def test_a_reader_that_fails_while_polling_ends_its_thread_with_the_error(monkeypatch):
    frontend = ScriptedFrontend([None, False])
    monkeypatch.setattr(nfc, "ContactlessFrontend", frontend)
    reader = BadgeReader("usb:054c:06c1", lambda uid: None, poll_interval=0.001)

    thread = reader.start_in_thread()
    thread.join(timeout=WAIT)

    assert not thread.is_alive()
    assert isinstance(reader.error, BadgeReaderError)
    assert "usb:054c:06c1" in str(reader.error)
    assert frontend.closed.is_set()


def test_stop_from_inside_on_tap_ends_polling_after_the_callback(monkeypatch):
    frontend = ScriptedFrontend([ANA, BEN])
    monkeypatch.setattr(nfc, "ContactlessFrontend", frontend)
    answers: list[bool] = []
    reader = BadgeReader(
        "usb:054c:06c1", lambda uid: answers.append(reader.stop()), poll_interval=0.001
    )

    reader.run()

    assert answers == [False]  # could not wait for itself
    assert frontend.closed.is_set()
    assert frontend.script == [BEN]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("04A1B2C3D4E5F6", bytes.fromhex("04A1B2C3D4E5F6")),
        ("04:a1:b2:c3:d4:e5:f6", bytes.fromhex("04A1B2C3D4E5F6")),
        ("DE AD BE EF", bytes.fromhex("DEADBEEF")),
    ],
)
def test_parse_uid_accepts_hex_with_separators(text, expected):
    assert parse_uid(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("XYZ", "not hexadecimal"),
        ("04A1B2", "has 3 bytes"),
        ("04A1B2C3D4E5F6070809", "has 10 bytes"),
        ("88A1B2C3", "cascade tag"),
    ],
)
def test_parse_uid_rejects_what_no_reader_could_read(text, message):
    with pytest.raises(ValueError, match=message):
        parse_uid(text)


def test_uid_from_target_per_technology():
    nfc_a = nfc.clf.RemoteTarget(
        "106A", sens_res=b"\x44\x00", sel_res=b"\x00", sdd_res=bytes.fromhex(ANA)
    )
    felica = nfc.clf.RemoteTarget(
        "212F", sensf_res=bytes.fromhex("01 0102030405060708 0000000000000000")
    )
    nfc_b = nfc.clf.RemoteTarget("106B", sensb_res=bytes.fromhex("50 A1B2C3D4 00000000 000000"))
    phone_p2p = nfc.clf.RemoteTarget(
        "106A", sens_res=b"\x04\x00", sel_res=b"\x40", sdd_res=b"\x08\x01\x02\x03"
    )

    assert uid_from_target(nfc_a) == ANA
    assert uid_from_target(felica) == "0102030405060708"
    assert uid_from_target(nfc_b) == "A1B2C3D4"
    assert uid_from_target(phone_p2p) is None


def test_debounce_first_sighting_is_a_tap():
    d = TapDebouncer(1.0)
    assert d.seen(ANA, 10.0) is True


def test_debounce_a_held_card_is_one_tap_however_long():
    d = TapDebouncer(1.0)
    assert d.seen(ANA, 0.0) is True
    # Sightings far apart (a slow reader) but never an empty round in between.
    assert [d.seen(ANA, t) for t in (0.1, 0.2, 5.0, 60.0, 3600.0)] == [False] * 5


def test_debounce_same_card_back_within_the_window_is_no_tap():
    d = TapDebouncer(1.0)
    d.seen(ANA, 0.0)
    d.seen(ANA, 0.5)
    d.cleared(0.6)
    assert d.seen(ANA, 1.4) is False  # 0.9 s after it was last seen
    d.cleared(1.5)
    # The bounce refreshed "last seen"; the window runs from there.
    assert d.seen(ANA, 2.3) is False
    d.cleared(2.4)
    assert d.seen(ANA, 3.3) is True


def test_debounce_same_card_back_after_the_window_is_a_tap():
    d = TapDebouncer(1.0)
    d.seen(ANA, 0.0)
    d.cleared(0.1)
    assert d.seen(ANA, 1.0) is True  # exactly the window: counts


def test_debounce_a_different_card_is_a_tap_at_once():
    d = TapDebouncer(1.0)
    d.seen(ANA, 0.0)
    assert d.seen(BEN, 0.05) is True
    d.cleared(0.1)
    assert d.seen(ANA, 0.2) is False  # ANA only bounced back
    d.cleared(0.3)
    assert d.seen(BEN, 0.4) is False


def test_debounce_two_cards_answering_alternately_tap_once_each():
    d = TapDebouncer(1.0)
    sightings = [d.seen(uid, t / 10) for t, uid in enumerate([ANA, BEN] * 20)]
    assert sightings.count(True) == 2


def test_debounce_zero_seconds_still_merges_a_held_card():
    d = TapDebouncer(0.0)
    assert d.seen(ANA, 0.0) is True
    assert d.seen(ANA, 0.1) is False
    d.cleared(0.2)
    assert d.seen(ANA, 0.2) is True


def test_debounce_forgets_old_cards():
    d = TapDebouncer(1.0)
    for n in range(1000):
        d.seen(f"{n:08X}", float(n))
        d.cleared(float(n) + 0.5)
    assert len(d._last_seen) <= 2


def test_debounce_rejects_negative_seconds():
    with pytest.raises(ValueError, match=">= 0"):
        TapDebouncer(-1)
