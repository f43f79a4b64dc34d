"""The real Kerong KR-CU16 driver against the pty emulator (real serial I/O, no database)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from devices.drivers.base import (
    BoardStatus,
    LockBoardError,
    LockBoardTimeout,
    LockBus,
    known_protocols,
    open_lock_bus,
)
from devices.drivers.kerong import (
    KerongCU16Bus,
    checksum,
    encode_status_reply,
)
from devices.emulators.kerong import KerongBoardEmulator

TIMEOUT = 0.2
ALL_CLOSED = (True,) * 16
ALL_EMPTY = (False,) * 16


@pytest.fixture
def emulator() -> Iterator[KerongBoardEmulator]:
    with KerongBoardEmulator(boards=(0, 1)) as emu:
        yield emu


@pytest.fixture
def bus(emulator: KerongBoardEmulator) -> Iterator[LockBus]:
    with open_lock_bus("kerong-cu16", emulator.port, timeout=TIMEOUT) as lock_bus:
        yield lock_bus


def test_open_lock_bus_returns_kerong_driver(bus):
    assert isinstance(bus, KerongCU16Bus)
    assert "kerong-cu16" in known_protocols()


def test_open_lock_bus_unknown_protocol_names_known_ones():
    with pytest.raises(ValueError, match=r"unknown lock-board protocol 'acme-x'.*kerong-cu16"):
        open_lock_bus("acme-x", "loop://")


def test_open_missing_port_raises_lock_board_error():
    with pytest.raises(LockBoardError, match="cannot open"):
        open_lock_bus("kerong-cu16", "/dev/does-not-exist-lockerhub")


def test_status_of_closed_empty_board(bus):
    assert bus.status(0) == BoardStatus(board=0, door_closed=ALL_CLOSED, present=ALL_EMPTY)


def test_status_reports_open_doors_and_items(emulator, bus):
    emulator.open_door(0, 3)
    emulator.set_present(0, 0, True)
    emulator.set_present(0, 15, True)
    status = bus.status(0)
    assert [i for i, closed in enumerate(status.door_closed) if not closed] == [3]
    assert [i for i, present in enumerate(status.present) if present] == [0, 15]


def test_unlock_opens_hook_and_is_logged(emulator, bus):
    before = time.monotonic()
    status = bus.unlock(0, 4)
    assert status.door_closed == tuple(i != 4 for i in range(16))
    assert emulator.door_closed(0, 4) is False
    log = emulator.unlock_log
    assert [(board, idx) for _, board, idx in log] == [(0, 4)]
    assert before <= log[0][0] <= time.monotonic()
    assert emulator.unlock_event.is_set()


def test_door_stays_open_until_closed(emulator, bus):
    bus.unlock(1, 0)
    assert bus.status(1).door_closed[0] is False
    emulator.close_door(1, 0)
    assert bus.status(1).door_closed[0] is True


def test_two_boards_on_one_bus(emulator, bus):
    emulator.set_present(1, 7, True)
    bus.unlock(1, 2)
    board0, board1 = bus.status(0), bus.status(1)
    assert board0 == BoardStatus(board=0, door_closed=ALL_CLOSED, present=ALL_EMPTY)
    assert board1.board == 1
    assert board1.door_closed == tuple(i != 2 for i in range(16))
    assert board1.present == tuple(i == 7 for i in range(16))
    assert [(b, i) for _, b, i in emulator.unlock_log] == [(1, 2)]


def test_absent_board_times_out_within_timeout(bus):
    started = time.monotonic()
    with pytest.raises(LockBoardTimeout, match="board 5"):
        bus.status(5)
    elapsed = time.monotonic() - started
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.15


def test_muted_board_times_out_then_recovers(emulator, bus):
    emulator.set_mute(1, True)
    started = time.monotonic()
    with pytest.raises(LockBoardTimeout):
        bus.unlock(1, 0)
    assert time.monotonic() - started < TIMEOUT + 0.15
    assert emulator.unlock_log == []
    emulator.set_mute(1, False)
    assert bus.status(1).board == 1
    assert bus.status(0).board == 0


def test_inverted_polarity():
    with (
        KerongBoardEmulator(boards=(2,), invert_hook=True) as emu,
        open_lock_bus("kerong-cu16", emu.port, invert_hook=True, timeout=TIMEOUT) as bus,
    ):
        emu.open_door(2, 9)
        status = bus.status(2)
        assert status.door_closed == tuple(i != 9 for i in range(16))
        assert bus.unlock(2, 1).door_closed[1] is False
    # The same wire bytes read with normal polarity give the opposite picture.
    with (
        KerongBoardEmulator(boards=(2,), invert_hook=True) as emu,
        open_lock_bus("kerong-cu16", emu.port, timeout=TIMEOUT) as bus,
    ):
        assert bus.status(2).door_closed == (False,) * 16


def test_garbage_right_before_reply_is_skipped(emulator, bus, caplog):
    caplog.set_level(logging.DEBUG, logger="devices.drivers.kerong")
    emulator.open_door(0, 6)
    # Noise, a truncated status frame whose window overlaps the real reply, and a stray STX.
    emulator.inject_before_next_reply(b"\xff\x00\x13\x02\x00\x35\xff\x02")
    status = bus.status(0)
    assert status.door_closed == tuple(i != 6 for i in range(16))
    assert "garbage byte(s)" in caplog.text


def test_garbage_injected_before_request_does_not_break_it(emulator, bus):
    emulator.inject(b"\x02\x00\x35\x00\x00\x00\x00\x03\x00junk")
    assert bus.status(0).door_closed == ALL_CLOSED


def test_corrupted_reply_is_skipped(emulator, bus):
    # A reply claiming every door open, but with a bad SUM: it must not be believed.
    corrupt = bytearray(encode_status_reply(0x00, 0x0000, 0xFFFF))
    corrupt[-1] = (checksum(bytes(corrupt[:-1])) + 1) & 0xFF
    emulator.inject_before_next_reply(bytes(corrupt))
    assert bus.status(0) == BoardStatus(board=0, door_closed=ALL_CLOSED, present=ALL_EMPTY)


def test_corrupted_reply_alone_times_out_then_recovers(emulator, bus):
    emulator.corrupt_next_reply()
    with pytest.raises(LockBoardTimeout):
        bus.status(0)
    assert bus.status(0).board == 0


def test_reply_for_another_board_is_ignored(emulator, bus):
    emulator.inject_before_next_reply(encode_status_reply(0x10, 0x0000, 0xFFFF))
    assert bus.status(0) == BoardStatus(board=0, door_closed=ALL_CLOSED, present=ALL_EMPTY)


def test_echo_of_own_command_is_ignored():
    with (
        KerongBoardEmulator(boards=(0,), echo=True) as emu,
        open_lock_bus("kerong-cu16", emu.port, timeout=TIMEOUT) as bus,
    ):
        assert bus.unlock(0, 0).door_closed[0] is False


def test_loopback_url_only_echo_times_out():
    # pyserial's loop:// sends every request straight back: an echo is never a reply.
    with KerongCU16Bus("loop://", timeout=0.05) as bus, pytest.raises(LockBoardTimeout):
        bus.status(0)


def test_slow_board_within_timeout_answers():
    with (
        KerongBoardEmulator(boards=(0,), reply_delay=TIMEOUT / 2) as emu,
        open_lock_bus("kerong-cu16", emu.port, timeout=TIMEOUT) as bus,
    ):
        assert bus.status(0).board == 0


def test_on_unlock_callback():
    calls: list[tuple[int, int]] = []
    with (
        KerongBoardEmulator(boards=(3,), on_unlock=lambda b, i: calls.append((b, i))) as emu,
        open_lock_bus("kerong-cu16", emu.port, timeout=TIMEOUT) as bus,
    ):
        bus.unlock(3, 15)
        assert calls == [(3, 15)]


def test_concurrent_requests_from_threads(emulator, bus):
    errors: list[BaseException] = []
    results: dict[int, list[int]] = {0: [], 1: []}

    def worker(board: int) -> None:
        try:
            for _ in range(10):
                results[board].append(bus.status(board).board)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b,)) for b in (0, 1, 0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {0: [0] * 20, 1: [1] * 20}


def test_invalid_arguments(bus):
    with pytest.raises(ValueError, match="lock_index"):
        bus.unlock(0, 16)
    with pytest.raises(ValueError, match="board"):
        bus.status(16)


def test_closed_bus_raises(emulator):
    bus = open_lock_bus("kerong-cu16", emulator.port, timeout=TIMEOUT)
    bus.close()
    bus.close()
    with pytest.raises(LockBoardError, match="closed"):
        bus.status(0)


def test_emulator_stop_is_idempotent():
    emu = KerongBoardEmulator().start()
    emu.stop()
    emu.stop()
