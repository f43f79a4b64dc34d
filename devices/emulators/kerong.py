"""Emulator of an RS-485 bus with Kerong KR-CU16 lock boards, on a pseudo-terminal.

The host side (``.port``) is the pty slave: any program opens it like a USB-RS485 adapter, so
the real driver is exercised byte for byte. Run standalone for manual testing::

    python -m devices.emulators.kerong --boards 0,1 [--invert-hook]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import select
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

from devices.drivers.base import LOCKS_PER_BOARD
from devices.drivers.kerong import (
    CMD_STATUS,
    CMD_UNLOCK,
    FrameParser,
    encode_status_reply,
)

logger = logging.getLogger(__name__)

# How long a reply may wait for room in the pty buffer before it is dropped; a host that does
# not read would otherwise block the emulator thread (and stop()) forever.
_WRITE_TIMEOUT = 0.5


class KerongBoardEmulator:
    """One RS-485 bus with one or more emulated KR-CU16 boards behind a pty.

    Every lock starts with its door closed and latched and no item present. An unlock command
    opens the door (the hook reads open in the reply) and it stays open until
    :meth:`close_door`. Boards not in ``boards``, and muted boards, never answer.

    ``on_unlock(board, lock_index)`` is called from the emulator thread for every unlock
    command; ``unlock_event`` is set at the same time. With ``echo=True`` every byte received is
    first sent back, as half-duplex adapters without echo suppression do.
    """

    def __init__(
        self,
        boards: Iterable[int] = (0,),
        invert_hook: bool = False,
        *,
        echo: bool = False,
        reply_delay: float = 0.0,
        on_unlock: Callable[[int, int], None] | None = None,
    ) -> None:
        self.boards: tuple[int, ...] = tuple(sorted(set(boards)))
        for board in self.boards:
            if not 0 <= board < LOCKS_PER_BOARD:
                raise ValueError(f"board must be 0-{LOCKS_PER_BOARD - 1}, got {board!r}")
        self.invert_hook = invert_hook
        self.echo = echo
        self.reply_delay = reply_delay
        self.on_unlock = on_unlock
        self.unlock_event = threading.Event()

        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._door_closed = {(b, i): True for b in self.boards for i in range(LOCKS_PER_BOARD)}
        self._present = {(b, i): False for b in self.boards for i in range(LOCKS_PER_BOARD)}
        self._muted: set[int] = set()
        self._unlock_log: list[tuple[float, int, int]] = []
        self._reply_prefixes: list[bytes] = []
        self._corrupt_replies = 0
        self._requests = 0

        self._master_fd, self._slave_fd = os.openpty()
        # Raw mode so no byte (0x03 is ^C, 0x11/0x13 are XON/XOFF) is interpreted by the line
        # discipline before the host opens the port. The slave fd stays open for the
        # emulator's lifetime: with no slave open, reads on the master fail with EIO.
        tty.setraw(self._slave_fd)
        flags = fcntl.fcntl(self._master_fd, fcntl.F_GETFL)
        fcntl.fcntl(self._master_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.port: str = os.ttyname(self._slave_fd)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.port} boards={self.boards}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._closed:
            raise RuntimeError("emulator has been stopped; create a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"kerong-emulator {self.port}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in (self._master_fd, self._slave_fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    def _key(self, board: int, lock_index: int) -> tuple[int, int]:
        if board not in self.boards:
            raise ValueError(f"board {board} is not emulated (boards: {self.boards})")
        if not 0 <= lock_index < LOCKS_PER_BOARD:
            raise ValueError(f"lock_index must be 0-{LOCKS_PER_BOARD - 1}, got {lock_index!r}")
        return board, lock_index

    def open_door(self, board: int, lock_index: int) -> None:
        key = self._key(board, lock_index)
        with self._state_lock:
            self._door_closed[key] = False

    def close_door(self, board: int, lock_index: int) -> None:
        key = self._key(board, lock_index)
        with self._state_lock:
            self._door_closed[key] = True

    def door_closed(self, board: int, lock_index: int) -> bool:
        key = self._key(board, lock_index)
        with self._state_lock:
            return self._door_closed[key]

    def set_present(self, board: int, lock_index: int, present: bool) -> None:
        key = self._key(board, lock_index)
        with self._state_lock:
            self._present[key] = present

    def present(self, board: int, lock_index: int) -> bool:
        key = self._key(board, lock_index)
        with self._state_lock:
            return self._present[key]

    def set_mute(self, board: int, muted: bool) -> None:
        """Make ``board`` stop (or resume) answering, like a board that lost power."""
        self._key(board, 0)
        with self._state_lock:
            if muted:
                self._muted.add(board)
            else:
                self._muted.discard(board)

    @property
    def unlock_log(self) -> list[tuple[float, int, int]]:
        """(time.monotonic(), board, lock_index) of every unlock command received, oldest first."""
        with self._state_lock:
            return list(self._unlock_log)

    @property
    def requests(self) -> int:
        """Number of valid command frames received (for any board)."""
        with self._state_lock:
            return self._requests

    # -- fault injection -------------------------------------------------------------------

    def inject(self, raw: bytes) -> None:
        """Write arbitrary bytes to the host right now."""
        self._write(raw)

    def inject_before_next_reply(self, raw: bytes) -> None:
        """Send ``raw`` immediately before the next reply, i.e. after the host's request.

        Bytes injected with :meth:`inject` before a request may be flushed by the host; these
        arrive when the host is already waiting for its answer. Calls queue up, one per reply.
        """
        with self._state_lock:
            self._reply_prefixes.append(bytes(raw))

    def corrupt_next_reply(self) -> None:
        """Send the next reply with a wrong SUM (as line noise would), once per call."""
        with self._state_lock:
            self._corrupt_replies += 1

    # -- bus side --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + _WRITE_TIMEOUT
        with self._write_lock:
            while view:
                try:
                    written = os.write(self._master_fd, view)
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        logger.warning("%s: host not reading, dropped %d bytes", self, len(view))
                        return
                    select.select([], [self._master_fd], [], remaining)
                    continue
                view = view[written:]

    def _status_reply(self, addr: int) -> bytes:
        board = addr >> 4
        hooks = irs = 0
        for i in range(LOCKS_PER_BOARD):
            if self._door_closed[(board, i)] != self.invert_hook:
                hooks |= 1 << i
            if self._present[(board, i)]:
                irs |= 1 << i
        return encode_status_reply(addr, hooks, irs)

    def _handle(self, addr: int, cmd: int) -> bytes | None:
        board, lock_index = addr >> 4, addr & 0x0F
        with self._state_lock:
            self._requests += 1
            if board not in self.boards or board in self._muted:
                return None
            if cmd == CMD_UNLOCK:
                self._door_closed[(board, lock_index)] = False
                self._unlock_log.append((time.monotonic(), board, lock_index))
            elif cmd != CMD_STATUS:
                return None
            prefix = self._reply_prefixes.pop(0) if self._reply_prefixes else b""
            reply = self._status_reply(addr)
            if self._corrupt_replies:
                self._corrupt_replies -= 1
                reply = reply[:-1] + bytes(((reply[-1] + 1) & 0xFF,))
            reply = prefix + reply
        if cmd == CMD_UNLOCK:
            self.unlock_event.set()
            if self.on_unlock is not None:
                try:
                    self.on_unlock(board, lock_index)
                except Exception:
                    logger.exception("%s: on_unlock callback failed", self)
        return reply

    def _run(self) -> None:
        parser = FrameParser()
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self._master_fd, self._wake_r], [], [])
                if self._wake_r in readable:
                    break
                try:
                    data = os.read(self._master_fd, 4096)
                except BlockingIOError:
                    continue
            except OSError:
                if not self._stop.is_set():
                    logger.exception("%s: pty read failed, emulator stopping", self)
                break
            if self.echo:
                self._write(data)
            for frame in parser.feed(data):
                reply = self._handle(frame.addr, frame.cmd)
                if reply is None:
                    continue
                if self.reply_delay:
                    time.sleep(self.reply_delay)
                self._write(reply)

    def describe(self) -> str:
        """Human-readable state of all emulated locks (``C``/``o`` door, ``*`` item present)."""
        lines = []
        with self._state_lock:
            for board in self.boards:
                cells = []
                for i in range(LOCKS_PER_BOARD):
                    door = "C" if self._door_closed[(board, i)] else "o"
                    item = "*" if self._present[(board, i)] else "."
                    cells.append(f"{i:>2}:{door}{item}")
                muted = " (muted)" if board in self._muted else ""
                lines.append(f"board {board}{muted}: " + " ".join(cells))
        return "\n".join(lines)


_HELP = """commands (B = board, I = lock_index 0-15):
  open B I | close B I | put B I | take B I | mute B | unmute B
  garbage | status | help | quit"""


def _command(emulator: KerongBoardEmulator, line: str) -> bool:
    """Run one console command; return False to quit."""
    words = line.split()
    if not words:
        return True
    name, args = words[0].lower(), words[1:]
    try:
        numbers = [int(a) for a in args]
        if name in {"quit", "exit", "q"}:
            return False
        if name == "open" and len(numbers) == 2:
            emulator.open_door(*numbers)
        elif name == "close" and len(numbers) == 2:
            emulator.close_door(*numbers)
        elif name == "put" and len(numbers) == 2:
            emulator.set_present(*numbers, True)
        elif name == "take" and len(numbers) == 2:
            emulator.set_present(*numbers, False)
        elif name == "mute" and len(numbers) == 1:
            emulator.set_mute(numbers[0], True)
        elif name == "unmute" and len(numbers) == 1:
            emulator.set_mute(numbers[0], False)
        elif name == "garbage":
            emulator.inject(b"\x00\xff\x02\x00\x35\x55garbage\x03")
        elif name == "status":
            pass
        else:
            print(_HELP)
            return True
    except ValueError as exc:
        print(f"error: {exc}")
        return True
    print(emulator.describe())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devices.emulators.kerong",
        description="Emulate Kerong KR-CU16 lock boards on a pseudo-terminal.",
    )
    parser.add_argument("--boards", default="0", help="comma-separated board numbers (0-15)")
    parser.add_argument("--invert-hook", action="store_true", help="hook bit 0 = door closed")
    parser.add_argument("-v", "--verbose", action="store_true", help="log traffic")
    args = parser.parse_args(argv)
    try:
        boards = [int(b) for b in args.boards.split(",") if b.strip()]
    except ValueError:
        parser.error("--boards must be comma-separated integers")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)

    def announce_unlock(board: int, lock_index: int) -> None:
        print(f"unlock: board {board} lock_index {lock_index}", flush=True)

    with KerongBoardEmulator(
        boards, invert_hook=args.invert_hook, on_unlock=announce_unlock
    ) as emulator:
        print(emulator.port, flush=True)
        print(_HELP, flush=True)
        try:
            for line in sys.stdin:
                if not _command(emulator, line):
                    break
            else:
                # stdin closed (e.g. run in the background): keep serving until Ctrl-C.
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
