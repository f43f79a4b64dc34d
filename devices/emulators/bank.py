"""A whole emulated locker bank: lock boards, charge meter and badge reader, driven by the real worker.

The KR-CU16 boards run on a pty and the charge meter is pymodbus's server on another pty. Badges
are tapped through nfcpy's udp driver by a separate card process. ``python -m devices.worker``
runs as a child process and opens all three as it would open real hardware.

With ``auto_person`` set, someone stands at the bank: when a door unlocks, they take the
device out (or put one in, if the slot was empty) and close the door, so the demo moves by
itself. A control socket lets another terminal tap badges and move things
(``manage.py emulate_bank BANK-A tap 04D3E0000003E9``).
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from devices.emulators.kerong import KerongBoardEmulator
from devices.emulators.modbus_meter import ModbusMeterEmulator
from devices.emulators.nfc_card import start_tap

logger = logging.getLogger(__name__)

# Charging currents the emulated meter reports (mA).
CHARGING_MA = 850
TRICKLE_MA = 30

HELP = """commands:
  tap UID        present a badge (hex UID) to the reader
  open N         open door N by hand (without an unlock: a forced door)
  close N        close door N
  take N         lift the device out of slot N
  put N          put a device into slot N (it starts charging)
  unplug N       the device in slot N stops drawing current
  plug N         the device in slot N charges again
  full N         the device in slot N is fully charged (trickle current)
  status         show every slot
  help           this text
  quit           stop the bank"""


@dataclass
class SlotSpec:
    """One door of the emulated bank, as the server configured it."""

    number: int
    board: int
    lock_index: int
    present: bool = False
    current_ma: int = 0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatedBank:
    """Emulated hardware for one bank plus the real worker process that drives it."""

    def __init__(
        self,
        code: str,
        slots: list[SlotSpec],
        *,
        server: str,
        token: str,
        data_dir: Path,
        auto_person: bool = True,
        invert_hook: bool = False,
        person_delay: float = 0.8,
        charge_ramp: float = 0.0,
        worker_log_level: str = "INFO",
        server_key: str | None = None,
        kiosk_port: int = 0,
    ) -> None:
        self.code = code
        self.slots = {s.number: s for s in slots}
        self.server = server
        self.token = token
        self.data_dir = Path(data_dir)
        self.auto_person = auto_person
        self.person_delay = person_delay
        # Seconds that fully charged devices first draw charging current, so the worker sees
        # them charge and then finish, as after a real power-up.
        self.charge_ramp = charge_ramp
        self.worker_log_level = worker_log_level
        # The server's public key the worker checks its access snapshots with (else the
        # worker takes LOCKERHUB_SERVER_KEY from the environment), and its local kiosk feed's
        # port (0: none, so that several emulated banks on one machine do not collide).
        self.server_key = server_key
        self.kiosk_port = kiosk_port
        boards = sorted({s.board for s in slots}) or [0]
        self.board = KerongBoardEmulator(boards, invert_hook, on_unlock=self._on_unlock)
        self.meter = ModbusMeterEmulator(register_count=max(64, len(slots) + 1))
        self.nfc_port = free_udp_port()
        self.worker: subprocess.Popen | None = None
        self._control: socketserver.UnixStreamServer | None = None
        self._taps: list[subprocess.Popen] = []

    @property
    def control_path(self) -> Path:
        return control_socket_path(self.data_dir, self.code)

    @property
    def journal_path(self) -> Path:
        return self.data_dir / f"worker-{self.code}.sqlite3"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, *, control: bool = True) -> EmulatedBank:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.board.start()
        self.meter.start()
        ramping = []
        for spec in self.slots.values():
            self.board.set_present(spec.board, spec.lock_index, spec.present)
            if self.charge_ramp and spec.present and spec.current_ma == TRICKLE_MA:
                self.meter.set_current(self.register(spec.number), CHARGING_MA)
                ramping.append(spec)
            else:
                self.meter.set_current(self.register(spec.number), spec.current_ma)
        if ramping:
            timer = threading.Timer(
                self.charge_ramp,
                lambda: [self.set_current(s.number, s.current_ma) for s in ramping],
            )
            timer.daemon = True
            timer.start()
        self.start_worker()
        if control:
            self._start_control()
        return self

    def start_worker(self) -> subprocess.Popen:
        registers = ",".join(f"{n}:{self.register(n)}" for n in sorted(self.slots))
        argv = [
            sys.executable, "-m", "devices.worker", "--server", self.server, "--bank", self.code,
            "--lock-port", self.board.port, "--protocol", "kerong-cu16", "--nfc", f"udp:127.0.0.1:{self.nfc_port}",
            "--charge-port", self.meter.port, "--charge-registers", registers,
            "--journal", str(self.journal_path), "--log-level", self.worker_log_level,
            "--kiosk-port", str(self.kiosk_port),
        ]  # fmt: skip
        env = {**os.environ, "LOCKERHUB_BANK_TOKEN": self.token}
        if self.server_key:
            env["LOCKERHUB_SERVER_KEY"] = self.server_key
        self.worker = subprocess.Popen(argv, env=env, cwd=Path(__file__).resolve().parents[2])  # noqa: S603
        return self.worker

    def kill_worker(self) -> None:
        """SIGKILL the worker, as a power cut would: no clean shutdown, the journal stays as it is."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait(timeout=10)

    def stop(self) -> None:
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self.control_path.unlink(missing_ok=True)
            self._control = None
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        for process in self._taps:
            if process.poll() is None:
                process.kill()
            process.communicate()
        self.meter.stop()
        self.board.stop()

    def __enter__(self) -> EmulatedBank:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the physical world -----------------------------------------------------------------

    @staticmethod
    def register(number: int) -> int:
        return number - 1

    def spec(self, number: int) -> SlotSpec:
        try:
            return self.slots[number]
        except KeyError:
            raise ValueError(f"bank {self.code} has no slot {number}") from None

    def tap(self, uid: str, hold: float = 0.3) -> subprocess.Popen:
        process = start_tap(self.nfc_port, uid, hold)
        self._taps = [p for p in self._taps if p.poll() is None] + [process]
        return process

    def open_door(self, number: int) -> None:
        spec = self.spec(number)
        self.board.open_door(spec.board, spec.lock_index)

    def close_door(self, number: int) -> None:
        spec = self.spec(number)
        self.board.close_door(spec.board, spec.lock_index)

    def set_present(self, number: int, present: bool) -> None:
        spec = self.spec(number)
        self.board.set_present(spec.board, spec.lock_index, present)
        self.meter.set_current(self.register(number), CHARGING_MA if present else 0)

    def set_current(self, number: int, ma: int) -> None:
        self.spec(number)
        self.meter.set_current(self.register(number), ma)

    def describe(self) -> str:
        lines = []
        for number, spec in sorted(self.slots.items()):
            door = "closed" if self.board.door_closed(spec.board, spec.lock_index) else "OPEN"
            present = "device" if self.board.present(spec.board, spec.lock_index) else "empty"
            lines.append(
                f"door {number:>3}: {door:<6} {present:<6} {self.meter.current(self.register(number)):>5} mA"
            )
        return "\n".join(lines)

    def _on_unlock(self, board: int, lock_index: int) -> None:
        if not self.auto_person:
            return
        number = next(
            (
                s.number
                for s in self.slots.values()
                if (s.board, s.lock_index) == (board, lock_index)
            ),
            None,
        )
        if number is not None:
            threading.Thread(target=self._person_at_door, args=(number,), daemon=True).start()

    def _person_at_door(self, number: int) -> None:
        """Someone swings the door open, takes the device out (or puts one in) and closes it."""
        spec = self.spec(number)
        time.sleep(self.person_delay)
        had_device = self.board.present(spec.board, spec.lock_index)
        self.set_present(number, not had_device)
        time.sleep(self.person_delay)
        self.close_door(number)

    # -- control ----------------------------------------------------------------------------

    def command(self, line: str) -> str:
        """Run one control command and say what happened."""
        words = line.split()
        if not words:
            return ""
        verb, args = words[0].lower(), words[1:]
        try:
            if verb == "help":
                return HELP
            if verb == "status":
                return self.describe()
            if verb == "tap" and len(args) == 1:
                self.tap(args[0])
                return f"badge {args[0].upper()} presented"
            if (
                verb in {"open", "close", "take", "put", "unplug", "plug", "full"}
                and len(args) == 1
            ):
                number = int(args[0])
                {
                    "open": lambda: self.open_door(number),
                    "close": lambda: self.close_door(number),
                    "take": lambda: self.set_present(number, False),
                    "put": lambda: self.set_present(number, True),
                    "unplug": lambda: self.set_current(number, 0),
                    "plug": lambda: self.set_current(number, CHARGING_MA),
                    "full": lambda: self.set_current(number, TRICKLE_MA),
                }[verb]()
                return f"{verb} {number}: done"
        except ValueError as exc:
            return f"error: {exc}"
        return f"error: unknown command {line.strip()!r} (try 'help')"

    def _start_control(self) -> None:
        bank = self
        self.control_path.parent.mkdir(parents=True, exist_ok=True)
        self.control_path.unlink(missing_ok=True)

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(4096).decode("utf-8", "replace")
                self.wfile.write((bank.command(line) + "\n").encode())

        self._control = socketserver.ThreadingUnixStreamServer(str(self.control_path), Handler)
        os.chmod(self.control_path, 0o600)
        threading.Thread(
            target=self._control.serve_forever, name=f"control-{self.code}", daemon=True
        ).start()


def control_socket_path(data_dir: Path, code: str) -> Path:
    return Path(data_dir) / "emulators" / f"{code}.sock"


def send_control(data_dir: Path, code: str, line: str, timeout: float = 10.0) -> str:
    """Send one command to a running emulated bank and return its answer."""
    path = control_socket_path(data_dir, code)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            raise ConnectionError(f"no emulated bank {code} is running (no {path})") from None
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode().rstrip("\n")
