"""Kerong KR-CU16 lock board: frame codec and RS-485 driver.

Wire format (19200 baud, 8N1)::

    command:  STX ADDR CMD ETX SUM                      (5 bytes, CMD 0x30 status / 0x31 unlock)
    reply:    STX ADDR 0x35 H1 H2 IR1 IR2 ETX SUM       (9 bytes)

``ADDR = (board << 4) | lock_index`` and ``SUM`` is the low byte of the sum of all earlier
bytes. H1/H2 carry the hook bits of locks 1-8 / 9-16 (bit i = lock i+1 of that half, 1 = door
closed and latched on normal hardware), IR1/IR2 the item-present bits in the same layout.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import serial

from devices.drivers.base import (
    LOCKS_PER_BOARD,
    BoardStatus,
    LockBoardError,
    LockBoardTimeout,
    LockBus,
    register_protocol,
)

logger = logging.getLogger(__name__)

PROTOCOL_NAME = "kerong-cu16"
BAUDRATE = 19200

STX = 0x02
ETX = 0x03
CMD_STATUS = 0x30
CMD_UNLOCK = 0x31
CMD_STATUS_REPLY = 0x35

COMMAND_FRAME_LEN = 5
STATUS_FRAME_LEN = 9
MAX_FRAME_LEN = STATUS_FRAME_LEN

# The CMD byte is the only thing that tells how long a frame is, so it doubles as the test of
# whether an STX byte really starts a frame.
_FRAME_LENGTHS: dict[int, int] = {
    CMD_STATUS: COMMAND_FRAME_LEN,
    CMD_UNLOCK: COMMAND_FRAME_LEN,
    CMD_STATUS_REPLY: STATUS_FRAME_LEN,
}

# Bounds how far a read may overshoot the request deadline without reconfiguring the port
# timeout on every read (pyserial re-applies termios settings whenever .timeout is set).
_READ_POLL_INTERVAL = 0.02


def checksum(data: bytes) -> int:
    """Low byte of the sum of ``data``."""
    return sum(data) & 0xFF


def _check_range(name: str, value: int) -> None:
    if not 0 <= value < LOCKS_PER_BOARD:
        raise ValueError(f"{name} must be 0-{LOCKS_PER_BOARD - 1}, got {value!r}")


def make_addr(board: int, lock_index: int) -> int:
    """ADDR byte for ``lock_index`` (0-15) on ``board`` (0-15)."""
    _check_range("board", board)
    _check_range("lock_index", lock_index)
    return (board << 4) | lock_index


def encode_command(board: int, lock_index: int, cmd: int) -> bytes:
    """A 5-byte command frame, e.g. ``encode_command(0, 0, CMD_UNLOCK) == 02 00 31 03 36``."""
    if not 0 <= cmd <= 0xFF:
        raise ValueError(f"cmd must be a byte, got {cmd!r}")
    body = bytes((STX, make_addr(board, lock_index), cmd, ETX))
    return body + bytes((checksum(body),))


def encode_status_reply(addr: int, hooks: int, irs: int) -> bytes:
    """A 9-byte status frame; ``hooks``/``irs`` are 16-bit with bit i = lock_index i."""
    if not 0 <= addr <= 0xFF:
        raise ValueError(f"addr must be a byte, got {addr!r}")
    if not 0 <= hooks <= 0xFFFF or not 0 <= irs <= 0xFFFF:
        raise ValueError("hooks and irs must be 16-bit values")
    body = bytes(
        (
            STX,
            addr,
            CMD_STATUS_REPLY,
            hooks & 0xFF,
            hooks >> 8,
            irs & 0xFF,
            irs >> 8,
            ETX,
        )
    )
    return body + bytes((checksum(body),))


@dataclass(frozen=True)
class Frame:
    """One valid frame from the wire.

    ``payload`` is H1 H2 IR1 IR2 for a status reply and empty for a command.
    """

    addr: int
    cmd: int
    payload: bytes
    raw: bytes

    @property
    def board(self) -> int:
        return self.addr >> 4

    @property
    def lock_index(self) -> int:
        return self.addr & 0x0F

    @property
    def hooks(self) -> int:
        """Raw hook bits (no polarity applied) of a status reply, bit i = lock_index i."""
        return self.payload[0] | (self.payload[1] << 8) if len(self.payload) == 4 else 0

    @property
    def irs(self) -> int:
        """Item-present bits of a status reply, bit i = lock_index i."""
        return self.payload[2] | (self.payload[3] << 8) if len(self.payload) == 4 else 0


class FrameParser:
    """Incremental frame parser that resynchronises on STX after garbage or a bad frame.

    Bytes that cannot belong to a valid frame are dropped and counted in ``discarded``. At most
    one incomplete frame (fewer than :data:`MAX_FRAME_LEN` bytes) is kept between calls.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    @property
    def buffered(self) -> int:
        """Number of bytes held back as the possible start of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial frame (the discard counter is kept)."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order."""
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        n = len(buf)
        pos = 0
        while True:
            start = buf.find(STX, pos)
            if start < 0:
                self.discarded += n - pos
                pos = n
                break
            self.discarded += start - pos
            pos = start
            if n - pos < 3:
                break
            length = _FRAME_LENGTHS.get(buf[pos + 2])
            if length is None:
                self.discarded += 1
                pos += 1
                continue
            if n - pos < length:
                break
            end = pos + length
            if buf[end - 2] == ETX and buf[end - 1] == checksum(buf[pos : end - 1]):
                raw = bytes(buf[pos:end])
                frames.append(Frame(addr=raw[1], cmd=raw[2], payload=raw[3:-2], raw=raw))
                pos = end
            else:
                # Only the STX is consumed: a real frame may start inside the rejected bytes.
                self.discarded += 1
                pos += 1
        del buf[:pos]
        return frames


def decode_status(frame: Frame, *, invert_hook: bool = False) -> BoardStatus:
    """Turn a status reply frame into a BoardStatus, applying the bank's hook polarity."""
    if frame.cmd != CMD_STATUS_REPLY:
        raise ValueError(f"not a status reply: cmd 0x{frame.cmd:02x}")
    hooks, irs = frame.hooks, frame.irs
    return BoardStatus(
        board=frame.board,
        door_closed=tuple(bool(hooks >> i & 1) != invert_hook for i in range(LOCKS_PER_BOARD)),
        present=tuple(bool(irs >> i & 1) for i in range(LOCKS_PER_BOARD)),
    )


@register_protocol(PROTOCOL_NAME)
class KerongCU16Bus(LockBus):
    """Host side of an RS-485 bus with one or more KR-CU16 boards.

    ``port`` is a device path (``/dev/ttyUSB0``) or any pyserial URL (``socket://``,
    ``rfc2217://``, ``loop://``). Requests are serialised by a lock, so one instance can be
    shared between threads.
    """

    def __init__(self, port: str, *, invert_hook: bool = False, timeout: float = 0.25) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.port = port
        self.invert_hook = invert_hook
        self.timeout = timeout
        self._lock = threading.Lock()
        self._parser = FrameParser()
        try:
            self._serial: serial.SerialBase | None = serial.serial_for_url(
                port,
                baudrate=BAUDRATE,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=min(timeout, _READ_POLL_INTERVAL),
            )
        except (serial.SerialException, ValueError) as exc:
            raise LockBoardError(f"cannot open lock bus {port!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.port!r} invert_hook={self.invert_hook}>"

    def status(self, board: int) -> BoardStatus:
        return self._request(board, 0, CMD_STATUS)

    def unlock(self, board: int, lock_index: int) -> BoardStatus:
        return self._request(board, lock_index, CMD_UNLOCK)

    def close(self) -> None:
        with self._lock:
            if self._serial is not None:
                self._serial.close()
                self._serial = None

    def _request(self, board: int, lock_index: int, cmd: int) -> BoardStatus:
        request = encode_command(board, lock_index, cmd)
        with self._lock:
            port = self._serial
            if port is None:
                raise LockBoardError(f"lock bus {self.port!r} is closed")
            try:
                return self._exchange(port, request, board)
            except (serial.SerialException, OSError) as exc:
                raise LockBoardError(f"I/O error on lock bus {self.port!r}: {exc}") from exc

    def _exchange(self, port: serial.SerialBase, request: bytes, board: int) -> BoardStatus:
        # A late reply to an earlier, timed-out request must not be taken for this one's.
        port.reset_input_buffer()
        self._parser.reset()
        port.write(request)
        port.flush()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue
            discarded_before = self._parser.discarded
            frames = self._parser.feed(chunk)
            skipped = self._parser.discarded - discarded_before
            if skipped:
                logger.debug(
                    "%s: skipped %d garbage byte(s) in %s", self.port, skipped, chunk.hex(" ")
                )
            for frame in frames:
                if frame.cmd == CMD_STATUS_REPLY and frame.board == board:
                    return decode_status(frame, invert_hook=self.invert_hook)
                # Echo of our own command (half-duplex adapters) or traffic for another board.
                logger.debug("%s: ignoring frame %s", self.port, frame.raw.hex(" "))
        raise LockBoardTimeout(
            f"board {board} on {self.port!r} did not answer {request.hex(' ')} "
            f"within {self.timeout:.3f}s"
        )
